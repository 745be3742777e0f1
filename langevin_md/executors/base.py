"""The stepping loop both executors share: ``run``, ``run_to`` and reporters asked when due.

OpenMM's ``Simulation._simulate`` is the model: the loop asks every reporter how many steps
from now it next wants the state (:meth:`~.reporting.Reporter.next_report`), advances the
walkers to the nearest such step (or the end) without looking at them, then hands the state
to the reporters that are due. Frames reach the frame sinks before any reporter hears of a
later step, so a checkpoint never runs ahead of the frames written.

An executor (:class:`~.torch_executor.Sampler`, :class:`~.openmm.OpenMMSampler`) subclasses
:class:`Executor` and supplies only what differs between them:

* :meth:`Executor._advance`: how the walkers get from the current step to a stop (batched
  torch steps, eager or compiled; or one OpenMM Context after another), recording frames on
  the way, and whether the recorder must pass its frames on now;
* :meth:`Executor._limit_stop`: where a stop must come earlier than the reporters ask (the
  OpenMM executor ends a segment after a bounded block of frames);
* :meth:`Executor._running`: what surrounds a run (the torch executor's threads, compile
  decision and wall clock);
* ``state`` (an attribute of the torch executor, a property that fetches it from the
  Contexts in the OpenMM one), :meth:`Executor._result` and :meth:`Executor._run_time`: state
  access and the result.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Optional, Sequence

from tqdm.auto import tqdm

from .. import checks
from ..result import SampleResult
from .recorder import FrameRecorder, frame_fields
from .reporting import Reporter, stop_step

#: Bytes of recorded frames a block holds by default (``record_block``), about 64 MB.
RECORD_BLOCK_BYTES = 64 << 20
#: The most frames a default block holds, however small a frame is.
RECORD_BLOCK_FRAMES = 1000


def walker_range(n_walkers: int, walker_indices: Optional[Sequence[int]], first_walker: int):
    """The global walker indices an executor runs: ``walker_indices`` or a range from ``first_walker``."""
    if walker_indices is not None:
        return walker_indices
    first = checks.non_negative_int("first_walker", first_walker)
    return range(first, first + checks.positive_int("n_walkers", n_walkers))


class Executor:
    """The loop over steps for a batch of walkers; subclasses say how to take the steps.

    A subclass sets ``system``, ``integrator``, ``n_walkers``, ``step`` (the global step),
    ``burn_in_end`` (the global step where production starts) and the counters its
    :meth:`_advance` keeps, and :attr:`backend` (its name in :data:`~.BACKENDS`).
    """

    backend: str = ""
    #: Progress-bar units per step of the run: the OpenMM executor counts walker-steps (its
    #: walkers run one after another).
    progress_per_step_per_walker = False

    # ------------------------------------------------------------------ the interface
    def run(self, n_steps: int, record_every: int = 1, burn_in: int = 0,
            reporters: Iterable[Reporter] = (), progress: Optional[bool] = None,
            record_block: Optional[int] = None, record_forces: bool = False) -> SampleResult:
        """Advance every walker ``burn_in + n_steps`` steps and return the recorded frames.

        Parameters
        ----------
        n_steps : int
            Production steps per walker.
        record_every : int
            A frame is recorded every ``record_every`` production steps.
        burn_in : int
            Steps before production; adaptive integrators tune themselves here only.
        reporters : iterable of Reporter
            Told about the state when they ask (checkpoints, trajectory files, ...).
        progress : bool, optional
            Show a progress bar; by default only when output is a terminal.
        record_block : int, optional
            Frames kept before they move on to the host and the sinks (default: about 64 MB).
        record_forces : bool
            Also record the forces F(x) of every frame, float32, as ``fields["forces"]``.
        """
        n_steps = checks.positive_int("n_steps", n_steps)
        burn_in = checks.non_negative_int("burn_in", burn_in)
        self.burn_in_end = self.step + burn_in
        return self.run_to(self.step + burn_in + n_steps, record_every, reporters, progress, record_block,
                           record_forces=record_forces)

    def run_to(self, end: int, record_every: int = 1, reporters: Iterable[Reporter] = (),
               progress: Optional[bool] = None, record_block: Optional[int] = None,
               frame_sinks: Sequence = (), keep_frames: bool = True, record_forces: bool = False) -> SampleResult:
        """Advance to global step ``end`` (used directly to continue from a checkpoint).

        Frames are recorded at production steps s with (s − burn_in_end) % record_every == 0,
        a rule that does not depend on where a run was interrupted. ``frame_sinks`` receive
        every block of frames as it reaches the host (the
        :class:`~langevin_md.executors.reporting.FrameSink` protocol), and always before any
        reporter is told about a later step. ``keep_frames=False`` keeps no frames for the
        result (a run written to disk only).

        Besides the integrator's fields, every frame carries the system's recorded energies
        (``U_ff`` and ``U_prior`` of a force field with a prior) and, with ``record_forces``,
        ``forces`` (float32), evaluated at the recorded frames only
        (:func:`~.recorder.frame_fields`).
        """
        record_every = checks.positive_int("record_every", record_every)
        reporters = list(reporters)
        start = self.step
        if end < start:
            raise ValueError(f"cannot run to step {end}: the sampler is already at step {start}")
        recorder = FrameRecorder(self._record_block(record_block), self.integrator.has_velocities,
                                 frame_sinks, keep_frames, frame_fields(self.system, bool(record_forces)))
        scale = self.n_walkers if self.progress_per_step_per_walker else 1
        name = type(self.integrator).__name__
        # tqdm's disable=None means "only on a terminal".
        bar = tqdm(total=(end - start) * scale, disable=None if progress is None else not progress,
                   unit="step", desc=name if self.backend == "torch" else f"{name} ({self.backend})",
                   leave=False)
        with self._running(end):
            self._loop(end, record_every, reporters, recorder, bar, scale)
        return self._result(recorder, self._run_time())

    # ------------------------------------------------------------------ the loop
    def _loop(self, end: int, record_every: int, reporters: list, recorder: FrameRecorder, bar,
              scale: int) -> None:
        start = self.step
        try:
            while self.step < end:
                stop = self._limit_stop(stop_step(self.step, end, reporters), record_every, recorder)
                flush_needed = self._advance(stop, record_every, recorder, bar)
                due_now = [r for r in reporters if r.next_report(self.step) == 0]
                if flush_needed or due_now or self.step == end:
                    recorder.flush()  # frames before reports (see the module docstring)
                if due_now:
                    state = self.state  # fetched once for all reporters due now
                    for r in due_now:
                        r.report(self, state, self.step)
                bar.update((self.step - start) * scale - bar.n)
        finally:
            bar.close()
            for r in reporters:
                r.close()

    def _record_block(self, record_block: Optional[int]) -> int:
        """Frames per block: ``record_block``, or as many as fit :data:`RECORD_BLOCK_BYTES`."""
        if record_block is None:
            frame_bytes = self.n_walkers * max(1, math.prod(self.system.event_shape)) * 8
            return max(1, min(RECORD_BLOCK_FRAMES, RECORD_BLOCK_BYTES // frame_bytes))
        return checks.positive_int("record_block", record_block)

    # ------------------------------------------------------------------ what an executor supplies
    @contextlib.contextmanager
    def _running(self, end: int):
        """Context around one :meth:`run_to` (to global step ``end``); nothing by default."""
        yield

    def _limit_stop(self, stop: int, record_every: int, recorder: FrameRecorder) -> int:
        """The step the next :meth:`_advance` ends at, given the reporters' ``stop``."""
        return stop

    def _advance(self, stop: int, record_every: int, recorder: FrameRecorder, bar) -> bool:
        """Step every walker from ``self.step`` to ``stop``, recording frames into ``recorder``.

        Returns whether the recorder must pass its frames on now (its block is full). May
        update ``bar`` on the way (it is brought up to date after each stop anyway).
        """
        raise NotImplementedError

    def _run_time(self) -> float:
        """Seconds the last :meth:`run_to` spent, as its result reports them."""
        raise NotImplementedError

    def _result(self, recorder: FrameRecorder, wall_time: float) -> SampleResult:
        raise NotImplementedError


__all__ = ["Executor", "walker_range", "RECORD_BLOCK_BYTES", "RECORD_BLOCK_FRAMES"]
