"""The one loop over steps: walkers, random streams, recording, reporters and safety checks.

The loop runs the integrator on the device with no host synchronisation between *stops*. A
stop happens when a reporter is due (OpenMM's pattern: each reporter says when it next wants
the state), when the recording buffer is full, or at the end; only there does the sampler
look at the state (finiteness check, progress bar, recorded frames to the host).
"""

from __future__ import annotations

import math
import time
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .integrators.base import Integrator, State
from .random import CounterStream, WalkerRNG
from .result import SampleResult
from .systems.base import System


class NonFiniteStateError(FloatingPointError):
    """The state went NaN or infinite. ``result`` holds every frame recorded before it."""

    def __init__(self, message: str, result: Optional[SampleResult] = None,
                 walkers: Sequence[int] = (), steps: tuple[int, int] = (0, 0)):
        super().__init__(message)
        self.result = result
        self.walkers = list(walkers)
        self.steps = steps


class Reporter:
    """Something told about the state at the steps it asks for.

    Subclasses set :meth:`next_report` (steps from ``step`` until it is next due, or None
    for never) and :meth:`report`. ``report`` receives the sampler (for its RNG and settings),
    the current state and the global step.
    """

    def next_report(self, step: int) -> Optional[int]:
        raise NotImplementedError

    def report(self, sampler: "Sampler", state: State, step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the run ends, normally or not."""


class _FrameRecorder:
    """Keeps recorded frames on the device and moves them to the host in blocks."""

    def __init__(self, block: int, with_kinetic: bool, sinks: Sequence = (), keep: bool = True):
        self.block = block
        self.with_kinetic = with_kinetic
        self.sinks = list(sinks)
        self.keep = keep
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = []
        self.positions: list[np.ndarray] = []
        self.energies: list[np.ndarray] = []
        self.kinetic: list[np.ndarray] = []
        self.steps: list[int] = []

    def add(self, step: int, state: State, kinetic: Optional[torch.Tensor]) -> bool:
        """Queue a frame; True when the block is full and should be flushed."""
        self._pending.append((step, state.positions, state.energy, kinetic))
        return len(self._pending) >= self.block

    def flush(self) -> None:
        if not self._pending:
            return
        steps, pos, en, kin = zip(*self._pending)
        block = (np.asarray(steps, dtype=np.int64), torch.stack(pos).cpu().numpy(),
                 torch.stack(en).cpu().numpy(),
                 torch.stack(kin).cpu().numpy() if self.with_kinetic else None)
        self._pending.clear()
        for sink in self.sinks:
            sink.write_frames(*block)
        if self.keep:
            self.steps.extend(steps)
            self.positions.append(block[1])
            self.energies.append(block[2])
            if self.with_kinetic:
                self.kinetic.append(block[3])

    def truncate_nonfinite(self) -> Optional[int]:
        """Drop pending frames from the first one holding a non-finite value; return its step."""
        for i, frame in enumerate(self._pending):
            if not (torch.isfinite(frame[1]).all() and torch.isfinite(frame[2]).all()):
                self._pending = self._pending[:i]
                return frame[0]
        return None

    def arrays(self, n_walkers: int, event_shape: tuple, dtype):
        self.flush()
        if self.positions:
            pos = np.concatenate(self.positions)
            en = np.concatenate(self.energies)
        else:
            pos = np.zeros((0, n_walkers) + tuple(event_shape), dtype=dtype)
            en = np.zeros((0, n_walkers), dtype=dtype)
        kin = None
        if self.with_kinetic:
            kin = np.concatenate(self.kinetic) if self.kinetic else np.zeros((0, n_walkers), dtype=dtype)
        return pos, en, kin, np.asarray(self.steps, dtype=np.int64)


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but torch sees no CUDA device; use device='cpu'")
    return dev


def _resolve_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float64
    table = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32,
             torch.float64: torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def _positive_int(name: str, value, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {what} integer, got {value!r}")
    return int(value)


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
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        if walker_indices is None:
            first = _positive_int("first_walker", first_walker, allow_zero=True)
            walker_indices = range(first, first + _positive_int("n_walkers", n_walkers))
        self.rng = WalkerRNG(seed, walker_indices, device=self.device)
        self.seed = self.rng.seed
        self.n_walkers = self.rng.n_walkers
        self.step = 0
        self.burn_in_end = 0
        self.accepted = torch.zeros(self.n_walkers, dtype=torch.int64, device=self.device)
        self.production_steps = 0
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self._compiled = torch.compile(self._chunk, dynamic=False) if compile else None
        x0 = self._initial_positions(initial_positions)
        self.state = integrator.init(system, x0, self.rng)
        self._check_finite(self.state, (0, 0), recorder=None, initial=True)

    # ------------------------------------------------------------------ set-up
    def _initial_positions(self, initial_positions) -> torch.Tensor:
        shape = tuple(self.system.event_shape)
        if initial_positions is None:
            x0 = self.system.initial_positions(self.n_walkers, self.rng)
        else:
            x0 = torch.as_tensor(np.asarray(initial_positions) if not isinstance(initial_positions, torch.Tensor)
                                 else initial_positions)
            if tuple(x0.shape) == shape:
                x0 = x0.expand((self.n_walkers,) + shape)
            if tuple(x0.shape) != (self.n_walkers,) + shape:
                raise ValueError(
                    f"initial_positions have shape {tuple(x0.shape)}; expected ({self.n_walkers}, "
                    f"{', '.join(map(str, shape))}) for {self.n_walkers} walkers, or {shape} for one "
                    "point shared by all walkers"
                )
        return x0.to(device=self.device, dtype=self.dtype).contiguous()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a bitwise-identical continuation needs, as host numpy arrays and ints.

        Positions, velocities, cached energy and forces, adaptation state (per-walker step
        sizes and dual-averaging statistics), every walker's random-stream counter, the step,
        the burn-in boundary and the acceptance counts.
        """
        import dataclasses

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
        from . import integrators as _integrators

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
        shown = ", ".join(map(str, walkers[:10])) + (" ..." if len(walkers) > 10 else "")
        if initial:
            msg = (f"the starting state is not finite for walkers [{shown}] "
                   f"({len(walkers)} of {self.n_walkers}): the initial positions have a non-finite "
                   "energy or force (overlapping atoms, a point outside the potential's domain, "
                   "or NaN coordinates)")
            raise NonFiniteStateError(msg, None, walkers, steps)
        name = type(self.integrator).__name__
        if recorder is not None:
            # Recorded frames narrow down when it happened, at no extra cost.
            first_bad = recorder.truncate_nonfinite()
            if recorder._pending:
                steps = (recorder._pending[-1][0], steps[1])
            elif recorder.steps:
                steps = (recorder.steps[-1], steps[1])
            if first_bad is not None:
                steps = (steps[0], first_bad)
        when = (f"at step {steps[1]}" if steps[0] + 1 >= steps[1]
                else f"between steps {steps[0] + 1} and {steps[1]}")
        msg = (f"non-finite state {when} for walkers [{shown}] ({len(walkers)} of "
               f"{self.n_walkers}). Likely causes: a step size too large for the stiffest "
               f"mode of the system (try a smaller step for {name}), a start far from "
               "equilibrium with huge forces (minimise first), or an energy that is not finite "
               "everywhere. Frames recorded before it are in the exception's .result.")
        result = self._result(recorder, 0.0) if recorder is not None else None
        raise NonFiniteStateError(msg, result, walkers, steps)

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
        n_steps = _positive_int("n_steps", n_steps)
        burn_in = _positive_int("burn_in", burn_in, allow_zero=True)
        self.burn_in_end = self.step + burn_in
        return self.run_to(self.step + burn_in + n_steps, record_every, reporters, progress,
                           record_block)

    def run_to(self, end: int, record_every: int = 1, reporters: Iterable[Reporter] = (),
               progress: Optional[bool] = None, record_block: Optional[int] = None,
               frame_sinks: Sequence = (), keep_frames: bool = True) -> SampleResult:
        """Advance to global step ``end`` (used directly to continue from a checkpoint).

        Frames are recorded at production steps s with (s − burn_in_end) % record_every == 0,
        a rule that does not depend on where a run was interrupted. ``frame_sinks`` receive
        every block of frames as it reaches the host (``write_frames(steps, positions,
        energies, kinetic_energies)``), and always before any reporter is told about a later
        step, so a checkpoint never runs ahead of the frames written.
        """
        from tqdm.auto import tqdm

        record_every = _positive_int("record_every", record_every)
        reporters = list(reporters)
        start = self.step
        if end < start:
            raise ValueError(f"cannot run to step {end}: the sampler is already at step {start}")
        if record_block is None:
            frame_bytes = self.n_walkers * max(1, math.prod(self.system.event_shape)) * 8
            record_block = max(1, min(1000, (64 << 20) // frame_bytes))
        recorder = _FrameRecorder(record_block, self.integrator.has_velocities, frame_sinks, keep_frames)
        # tqdm's disable=None means "only on a terminal".
        disable = None if progress is None else not progress
        bar = tqdm(total=end - start, disable=disable, unit="step",
                   desc=type(self.integrator).__name__, leave=False)
        t0 = time.perf_counter()
        try:
            while self.step < end:
                checked = self.step
                stop = end
                for r in reporters:
                    due = r.next_report(self.step)
                    if due is not None:
                        stop = min(stop, self.step + max(1, due))
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

    def _advance(self, stop: int, record_every: int, recorder: _FrameRecorder) -> bool:
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
                    if recorder.add(end, self.state, self._kinetic(self.state)):
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

    def _result(self, recorder: _FrameRecorder, wall_time: float) -> SampleResult:
        pos, en, kin, steps = recorder.arrays(self.n_walkers, self.system.event_shape,
                                              np.float64 if self.dtype == torch.float64 else np.float32)
        acc = None
        if self.integrator.metropolis_adjusted and self.production_steps > 0:
            acc = (self.accepted.double() / self.production_steps).cpu().numpy()
        step_sizes = getattr(self.state, "step_size", None)
        return SampleResult(
            positions=pos, energies=en, steps=steps, kT=float(self.system.kT),
            acceptance_rate=acc, kinetic_energies=kin,
            step_sizes=None if step_sizes is None else step_sizes.cpu().numpy(),
            walker_indices=self.rng.walker_indices.copy(), wall_time=wall_time,
            n_steps_run=self.step,
            metadata={"system": repr(self.system), "integrator": repr(self.integrator),
                      "seed": self.seed, "device": str(self.device), "dtype": str(self.dtype),
                      "backend": "torch"},
            system=self.system,
        )


def sample(system: System, integrator: Integrator, n_steps: int, n_walkers: int = 1,
           record_every: int = 1, burn_in: int = 0, seed: int = 0, device=None, dtype=None,
           initial_positions=None, progress: Optional[bool] = None, backend: str = "torch",
           compile: bool = False) -> SampleResult:
    """Sample ``system`` with ``integrator`` on ``n_walkers`` independent walkers.

    Parameters
    ----------
    system : System
    integrator : Integrator
    n_steps : int
        Production steps per walker (after ``burn_in``).
    n_walkers : int
    record_every : int
        Record a frame every this many production steps.
    burn_in : int
        Steps discarded first; adaptive step sizes are tuned here and frozen after.
    seed : int
        The same seed gives bitwise the same result.
    device : str or torch.device, optional
    dtype : 'float32' or 'float64', optional
    initial_positions : array-like, optional
        ``(n_walkers, *event_shape)`` or ``event_shape``.
    progress : bool, optional
        Progress bar (default: only on a terminal).
    backend : {'torch', 'openmm'}
        ``'torch'`` (default) steps batched walkers in torch on ``device``. ``'openmm'`` runs
        BAOAB, OBABO, Brownian, ULA or MALA entirely inside OpenMM, one Context per walker on
        the system's platform (OpenMM systems only; it also enforces constraints); see
        :mod:`langevin_md.openmm_executor`. ``device`` must then be None.
    compile : bool
        Torch executor only: fuse steps with ``torch.compile`` (see :class:`Sampler`).

    Returns
    -------
    SampleResult
        ``positions`` (n_frames, n_walkers, *event_shape), ``energies`` (n_frames, n_walkers),
        ``acceptance_rate`` (n_walkers,) for Metropolis-adjusted schemes.

    Raises
    ------
    NonFiniteStateError
        When a walker's state becomes NaN/inf; its ``result`` keeps the frames before it.
    """
    if backend == "openmm":
        from .openmm_executor import sample_openmm

        if compile:
            raise ValueError("compile=True applies to backend='torch' only; the OpenMM executor "
                             "already runs every step inside OpenMM")
        return sample_openmm(system, integrator, n_steps, n_walkers=n_walkers, record_every=record_every,
                             burn_in=burn_in, seed=seed, device=device, dtype=dtype,
                             initial_positions=initial_positions, progress=progress)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'openmm', got {backend!r}")
    sampler = Sampler(system, integrator, n_walkers=n_walkers, seed=seed, device=device,
                      dtype=dtype, initial_positions=initial_positions, compile=compile)
    return sampler.run(n_steps, record_every=record_every, burn_in=burn_in, progress=progress)
