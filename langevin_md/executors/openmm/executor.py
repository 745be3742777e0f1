"""The OpenMM executor: our schemes stepped inside OpenMM's platform, no Python per step.

:class:`OpenMMSampler` has the torch executor's interface (``run``, ``run_to``, reporters,
frame sinks, ``state_dict``/``load_state_dict``), so ``sample(backend="openmm")``, configs
with ``[sampler] backend = "openmm"``, run folders, resume and Dask shards all use it. Every
walker is its own ``openmm.Context`` (on the system's platform and properties) with its own
compiled integrator (:func:`~.export.to_openmm_integrator`).

Stepping. The run is cut into segments at the steps where a reporter is due (and, when frames
go to sinks, after a bounded block of frames). Inside a segment the walkers run one after
another, each from the segment start to its end: between records a walker's integrator takes
its steps in one ``step`` call, and at a record the state is fetched once (``getState``, straight
into the frame block). Kinetic energies and finiteness checks are computed for up to 64 frames
at once (:class:`~.state.FrameReader`), and at once when a potential energy is not finite, so
a diverged walker is still reported at its first bad frame while the per-frame Python work
stays a small part of a step. The segment's frames go to the sinks when every walker has
finished it, then the reporters are told.

Reproducibility. Walker ``w``'s integrator and initial-velocity seeds are pure functions of
``(seed, w)`` (:mod:`.seeds`). OpenMM's Reference platform draws every Context's random
numbers from one process-wide generator, reseeded when an integrator first steps, so a
walker's chain is its own only while it runs alone: :func:`~langevin_md.sample` (one segment)
gives walker ``w`` the same chain whatever ``n_walkers`` is, while a run cut into segments by
reporters interleaves walkers and so is reproducible for the same walkers and schedule. Run
folders on Dask therefore use one walker per shard. For the CustomIntegrator schemes (OBABO,
ULA, MALA) a chain also depends on when the state is fetched (OpenMM evaluates the
kinetic-energy expression, which draws from that generator; numbers are skipped, never
reused, so the statistics are unaffected). The random numbers are OpenMM's, not the torch
executor's streams: the two executors agree in law, not sample by sample.

Checkpoints and resume. OpenMM's random state cannot be saved. A checkpoint stores every
walker's positions, velocities (as the Context holds them: for BAOAB the
``LangevinMiddleIntegrator`` velocities half a kick before the step end), energy and forces,
the step, the burn-in boundary and the acceptance counts. Resuming rebuilds each Context at
those positions and velocities with the same step counter and new seeds drawn from ``(seed,
w, checkpoint step)``: the continuation is an exact continuation *in law* of the interrupted
chain (the same Markov kernel from the same state), reproducible given the checkpoint, but
not the bitwise chain an uninterrupted run would have drawn. Frame steps depend only on the
burn-in boundary and ``record_every``, so a resumed run neither repeats nor drops a frame.

Forces of the System that act on velocities are applied as OpenMM applies them, where the
torch executor ignores them: a ``CMMotionRemover`` (added by ``ForceField.createSystem`` by
default) zeroes the centre-of-mass velocity at each step start. For a molecule without
external fields this changes neither the configurational law nor the internal kinetic
energy; it removes 3 degrees of freedom from the kinetic energy.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Optional, Sequence

import numpy as np
import torch

from ... import checks
from ...errors import NonFiniteStateError, nonfinite_error, nonfinite_start_message
from ...integrators.base import State, UnderdampedState
from ...result import SampleResult
from ...systems.openmm_system import OpenMMSystem
from ...systems.torch_forcefield import TorchForceField
from ..base import Executor, walker_range
from ..recorder import FrameRecorder
from ..results import acceptance_rate, build_result, metadata
from ..start import start_positions
from .export import check_supported, scheme_description
from .state import FrameReader
from .walker import Walker, is_nan_error


class OpenMMSampler(Executor):
    """Runs a scheme inside OpenMM on independent walkers, one Context each.

    The loop (``run``, ``run_to``, reporters) is :class:`~langevin_md.executors.base.Executor`'s;
    between stops the walkers run one after another (module docstring).

    Parameters
    ----------
    system : OpenMMSystem
        Walkers run on its platform with its platform properties (``make_context``).
    integrator : BAOAB, OBABO, Brownian, ULA or MALA
        Compiled by :func:`~langevin_md.executors.openmm.export.to_openmm_integrator`.
    n_walkers : int
        Number of walkers (ignored when ``walker_indices`` is given).
    seed : int
        Run seed; walker seeds derive from it (module docstring).
    device : None
        Must be None: the device is the system's OpenMM platform (choose it when building
        the system).
    dtype : 'float32' or 'float64', optional
        Type of recorded frames (OpenMM computes in its platform's precision).
    initial_positions : array-like, optional
        ``(n_walkers, n_particles, 3)`` or ``(n_particles, 3)`` nm; default the system's
        reference structure. Constrained systems have constraints applied to them.
        ``"exact"`` is refused: OpenMM systems have no exact sampler.
    walker_indices : sequence of int, optional
        Global walker indices (a shard of a larger run); overrides ``n_walkers`` and
        ``first_walker``.
    first_walker : int
        Global index of the first walker.
    """

    backend = "openmm"
    progress_per_step_per_walker = True

    #: Constructor keywords a run config's [sampler] table may set (langevin_md.run.choices).
    OPTIONS = ("n_walkers", "seed", "device", "dtype", "initial_positions", "first_walker")

    def __init__(self, system, integrator, n_walkers: int = 1, seed: int = 0, device=None, dtype=None,
                 initial_positions=None, walker_indices: Optional[Sequence[int]] = None,
                 first_walker: int = 0):
        if not isinstance(system, OpenMMSystem):
            hint = ("; build the molecule with engine='openmm' (e.g. alanine_dipeptide(..., engine='openmm'))"
                    " for backend='openmm', or use backend='torch'" if isinstance(system, TorchForceField) else
                    "; use backend='torch' for other systems")
            raise TypeError(
                "backend='openmm' needs an OpenMMSystem (an openmm.System with its topology), got "
                f"{type(system).__name__}{hint}")
        check_supported(integrator)
        if device is not None:
            raise ValueError(
                f"device={device!r} applies to backend='torch' only; the OpenMM executor runs on the "
                f"system's OpenMM platform ({system.platform_name}): choose it when building the system")
        self.system = system
        self.integrator = integrator
        self.dtype = checks.dtype(dtype)
        self.numpy_dtype = checks.numpy_dtype(dtype)
        self.device = f"openmm:{system.platform_name}"
        self.seed = checks.non_negative_int("seed", seed)
        walker_indices = walker_range(n_walkers, walker_indices, first_walker)
        self.walker_indices = np.asarray(list(walker_indices), dtype=np.int64)
        if self.walker_indices.ndim != 1 or len(self.walker_indices) == 0 or np.any(self.walker_indices < 0):
            raise ValueError(f"walker_indices must be a non-empty sequence of non-negative integers, "
                             f"got {walker_indices!r}")
        self.n_walkers = len(self.walker_indices)
        self.step = 0
        self.burn_in_end = 0
        self.production_steps = 0
        self.accepted = np.zeros(self.n_walkers, dtype=np.int64)
        #: The step at which the walkers' seeds were drawn (0, or the checkpoint resumed from).
        self.seed_epoch = 0
        self.wall_time = 0.0
        self._reader = FrameReader(system, integrator)

        x0 = start_positions(system, initial_positions, self.n_walkers, None).numpy().astype(np.float64)
        bad = np.nonzero(~np.isfinite(x0.reshape(self.n_walkers, -1)).all(-1))[0]
        if len(bad) == 0:
            # Through the system's own Context: refuse a bad start before any walker is built.
            e0, _ = system.energy_and_forces(torch.from_numpy(np.ascontiguousarray(x0)))
            bad = np.nonzero(~np.isfinite(e0.numpy()))[0]
        if len(bad):
            walkers = [int(self.walker_indices[i]) for i in bad]
            raise NonFiniteStateError(nonfinite_start_message(walkers, self.n_walkers), None, walkers, (0, 0))
        self._walkers = [Walker(system, integrator, self.seed, int(w), x0[i])
                         for i, w in enumerate(self.walker_indices)]

    # ------------------------------------------------------------------ state
    def _fetch(self) -> dict:
        """Every walker's state as host float64 arrays (positions, velocities, forces, energy)."""
        parts = [self._reader.full_state(w) for w in self._walkers]
        return {k: np.stack([np.asarray(p[k], dtype=np.float64) for p in parts]) for k in parts[0]}

    @property
    def state(self):
        """The current state as an :class:`~langevin_md.integrators.base.State` (float64, CPU).

        For schemes with velocities, an ``UnderdampedState`` whose velocities are those the
        Contexts hold (see the module docstring for BAOAB).
        """
        s = {k: torch.from_numpy(v) for k, v in self._fetch().items()}
        if self.integrator.has_velocities:
            return UnderdampedState(positions=s["positions"], energy=s["energy"], forces=s["forces"],
                                    velocities=s["velocities"])
        return State(positions=s["positions"], energy=s["energy"], forces=s["forces"])

    def recorded_fields(self) -> dict:
        """Per-walker fields recorded with each frame: none for the OpenMM executor."""
        return {}

    def integrator_summary(self) -> dict:
        """End-of-run summary: none for the OpenMM executor."""
        return {}

    def state_dict(self) -> dict:
        """What a continuation in law needs (see the module docstring), as host numpy arrays."""
        s = self._fetch()
        fields = {"positions": s["positions"], "energy": s["energy"], "forces": s["forces"]}
        if self.integrator.has_velocities:
            fields["velocities"] = s["velocities"]
        return {
            "state_class": "UnderdampedState" if self.integrator.has_velocities else "State",
            "state": fields,
            "rng": {"seed": self.seed, "walker_indices": self.walker_indices.copy(), "counter": self.seed_epoch},
            "step": self.step,
            "burn_in_end": self.burn_in_end,
            "production_steps": self.production_steps,
            "accepted": self.accepted.copy(),
        }

    def load_state_dict(self, checkpoint: dict) -> None:
        """Continue from a :meth:`state_dict`: same state and step counter, seeds of its step."""
        if not np.array_equal(np.asarray(checkpoint["rng"]["walker_indices"]), self.walker_indices):
            raise ValueError("checkpoint is for different walkers than this sampler runs")
        step = int(checkpoint["step"])
        state = checkpoint["state"]
        velocities = state.get("velocities")
        self._walkers = []  # free the old Contexts first
        self._walkers = [
            Walker(self.system, self.integrator, self.seed, int(w), np.asarray(state["positions"][i]),
                   None if velocities is None else np.asarray(velocities[i]), epoch=step, step=step)
            for i, w in enumerate(self.walker_indices)]
        self.step = step
        self.seed_epoch = step
        self.burn_in_end = int(checkpoint["burn_in_end"])
        self.production_steps = int(checkpoint["production_steps"])
        self.accepted = np.asarray(checkpoint["accepted"], dtype=np.int64).copy()

    # ------------------------------------------------------------------ the loop
    @contextlib.contextmanager
    def _running(self, end: int):
        wall0 = self.wall_time  # the result reports this call's stepping time, as Sampler's does
        yield
        self._wall_time_run = self.wall_time - wall0

    def _run_time(self) -> float:
        return self._wall_time_run

    def _limit_stop(self, stop: int, record_every: int, recorder: FrameRecorder) -> int:
        """With frame sinks, a segment also ends after ``recorder.block`` frames (bounded memory)."""
        if recorder.sinks:
            stop = min(stop, self._block_end(record_every, recorder.block))
        return stop

    def _advance(self, stop: int, record_every: int, recorder: FrameRecorder, bar) -> bool:
        self._segment(self.step, stop, record_every, recorder, bar)
        return False  # every segment's frames went to the recorder as one host block

    def _frame_steps(self, s0: int, stop: int, record_every: int) -> np.ndarray:
        """Recording steps in (s0, stop]."""
        first = max(s0, self.burn_in_end)
        k0 = (first - self.burn_in_end) // record_every + 1
        k1 = (stop - self.burn_in_end) // record_every if stop >= self.burn_in_end else k0 - 1
        return self.burn_in_end + record_every * np.arange(k0, k1 + 1, dtype=np.int64)

    def _block_end(self, record_every: int, record_block: int) -> int:
        """The step of the ``record_block``-th frame from now (a segment ends there at the latest)."""
        first = max(self.step, self.burn_in_end)
        k0 = (first - self.burn_in_end) // record_every + 1
        return self.burn_in_end + record_every * (k0 + record_block - 1)

    def _segment(self, s0: int, stop: int, record_every: int, recorder: FrameRecorder, bar) -> None:
        """Every walker from ``s0`` to ``stop``, one after another; frames to the recorder."""
        frames = self._frame_steps(s0, stop, record_every)
        cuts = sorted(set(frames.tolist()) | {stop} | ({self.burn_in_end} if s0 < self.burn_in_end < stop else set()))
        frame_at = {int(s): i for i, s in enumerate(frames)}
        n = self.system.event_shape[0]
        nf = len(frames)
        positions = np.empty((nf, self.n_walkers, n, 3), dtype=self.numpy_dtype)
        energies = np.empty((nf, self.n_walkers), dtype=self.numpy_dtype)
        kinetic = np.empty((nf, self.n_walkers), dtype=self.numpy_dtype) if self.integrator.has_velocities else None
        failures = {}
        t0 = time.perf_counter()
        for j, walker in enumerate(self._walkers):
            failed = self._run_walker(walker, j, s0, cuts, frame_at, positions, energies, kinetic, bar)
            if failed is not None:
                failures[j] = failed
        self.wall_time += time.perf_counter() - t0
        if failures:
            first = min(failures.values(), key=lambda s: s[1])
            good = int(np.searchsorted(frames, first[1], side="left"))
            recorder.add_block(frames[:good], positions[:good], energies[:good],
                               None if kinetic is None else kinetic[:good])
            walkers = [int(self.walker_indices[j]) for j in sorted(failures)]
            raise nonfinite_error(walkers, self.n_walkers, first, type(self.integrator).__name__,
                                  self._result(recorder, self.wall_time))
        self.production_steps += max(0, stop - max(s0, self.burn_in_end))
        self.step = stop
        if nf:
            recorder.add_block(frames, positions, energies, kinetic)

    def _run_walker(self, walker: Walker, j: int, s0: int, cuts, frame_at, positions, energies,
                    kinetic, bar) -> Optional[tuple[int, int]]:
        """One walker through a segment: None, or (last good step, failing step).

        Per cut only OpenMM is called: one ``step`` and, at a frame, one state read into the
        reader's chunk (:meth:`FrameReader.read`). Kinetic energies and the finiteness of
        positions and kinetic energies are worked out for a chunk of frames at once
        (:meth:`_check_frames`), and at once when a frame's potential energy is not finite:
        a diverged walker is reported at its first bad frame, as if every frame were checked.
        """
        import openmm  # the package imports without OpenMM installed; only running needs it

        mala = self.integrator.metropolis_adjusted
        reader = self._reader
        direct = self.numpy_dtype == np.float64  # OpenMM writes straight into the block
        chunk = reader.chunk
        pending = []  # (frame, previous cut, step, U) of the frames read since the last check
        advance = walker.integrator.step  # bound once: the loop runs once per frame
        step = s0
        checked_end = False
        for cut in cuts:
            try:
                advance(cut - step)
            except openmm.OpenMMException as exc:
                if not is_nan_error(exc):  # the CPU and GPU platforms stop on NaN coordinates
                    raise
                return self._check_frames(pending, j, positions, kinetic) or (step, cut)
            bar.update(cut - step)
            prev, step = step, cut
            if mala and step == self.burn_in_end:
                walker.take_acceptance()  # burn-in proposals do not count
            frame = frame_at.get(step)
            checked_end = frame is not None
            if frame is None:
                continue
            e = reader.read(walker, len(pending), positions[frame, j] if direct else None)
            energies[frame, j] = e
            pending.append((frame, prev, step, e))
            if len(pending) == chunk or not math.isfinite(e):
                failed = self._check_frames(pending, j, positions, kinetic)
                if failed is not None:
                    return failed
        failed = self._check_frames(pending, j, positions, kinetic)
        if failed is not None:
            return failed
        if not checked_end and not np.isfinite(reader(walker)[0]):  # an unrecorded end
            return s0, step
        if mala:
            n_acc = walker.take_acceptance()
            if step > self.burn_in_end:
                self.accepted[j] += int(round(n_acc))
        return None

    def _check_frames(self, pending: list, j: int, positions, kinetic) -> Optional[tuple[int, int]]:
        """Finish walker ``j``'s frames read into the reader's chunk; empties ``pending``.

        Fills their kinetic energies (and, for float32 records, positions), then returns
        (previous cut, step) of the first frame with a non-finite potential or kinetic energy
        or position, or None.
        """
        count = len(pending)
        if count == 0:
            return None
        frames = np.fromiter((p[0] for p in pending), dtype=np.int64, count=count)
        k = self._reader.kinetic(count)
        if kinetic is not None:
            kinetic[frames, j] = k
        if self.numpy_dtype != np.float64:
            positions[frames, j] = self._reader.chunk_positions[:count]
        # U as OpenMM returned it (float64), positions as recorded
        ok = np.isfinite(np.fromiter((p[3] for p in pending), dtype=np.float64, count=count))
        ok &= np.isfinite(positions[frames, j]).reshape(count, -1).all(axis=1)
        if kinetic is not None:
            ok &= np.isfinite(k)
        bad = pending[int(np.argmin(ok))][1:3] if not ok.all() else None
        pending.clear()
        return bad

    def _result(self, recorder: FrameRecorder, wall_time: float) -> SampleResult:
        mala = self.integrator.metropolis_adjusted
        meta = metadata(self.system, self.integrator, self.seed, self.device, np.dtype(self.numpy_dtype).name,
                        "openmm", {"openmm_integrator": scheme_description(self.integrator),
                                   "seed_epoch": self.seed_epoch})
        return build_result(
            recorder, self, wall_time,
            acceptance_rate(self.accepted, self.production_steps, mala),
            np.full(self.n_walkers, float(self.integrator.step_size)) if mala else None, meta)


__all__ = ["OpenMMSampler"]
