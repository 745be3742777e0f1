"""The torch executor: one loop over steps for batched walkers on a torch device.

The loop runs the integrator on the device with no host synchronisation between *stops*. A
stop happens when a reporter is due (OpenMM's pattern: each reporter says when it next wants
the state), when the recording buffer is full, or at the end; only there does the executor
look at the state (finiteness check, progress bar, recorded frames to the host).

Two ways to take the steps between stops: eagerly, one torch op at a time, or as
``torch.compile``d calls of a few steps (:mod:`.compiled`: one graph per system, integrator,
dtype and device, whatever the walker count, run length or ``record_every``).
``compile="auto"`` (the default) compiles when the time a short probe says compiling saves
exceeds what compiling costs (:meth:`Sampler._decide_compile`) and a working compiler
exists; compiled kernels are cached on disk (:func:`compile_cache_dir`), so the compile
time is paid once per machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .. import checks, integrators
from ..errors import NonFiniteStateError, nonfinite_error, nonfinite_start_message
from ..integrators.base import Integrator, State, sum_event
from ..random import WalkerRNG
from ..result import SampleResult
from ..systems.base import System
from ..threads import check_threads, choose_threads, compiled_threads, torch_threads
from .base import Executor, walker_range
from .compiled import (COMPILE_CHUNK, chunk_length, compile_cache_dir, compiled_chunk, compiler_missing,
                       fingerprint, graphs_compiled, is_compiled, mark_compiled, mark_walker_dim,
                       persistent_compile_cache, record_compile_time, recorded_compile_time)
from .recorder import FrameRecorder
from .results import acceptance_rate, build_result, metadata
from .start import start_positions

log = logging.getLogger(__name__)

#: Work, in walker-steps × coordinates per walker, from which ``compile="auto"`` says why it
#: cannot compile (not compilable, no compiler). Measured with ``benchmarks/bench_throughput.py``
#: (Müller–Brown, float64, one thread, a loaded 2-core VM): a cold compile is repaid after
#: ~2–4·10⁸ walker-steps, so below 10⁹ coordinate-steps a missing compiler costs little.
AUTO_COMPILE_WORK = 10**9
#: Work below which ``compile="auto"`` runs eagerly without probing: at ≥ 1 ns per
#: coordinate-step compiling could save at most ~10 ms, less than any compile or cache load.
AUTO_PROBE_WORK = 10**7
#: Compiled over eager throughput assumed while no compiled step of this system has been timed
#: in this process: the low end of what was measured (2.4× alanine dipeptide OBC2, 3–5×
#: Müller–Brown, CPU, one thread), so "auto" compiles only where it should pay.
ASSUMED_COMPILED_SPEEDUP = 2.0
#: Expected seconds of a compile with no record of an earlier one (:func:`~.compiled.record_compile_time`):
#: cold compiles measured 20–60 s quiet, 40–130 s on a loaded 2-core VM.
COLD_COMPILE_SECONDS = 60.0
#: Eager steps timed by the probe (after one untimed step) and compiled calls timed.
PROBE_STEPS = 3


class Sampler(Executor):
    """Runs one integrator on a batch of independent walkers (the loop: :class:`~.base.Executor`).

    Parameters
    ----------
    system : System
        The Boltzmann target.
    integrator : Integrator
    n_walkers : int
        Number of independent walkers (ignored when ``walker_indices`` is given).
    seed : int
        Seed of every walker's counter-based random stream.
    device : str or torch.device, optional
        Where the walkers live (default CPU).
    dtype : 'float32' or 'float64', optional
        Floating type of positions and velocities (default float64).
    initial_positions : array-like or "exact", optional
        Shape ``(n_walkers, *event_shape)``, or ``event_shape`` to start every walker at one
        point. By default the system's documented start (``system.initial_positions``: a
        minimum, the modes in turn, a reference structure; never exact draws). ``"exact"``
        starts from exact draws of the target (``system.exact_samples``), for tests of
        stationary laws; systems without exact draws refuse it.
    walker_indices : sequence of int, optional
        Global walker indices this sampler runs (a shard of a larger run); overrides
        ``n_walkers`` and ``first_walker``.
    first_walker : int
        Global index of the first walker: the sampler runs walkers ``first_walker`` to
        ``first_walker + n_walkers - 1``, exactly as they run inside a larger run.
    compile : True, False or "auto"
        Fuse steps into ``torch.compile``d calls (:attr:`COMPILE_CHUNK` steps each for analytic
        systems, one for molecules; the graph is shared by every sampler of the same system,
        integrator class, dtype and device in the process, for any walker count). It removes
        most per-step Python and kernel-launch overhead (3–5× the eager throughput on CPU)
        at the price of a one-off compile, cached on disk (:func:`compile_cache_dir`). Draws
        come from the same random streams, but fused kernels round differently, so a
        compiled run is reproducible with itself, not bitwise equal to an eager one.
        Burn-in steps that adapt a step size always run eagerly. ``"auto"`` (default)
        compiles a run when the time compiling saves, from a short eager probe, exceeds what
        it costs (nothing when the graph is in memory, the last recorded compile time, or
        :data:`COLD_COMPILE_SECONDS`), a compiler is available (:func:`compiler_missing`) and
        the integrator is :attr:`~langevin_md.integrators.base.Integrator.compilable`; runs
        under :data:`AUTO_PROBE_WORK` coordinate-steps stay eager unprobed. The decision and
        its reason are logged and kept in :attr:`compile_decision` and the result's
        ``metadata["compile_decision"]``; a checkpoint carries it, so a resumed run steps as
        the original did.
    threads : int, optional
        Torch intra-op threads during :meth:`run`/:meth:`run_to`; the process's setting is
        restored afterwards. By default one thread for problems up to
        :data:`~langevin_md.threads.SMALL_PROBLEM` coordinates, where more threads only
        synchronise, and beyond it the CPUs idle when the run starts (at most torch's setting,
        at least one): threads on busy cores thrash. Compiled runs use one thread up to
        :data:`~langevin_md.threads.SMALL_COMPILED_PROBLEM` and torch's setting beyond, since
        their kernels are specialised to a thread count. See :mod:`langevin_md.threads`.

    Attributes
    ----------
    compile_time : float
        Seconds the last run spent compiling (0 when nothing was compiled).
    threads_used : int
        Torch intra-op threads during the last run.
    compiled : bool
        Whether the last run took its steps compiled.
    compile_decision : str
        Why: ``"compile=True"``, ``"compile=False"``, or ``compile="auto"``'s reason.
    """

    backend = "torch"
    #: Constructor keywords a run config's [sampler] table may set (langevin_md.run.choices).
    OPTIONS = ("n_walkers", "seed", "device", "dtype", "initial_positions", "first_walker", "compile",
               "threads")

    def __init__(self, system: System, integrator: Integrator, n_walkers: int = 1, seed: int = 0,
                 device=None, dtype=None, initial_positions=None,
                 walker_indices: Optional[Sequence[int]] = None, first_walker: int = 0,
                 compile: Union[bool, str] = "auto", threads: Optional[int] = None):
        if not isinstance(system, System):
            raise TypeError(f"system must be a langevin_md System, got {type(system).__name__}")
        if not isinstance(integrator, Integrator):
            raise TypeError(f"integrator must be a langevin_md Integrator, got {type(integrator).__name__}")
        integrator.check_system(system)
        self.system = system
        self.integrator = integrator
        self.device = checks.device(device)
        self.dtype = checks.dtype(dtype)
        self.rng = WalkerRNG(seed, walker_range(n_walkers, walker_indices, first_walker), device=self.device)
        self.seed = self.rng.seed
        self.n_walkers = self.rng.n_walkers
        self.step = 0
        self.burn_in_end = 0
        self.accepted = torch.zeros(self.n_walkers, dtype=torch.int64, device=self.device)
        self.production_steps = 0
        if not (compile is True or compile is False or (isinstance(compile, str) and compile == "auto")):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        if compile is True and not integrator.compilable:
            raise ValueError(f"compile=True: {type(integrator).__name__} cannot be compiled (its step "
                             "branches on Python state); use compile='auto' or False")
        self.compile = compile
        self.threads = check_threads(threads)
        self.compile_time = 0.0
        self.threads_used = torch.get_num_threads()
        self.compiled = False
        self.compile_decision = ""
        self._compiled_sizes: set = set()
        self._compile_failed: Optional[str] = None
        self._compile_logged: Optional[str] = None
        self._restored_compiled: Optional[bool] = None  # an "auto" decision a checkpoint carried
        self._lanes = None  # the lanes runner, False where none applies (see _lanes_runner)
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
            # compile="auto" decides by timing; a resumed run must take its steps the same way.
            "compiled": self.compiled if self.compile_decision else None,
        }

    def load_state_dict(self, checkpoint: dict) -> None:
        """Restore a :meth:`state_dict` (same system, integrator and walkers)."""
        cls = getattr(integrators, checkpoint["state_class"])
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
        compiled = checkpoint.get("compiled")
        self._restored_compiled = None if compiled is None else bool(compiled)

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
    @contextlib.contextmanager
    def _running(self, end: int):
        """Threads, the compile decision and the wall clock around one run to step ``end``."""
        coords = self.n_walkers * max(1, math.prod(self.system.event_shape))
        self.compile_time = 0.0
        self.compiled, self.compile_decision = self._decide_compile(end, coords)
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            choose = compiled_threads if self.compiled else choose_threads
            stack.enter_context(torch_threads(choose(coords, self.threads)))
            self.threads_used = torch.get_num_threads()
            if self.compiled:
                stack.enter_context(persistent_compile_cache())
            yield
        self.wall_time = time.perf_counter() - t0
        if self.compile_time > 0:
            log.info("compiled %s chunks in %.1f s (cache %s)", type(self.integrator).__name__,
                     self.compile_time, compile_cache_dir())

    def _run_time(self) -> float:
        return self.wall_time

    def _decide_compile(self, end: int, coords: int) -> tuple[bool, str]:
        """Whether this run (from ``self.step`` to global step ``end``) takes its steps compiled, and why.

        ``compile="auto"`` weighs the time compiling saves against the time it costs:

        * saved: ``steps × (t_eager − t_compiled)``, with ``t_eager`` the seconds per step of
          a short eager probe (:data:`PROBE_STEPS` steps on a copy of the state and streams:
          the run itself is untouched) and ``t_compiled`` the timed compiled step when this
          process already holds the graph, else ``t_eager / ASSUMED_COMPILED_SPEEDUP``;
        * cost: nothing when the graph is in memory; else the seconds the last compile of
          the same fingerprint took on this machine (:func:`~.compiled.recorded_compile_time`:
          kernels then load from the disk cache), else :data:`COLD_COMPILE_SECONDS`.

        Runs below :data:`AUTO_PROBE_WORK` coordinate-steps stay eager without a probe. A
        decision restored from a checkpoint (:meth:`load_state_dict`) is kept, so a resumed
        run steps exactly as the original would have.
        """
        if self.compile is True:
            return True, "compile=True"
        if self.compile is False:
            return False, "compile=False"
        restored, self._restored_compiled = self._restored_compiled, None
        if restored is not None:
            return restored, f"{'compiled' if restored else 'eager'}, as before the checkpoint"
        work = coords * (end - self.step)
        if self.compile == "auto" and self._lanes_runner() is not None:
            # A graph would trace the torch terms (numba cannot be traced), which run slower than
            # the lanes kernels: float32 compiled reached 1.6x one OpenMM Context on alanine
            # dipeptide in vacuum at 1024 walkers, where the lanes path runs past 3x in float64.
            return False, "eager: the lanes kernels run this force field (a compiled graph would trace the slower torch terms)"
        if not self.integrator.compilable:
            why = f"{type(self.integrator).__name__} is not compilable"
        else:
            why = self._compile_failed or compiler_missing(self.device)
        if why is not None:
            if coords * end >= AUTO_COMPILE_WORK and why != self._compile_logged:
                log.warning("compile='auto': running eagerly because %s", why)
                self._compile_logged = why
            return False, f"eager: {why}"
        if work < AUTO_PROBE_WORK:
            return False, (f"eager: a small run ({work:.2g} coordinate-steps < {AUTO_PROBE_WORK:.0e}) "
                           "cannot repay a compile")
        compiled, reason = self._weigh_compile(end - self.step, coords)
        log.info("compile='auto': %s", reason)
        return compiled, reason

    def _weigh_compile(self, steps: int, coords: int) -> tuple[bool, str]:
        """The measured part of :meth:`_decide_compile` (probes on copies of the state)."""
        k = chunk_length(self.system)
        with torch_threads(choose_threads(coords, self.threads)):
            t_eager = self._probe(compiled=False, k=1)
        in_memory = is_compiled(self.system, self.integrator, self.dtype, self.device, k)
        if in_memory:
            with torch_threads(compiled_threads(coords, self.threads)), persistent_compile_cache():
                t_compiled = self._probe(compiled=True, k=k)
            cost, source = 0.0, "the graph is in memory"
        else:
            t_compiled = t_eager / ASSUMED_COMPILED_SPEEDUP
            key = fingerprint(self.system, self.integrator, self.dtype, self.device, k)
            recorded = recorded_compile_time(key)
            cost, source = ((recorded, "as the last compile here took") if recorded is not None
                            else (COLD_COMPILE_SECONDS, "a cold compile, none recorded here"))
        saved = steps * (t_eager - t_compiled)
        what = (f"{steps} steps × ({t_eager * 1e3:.3g} ms eager − {t_compiled * 1e3:.3g} ms compiled"
                f"{'' if in_memory else ' assumed'}) saves ~{saved:.3g} s")
        if saved > cost:
            return True, f"compiled: {what} > compile ~{cost:.3g} s ({source})"
        return False, f"eager: {what} ≤ compile ~{cost:.3g} s ({source})"

    def _probe(self, compiled: bool, k: int) -> float:
        """Seconds per step of eager (or compiled) steps on copies of the state and streams."""
        state = type(self.state)(**{f.name: (v.clone() if isinstance(v, torch.Tensor) else v)
                                    for f in dataclasses.fields(self.state)
                                    for v in [getattr(self.state, f.name)]})
        rng = WalkerRNG.from_state_dict(self.rng.state_dict(), device=self.device)
        integ, system = self.integrator, self.system

        def steps(state, n):
            for _ in range(n):
                if compiled:
                    state = self._compiled_call(state, rng, k)[0]
                else:
                    state = integ.step(system, state, rng)[0]
            return state

        state = steps(state, 1)  # warm-up: caches, first-call allocations
        self._sync()
        t0 = time.perf_counter()
        steps(state, PROBE_STEPS)
        self._sync()
        return (time.perf_counter() - t0) / (PROBE_STEPS * (k if compiled else 1))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _advance(self, stop: int, record_every: int, recorder: FrameRecorder, bar) -> bool:
        """Step to ``stop`` on the device, then check the state is finite (one host sync)."""
        checked = self.step
        flush_needed = self._advance_on_device(stop, record_every, recorder)
        self._check_finite(self.state, (checked, self.step), recorder)
        return flush_needed

    def _advance_on_device(self, stop: int, record_every: int, recorder: FrameRecorder) -> bool:
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
        accepted = None
        if self.compiled:
            n, accepted = self._compiled_segment(n)
        integ, system, rng = self.integrator, self.system, self.rng
        state = self.state
        runner = self._lanes_runner() if n > 0 else None
        if runner is not None:
            self.state = runner.run(state, rng, n)
            return accepted
        for _ in range(n):
            state, info = integ.step(system, state, rng)
            if info.accepted is not None:
                # A count owned here, summed in place: one kernel and no allocation a step.
                accepted = (info.accepted.to(torch.int64, copy=True) if accepted is None
                            else accepted.add_(info.accepted))
        self.state = state
        return accepted

    def _lanes_runner(self):
        """The lanes BAOAB of :mod:`~langevin_md.integrators.lanes_langevin` when it applies to this run, else None.

        Asked once per sampler (the answer depends on its system, integrator, dtype and
        device, which are fixed); its steps are bitwise the eager ones.
        """
        if self._lanes is None:
            runner = False
            if self.device.type == "cpu" and getattr(self.system, "lanes_kernels", None) is not None:
                from langevin_md.integrators.lanes_langevin import lanes_runner  # imports numba
                runner = lanes_runner(self.system, self.integrator, self.state) or False
            self._lanes = runner
        return self._lanes or None

    # ------------------------------------------------------------------ compiled path
    #: Steps fused into one compiled call for analytic systems (molecular ones take one step a
    #: call: :func:`~.compiled.chunk_length`). Segments are cut into such calls and single
    #: steps, so ``record_every``, the reporters and the segment lengths never add a graph.
    COMPILE_CHUNK = COMPILE_CHUNK

    def _compiled_call(self, state: State, rng: WalkerRNG, k: int):
        """``k`` compiled steps from ``state`` drawing from ``rng`` (advanced); returns (state, accepted).

        The graph is shared by every sampler on this system, integrator class, dtype and
        device (:func:`~.compiled.compiled_chunk`); the walker dimension is marked dynamic and
        the counter is a tensor, so neither the walker count nor the stream position is a guard.
        """
        fn = compiled_chunk(self.system, self.integrator, self.dtype, self.device, k)
        mark_walker_dim(state.tensors().values(), self.n_walkers)
        keys = rng.keys
        mark_walker_dim((keys,), self.n_walkers)
        counter = torch.tensor(rng.counter, dtype=torch.int64, device=self.device)
        state, acc, used = fn(self.integrator, self.system, state, keys, counter, k)
        rng.counter += used
        return state, acc

    def _compiled_segment(self, n: int) -> tuple[int, Optional[torch.Tensor]]:
        """Take up to ``n`` compiled steps; return (steps left to take eagerly, accepted)."""
        accepted = None
        chunk = chunk_length(self.system)
        while n > 0:
            k = chunk if n >= chunk else 1
            first = k not in self._compiled_sizes
            graphs = graphs_compiled()
            t0 = time.perf_counter()
            try:
                state, acc = self._compiled_call(self.state, self.rng, k)
            except Exception as exc:
                if self.compile is True or not first:
                    raise
                # "auto" promised a run, not a compiled one: nothing was consumed, go eager.
                self._compile_failed = f"torch.compile failed ({type(exc).__name__}: {exc})".splitlines()[0]
                log.warning("compile='auto': running eagerly because %s", self._compile_failed)
                self._compile_logged = self._compile_failed
                self.compiled = False
                self.compile_decision = f"eager: {self._compile_failed}"
                return n, accepted
            self._compiled_sizes.add(k)
            if graphs_compiled() > graphs:  # this call traced and compiled (or loaded) a graph
                seconds = time.perf_counter() - t0
                self.compile_time += seconds
                mark_compiled(self.system, self.integrator, self.dtype, self.device, k)
                record_compile_time(fingerprint(self.system, self.integrator, self.dtype, self.device, k),
                                    seconds)
            self.state = state
            if acc is not None:
                accepted = acc if accepted is None else accepted + acc
            n -= k
        return 0, accepted

    def _kinetic(self, state) -> Optional[torch.Tensor]:
        v = getattr(state, "velocities", None)
        if v is None:
            return None
        m = self.system.dof_masses(v)
        return 0.5 * sum_event(m * v * v)

    def _result(self, recorder: FrameRecorder, wall_time: float) -> SampleResult:
        step_sizes = getattr(self.state, "step_size", None)
        meta = metadata(self.system, self.integrator, self.seed, self.device, self.dtype, "torch",
                        {"compiled": self.compiled, "compile_decision": self.compile_decision})
        result = build_result(
            recorder, self, wall_time,
            acceptance_rate(self.accepted, self.production_steps, self.integrator.metropolis_adjusted),
            None if step_sizes is None else step_sizes.cpu().numpy(), meta,
            self.integrator_summary() if recorder.keep else {})
        result.compile_time = self.compile_time
        return result
