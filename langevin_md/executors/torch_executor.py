"""The torch executor: one loop over steps for batched walkers on a torch device.

The loop runs the integrator on the device with no host synchronisation between *stops*. A
stop happens when a reporter is due (OpenMM's pattern: each reporter says when it next wants
the state), when the recording buffer is full, or at the end; only there does the executor
look at the state (finiteness check, progress bar, recorded frames to the host).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .. import checks
from ..errors import NonFiniteStateError, nonfinite_error, nonfinite_start_message
from ..integrators.base import Integrator, State
from ..random import CounterStream, WalkerRNG
from ..result import SampleResult
from ..systems.base import System
from .recorder import FrameRecorder
from .reporting import Reporter, stop_step
from .results import acceptance_rate, build_result, metadata
from .start import start_positions


class Sampler:
    """Runs one integrator on a batch of independent walkers.

    Parameters
    ----------
    system : System
        The Boltzmann target.
    integrator : Integrator
    n_walkers : int
        Number of independent chains (ignored when ``walker_indices`` is given).
    seed : int
        Seed of every walker's counter-based random stream.
    device : str or torch.device, optional
        Where the walkers live (default CPU).
    dtype : 'float32' or 'float64', optional
        Floating type of positions and velocities (default float64).
    initial_positions : array-like, optional
        Shape ``(n_walkers, *event_shape)``, or ``event_shape`` to start every walker at one
        point. By default the system's ``initial_positions``.
    walker_indices : sequence of int, optional
        Global walker indices this sampler runs (a shard of a larger run); overrides
        ``n_walkers`` and ``first_walker``.
    first_walker : int
        Global index of the first walker: the sampler runs walkers ``first_walker`` to
        ``first_walker + n_walkers - 1``, exactly as they run inside a larger run.
    compile : bool
        Fuse steps into ``torch.compile``d chunks of :attr:`COMPILE_CHUNK` steps. It removes
        most per-step Python and kernel-launch overhead (tens of µs per step instead of
        hundreds for few walkers) at the price of a one-off compile of 10–30 s. Draws come
        from the same random streams, but fused kernels round differently, so a compiled run
        is reproducible with itself, not bitwise equal to an eager one. Burn-in steps that
        adapt a step size always run eagerly.
    """

    def __init__(self, system: System, integrator: Integrator, n_walkers: int = 1, seed: int = 0,
                 device=None, dtype=None, initial_positions=None,
                 walker_indices: Optional[Sequence[int]] = None, first_walker: int = 0,
                 compile: bool = False):
        if not isinstance(system, System):
            raise TypeError(f"system must be a langevin_md System, got {type(system).__name__}")
        if not isinstance(integrator, Integrator):
            raise TypeError(f"integrator must be a langevin_md Integrator, got {type(integrator).__name__}")
        integrator.check_system(system)
        self.system = system
        self.integrator = integrator
        self.device = checks.device(device)
        self.dtype = checks.dtype(dtype)
        if walker_indices is None:
            first = checks.non_negative_int("first_walker", first_walker)
            walker_indices = range(first, first + checks.positive_int("n_walkers", n_walkers))
        self.rng = WalkerRNG(seed, walker_indices, device=self.device)
        self.seed = self.rng.seed
        self.n_walkers = self.rng.n_walkers
        self.step = 0
        self.burn_in_end = 0
        self.accepted = torch.zeros(self.n_walkers, dtype=torch.int64, device=self.device)
        self.production_steps = 0
        checks.boolean("compile", compile)
        self._compiled = torch.compile(self._chunk, dynamic=False) if compile else None
        x0 = start_positions(system, initial_positions, self.n_walkers, self.rng)
        x0 = x0.to(device=self.device, dtype=self.dtype).contiguous()
        self.state = integrator.init(system, x0, self.rng)
        self._check_finite(self.state, (0, 0), recorder=None, initial=True)

    @property
    def walker_indices(self) -> np.ndarray:
        """Global indices of the walkers this executor runs, ``(n_walkers,)`` int64."""
        return self.rng.walker_indices

    @property
    def numpy_dtype(self):
        return np.float64 if self.dtype == torch.float64 else np.float32

    def recorded_fields(self) -> dict:
        """The integrator's per-walker fields at the current state (host numpy arrays)."""
        return {k: v.detach().cpu().numpy()
                for k, v in self.integrator.recorded_fields(self.state).items()}

    def integrator_summary(self) -> dict:
        """The integrator's end-of-run summary at the current state (host numpy arrays)."""
        return {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                for k, v in self.integrator.summary(self.state).items()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a bitwise-identical continuation needs, as host numpy arrays and ints.

        Positions, velocities, cached energy and forces, adaptation state (per-walker step
        sizes and dual-averaging statistics), every walker's random-stream counter, the step,
        the burn-in boundary and the acceptance counts.
        """
        fields = {}
        for f in dataclasses.fields(self.state):
            v = getattr(self.state, f.name)
            fields[f.name] = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        return {
            "state_class": type(self.state).__name__,
            "state": fields,
            "rng": self.rng.state_dict(),
            "step": self.step,
            "burn_in_end": self.burn_in_end,
            "production_steps": self.production_steps,
            "accepted": self.accepted.cpu().numpy(),
        }

    def load_state_dict(self, checkpoint: dict) -> None:
        """Restore a :meth:`state_dict` (same system, integrator and walkers)."""
        from .. import integrators as _integrators

        cls = getattr(_integrators, checkpoint["state_class"])
        if not np.array_equal(np.asarray(checkpoint["rng"]["walker_indices"]), self.rng.walker_indices):
            raise ValueError("checkpoint is for different walkers than this sampler runs")
        values = {k: (torch.as_tensor(v, device=self.device) if isinstance(v, np.ndarray) else v)
                  for k, v in checkpoint["state"].items()}
        self.state = cls(**values)
        self.rng = WalkerRNG.from_state_dict(checkpoint["rng"], device=self.device)
        self.step = int(checkpoint["step"])
        self.burn_in_end = int(checkpoint["burn_in_end"])
        self.production_steps = int(checkpoint["production_steps"])
        self.accepted = torch.as_tensor(checkpoint["accepted"], device=self.device)

    # ------------------------------------------------------------------ checks
    def _check_finite(self, state: State, steps: tuple[int, int], recorder, initial=False) -> None:
        tensors = [t for t in state.tensors().values() if t.is_floating_point()]
        ok = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if bool(ok):
            return
        bad = torch.zeros(self.n_walkers, dtype=torch.bool, device=self.device)
        for t in tensors:
            if t.ndim >= 1 and t.shape[0] == self.n_walkers:
                bad |= ~torch.isfinite(t.reshape(self.n_walkers, -1)).all(-1)
        walkers = [int(self.rng.walker_indices[i]) for i in torch.nonzero(bad).flatten().tolist()]
        if initial:
            raise NonFiniteStateError(nonfinite_start_message(walkers, self.n_walkers), None, walkers, steps)
        if recorder is not None:
            # Recorded frames narrow down when it happened, at no extra cost.
            first_bad = recorder.truncate_nonfinite()
            if recorder.last_step is not None:
                steps = (recorder.last_step, steps[1])
            if first_bad is not None:
                steps = (steps[0], first_bad)
        result = self._result(recorder, 0.0) if recorder is not None else None
        raise nonfinite_error(walkers, self.n_walkers, steps, type(self.integrator).__name__, result)

    # ------------------------------------------------------------------ the loop
    def run(self, n_steps: int, record_every: int = 1, burn_in: int = 0,
            reporters: Iterable[Reporter] = (), progress: Optional[bool] = None,
            record_block: Optional[int] = None) -> SampleResult:
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
            Frames kept on the device before they move to the host (default: about 64 MB).
        """
        n_steps = checks.positive_int("n_steps", n_steps)
        burn_in = checks.non_negative_int("burn_in", burn_in)
        self.burn_in_end = self.step + burn_in
        return self.run_to(self.step + burn_in + n_steps, record_every, reporters, progress,
                           record_block)

    def run_to(self, end: int, record_every: int = 1, reporters: Iterable[Reporter] = (),
               progress: Optional[bool] = None, record_block: Optional[int] = None,
               frame_sinks: Sequence = (), keep_frames: bool = True) -> SampleResult:
        """Advance to global step ``end`` (used directly to continue from a checkpoint).

        Frames are recorded at production steps s with (s − burn_in_end) % record_every == 0,
        a rule that does not depend on where a run was interrupted. ``frame_sinks`` receive
        every block of frames as it reaches the host (the
        :class:`~langevin_md.executors.reporting.FrameSink` protocol), and always before any reporter is told about a later
        step, so a checkpoint never runs ahead of the frames written.
        """
        from tqdm.auto import tqdm

        record_every = checks.positive_int("record_every", record_every)
        reporters = list(reporters)
        start = self.step
        if end < start:
            raise ValueError(f"cannot run to step {end}: the sampler is already at step {start}")
        if record_block is None:
            frame_bytes = self.n_walkers * max(1, math.prod(self.system.event_shape)) * 8
            record_block = max(1, min(1000, (64 << 20) // frame_bytes))
        recorder = FrameRecorder(record_block, self.integrator.has_velocities, frame_sinks, keep_frames)
        # tqdm's disable=None means "only on a terminal".
        disable = None if progress is None else not progress
        bar = tqdm(total=end - start, disable=disable, unit="step",
                   desc=type(self.integrator).__name__, leave=False)
        t0 = time.perf_counter()
        try:
            while self.step < end:
                checked = self.step
                stop = stop_step(self.step, end, reporters)
                flush_needed = self._advance(stop, record_every, recorder)
                self._check_finite(self.state, (checked, self.step), recorder)
                due_now = [r for r in reporters if r.next_report(self.step) == 0]
                if flush_needed or due_now or self.step == end:
                    recorder.flush()
                for r in due_now:
                    r.report(self, self.state, self.step)
                bar.update(self.step - start - bar.n)
        finally:
            bar.close()
            for r in reporters:
                r.close()
        self.wall_time = time.perf_counter() - t0
        return self._result(recorder, self.wall_time)

    def _advance(self, stop: int, record_every: int, recorder: FrameRecorder) -> bool:
        """Step from ``self.step`` to ``stop`` with no host synchronisation.

        The steps are cut into segments that end at the burn-in boundary and at recording
        steps; a segment runs eagerly step by step, or as compiled fused chunks.
        """
        integ = self.integrator
        while self.step < stop:
            s0 = self.step
            if s0 < self.burn_in_end and integ.adaptive:
                # Adaptation changes the kernel every step: always eager.
                state, info = integ.step(self.system, self.state, self.rng)
                state = integ.adapt(state, info)
                if s0 + 1 == self.burn_in_end:
                    state = integ.end_adaptation(state)
                self.state, self.step = state, s0 + 1
                continue
            if s0 < self.burn_in_end:
                end = min(stop, self.burn_in_end)
            else:
                done = s0 - self.burn_in_end
                end = min(stop, self.burn_in_end + (done // record_every + 1) * record_every)
            accepted = self._run_segment(end - s0)
            self.step = end
            if s0 >= self.burn_in_end:
                self.production_steps += end - s0
                if accepted is not None:
                    self.accepted += accepted
                if (end - self.burn_in_end) % record_every == 0:
                    st = self.state
                    fields = integ.recorded_fields(st)
                    if recorder.add(end, st.positions, st.energy, self._kinetic(st), fields):
                        return True  # a full block ends the chunk: device memory stays bounded
            elif end == self.burn_in_end:
                self.state = integ.end_adaptation(self.state)
        return False

    def _run_segment(self, n: int) -> Optional[torch.Tensor]:
        """Take ``n`` steps without adaptation; return the per-walker accepted count or None."""
        if self._compiled is not None:
            return self._compiled_segment(n)
        integ, system, rng = self.integrator, self.system, self.rng
        state, accepted = self.state, None
        for _ in range(n):
            state, info = integ.step(system, state, rng)
            if info.accepted is not None:
                accepted = info.accepted.long() if accepted is None else accepted + info.accepted
        self.state = state
        return accepted

    # ------------------------------------------------------------------ compiled path
    #: Steps fused into one compiled call. Each distinct chunk length is a separate graph, so
    #: segments are cut into chunks of this size plus at most one shorter remainder.
    COMPILE_CHUNK = 8

    def _compiled_segment(self, n: int) -> Optional[torch.Tensor]:
        accepted = None
        while n > 0:
            k = min(n, self.COMPILE_CHUNK)
            counter = torch.tensor(self.rng.counter, dtype=torch.int64, device=self.device)
            state, acc, used = self._compiled(self.state, self.rng._keys, counter, k)
            self.state = state
            self.rng.counter += used
            if acc is not None:
                accepted = acc if accepted is None else accepted + acc
            n -= k
        return accepted

    def _chunk(self, state: State, keys: torch.Tensor, counter: torch.Tensor, k: int):
        """``k`` steps drawing from a :class:`CounterStream`; traced by ``torch.compile``."""
        stream = CounterStream(keys, counter)
        accepted = None
        for _ in range(k):
            state, info = self.integrator.step(self.system, state, stream)
            if info.accepted is not None:
                accepted = info.accepted.long() if accepted is None else accepted + info.accepted
        return state, accepted, stream.consumed

    def _kinetic(self, state) -> Optional[torch.Tensor]:
        v = getattr(state, "velocities", None)
        if v is None:
            return None
        m = self.system.dof_masses(v)
        return 0.5 * (m * v * v).reshape(v.shape[0], -1).sum(-1)

    def _result(self, recorder: FrameRecorder, wall_time: float) -> SampleResult:
        step_sizes = getattr(self.state, "step_size", None)
        meta = metadata(self.system, self.integrator, self.seed, self.device, self.dtype, "torch")
        return build_result(
            recorder, self, wall_time,
            acceptance_rate(self.accepted, self.production_steps, self.integrator.metropolis_adjusted),
            None if step_sizes is None else step_sizes.cpu().numpy(), meta,
            self.integrator_summary() if recorder.keep else {})
