"""The torch executor: one loop over steps for batched walkers on a torch device.

The loop runs the integrator on the device with no host synchronisation between *stops*. A
stop happens when a reporter is due (OpenMM's pattern: each reporter says when it next wants
the state), when the recording buffer is full, or at the end; only there does the executor
look at the state (finiteness check, progress bar, recorded frames to the host).

Two ways to take the steps between stops: eagerly, one torch op at a time, or as
``torch.compile``d chunks of :attr:`Sampler.COMPILE_CHUNK` steps. ``compile="auto"`` (the
default) compiles only when a run is large enough to repay the compile time (see
:data:`AUTO_COMPILE_WORK`) and a working compiler exists; compiled kernels are cached on disk
(:func:`compile_cache_dir`), so the compile time is paid once per machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import os
import shutil
import time
import types
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .. import checks, integrators
from ..errors import NonFiniteStateError, nonfinite_error, nonfinite_start_message
from ..integrators.base import Integrator, State, sum_event
from ..random import CounterStream, WalkerRNG
from ..result import SampleResult
from ..systems.base import System
from ..threads import check_threads, choose_threads, compiled_threads, torch_threads
from .base import Executor, walker_range
from .recorder import FrameRecorder
from .results import acceptance_rate, build_result, metadata
from .start import start_positions

log = logging.getLogger(__name__)

#: Work, in walker-steps × coordinates per walker, from which ``compile="auto"`` compiles a
#: run. Measured with ``benchmarks/bench_throughput.py`` (Müller–Brown, float64, one thread,
#: this loaded 2-core VM): compiling the two chunk graphs for one walker count costs 37–46 s
#: cold (ULA, BAOAB, MALA; fresh process and cache) and 5–14 s from the disk cache, and
#: compiling saves 0.1–0.2 µs per walker-step at 10⁴–10⁶ walkers (eager 2.5–3.6M, compiled
#: 10–12M walker-steps/s for ULA and BAOAB). A cold compile is repaid after ~2–4·10⁸
#: walker-steps; the threshold, 10⁹ coordinate-steps (5·10⁸ walker-steps of a 2-d system:
#: 10⁴ walkers × 5·10⁴ steps, 10⁶ walkers × 500 steps), is where even a cold compile pays
#: for itself; with a warm cache compiling wins well below it. Tests and small runs stay
#: eager.
AUTO_COMPILE_WORK = 10**9


def _torch_default_cache_dir() -> Optional[str]:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: then only an explicit setting counts
        return None
    return os.path.abspath(default_cache_dir())


def _user_cache_dir() -> Optional[str]:
    """``$TORCHINDUCTOR_CACHE_DIR`` when a user chose it (torch writes its default there too)."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not env or os.path.abspath(env) == _torch_default_cache_dir():
        return None
    return env


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept between runs.

    ``$TORCHINDUCTOR_CACHE_DIR`` when a user set it (torch's own setting); otherwise
    ``$XDG_CACHE_HOME/langevin_md/torchinductor`` (``~/.cache/langevin_md/torchinductor``),
    which, unlike torch's default under the temporary directory, survives reboots and
    temp-file cleaners. Delete it to force a cold compile.
    """
    env = _user_cache_dir()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "langevin_md" / "torchinductor"


@contextlib.contextmanager
def _persistent_compile_cache():
    """Point torch's compile cache at :func:`compile_cache_dir` for a block, then restore.

    Torch reads ``$TORCHINDUCTOR_CACHE_DIR`` whenever it looks for or writes a kernel, and
    writes its default there when unset; the previous value comes back afterwards.
    """
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def compiler_missing(device: torch.device) -> Optional[str]:
    """Why ``torch.compile`` cannot compile for ``device`` here, or None when it can.

    Checks what inductor needs without compiling anything: a C++ compiler on the CPU, Triton
    on CUDA, and a Python that dynamo supports.
    """
    try:
        import torch._dynamo as dynamo  # slow to import (~1 s): only when a run may compile
    except Exception as exc:  # a broken install: say so rather than fail the run
        return f"torch._dynamo does not import ({type(exc).__name__}: {exc})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version"
    if device.type == "cpu":
        if not (os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
            return "no C++ compiler (g++, c++ or clang++) on PATH"
    elif device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed"
    else:
        return f"the compiled path is tested on CPU and CUDA only, not {device.type}"
    return None


def _chunk_steps(integrator: Integrator, system: System, state: State, keys: torch.Tensor,
                 counter: torch.Tensor, k: int):
    """``k`` steps drawing from a :class:`CounterStream`; traced by ``torch.compile``."""
    stream = CounterStream(keys, counter)
    accepted = None
    for _ in range(k):
        state, info = integrator.step(system, state, stream)
        if info.accepted is not None:
            accepted = info.accepted.long() if accepted is None else accepted + info.accepted
    return state, accepted, stream.consumed


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
        Fuse steps into ``torch.compile``d chunks of :attr:`COMPILE_CHUNK` steps. It removes
        most per-step Python and kernel-launch overhead (3–5× the eager throughput on CPU)
        at the price of a one-off compile, cached on disk (:func:`compile_cache_dir`). Draws
        come from the same random streams, but fused kernels round differently, so a
        compiled run is reproducible with itself, not bitwise equal to an eager one.
        Burn-in steps that adapt a step size always run eagerly. ``"auto"`` (default)
        compiles a run whose work ``n_walkers × end step × coordinates per walker`` reaches
        :data:`AUTO_COMPILE_WORK` when a compiler is available (:func:`compiler_missing`) and
        the integrator is :attr:`~langevin_md.integrators.base.Integrator.compilable`, and
        otherwise runs eagerly, logging why when it wanted to compile. The decision depends
        on the run's end step, not on where it starts, so a resumed run decides as the
        original did.
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
        self._compiled = None          # the compiled chunk function, built on first use
        self._compiled_sizes: set = set()
        self._compile_failed: Optional[str] = None
        self._compile_logged: Optional[str] = None
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
        self.compiled = self._decide_compile(end, coords)
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            choose = compiled_threads if self.compiled else choose_threads
            stack.enter_context(torch_threads(choose(coords, self.threads)))
            self.threads_used = torch.get_num_threads()
            if self.compiled:
                stack.enter_context(_persistent_compile_cache())
            yield
        self.wall_time = time.perf_counter() - t0
        if self.compile_time > 0:
            log.info("compiled %s chunks in %.1f s (cache %s)", type(self.integrator).__name__,
                     self.compile_time, compile_cache_dir())

    def _run_time(self) -> float:
        return self.wall_time

    def _decide_compile(self, end: int, coords: int) -> bool:
        """Whether this run (to global step ``end``) takes its steps compiled."""
        if self.compile is not True and self.compile != "auto":
            return False
        if self.compile is True:
            return True
        work = coords * end
        if not self.integrator.compilable:
            why = f"{type(self.integrator).__name__} is not compilable"
        elif work < AUTO_COMPILE_WORK:
            return False  # small runs: the compile would cost more than it saves
        else:
            why = self._compile_failed or compiler_missing(self.device)
            if why is None:
                return True
        if work >= AUTO_COMPILE_WORK and why != self._compile_logged:
            log.warning("compile='auto': running eagerly because %s", why)
            self._compile_logged = why
        return False

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
        for _ in range(n):
            state, info = integ.step(system, state, rng)
            if info.accepted is not None:
                # A count owned here, summed in place: one kernel and no allocation a step.
                accepted = (info.accepted.to(torch.int64, copy=True) if accepted is None
                            else accepted.add_(info.accepted))
        self.state = state
        return accepted

    # ------------------------------------------------------------------ compiled path
    #: Steps fused into one compiled call. Segments are cut into chunks of this size and
    #: single steps, so a sampler compiles at most two graphs whatever ``record_every``,
    #: the reporters or the segment lengths are.
    COMPILE_CHUNK = 8

    def _compiled_fn(self):
        if self._compiled is None:
            # A code object of its own for this sampler: dynamo keeps its graphs per code
            # object, with a limit on their number, so samplers sharing one would evict each
            # other's graphs and, past the limit, silently fall back to eager.
            code = _chunk_steps.__code__.replace()
            fn = types.FunctionType(code, _chunk_steps.__globals__, _chunk_steps.__name__)
            self._compiled = torch.compile(fn, dynamic=False)
        return self._compiled

    def _compiled_segment(self, n: int) -> tuple[int, Optional[torch.Tensor]]:
        """Take up to ``n`` compiled steps; return (steps left to take eagerly, accepted)."""
        accepted = None
        fn = self._compiled_fn()
        while n > 0:
            k = self.COMPILE_CHUNK if n >= self.COMPILE_CHUNK else 1
            counter = torch.tensor(self.rng.counter, dtype=torch.int64, device=self.device)
            first = k not in self._compiled_sizes
            t0 = time.perf_counter()
            try:
                state, acc, used = fn(self.integrator, self.system, self.state, self.rng.keys, counter, k)
            except Exception as exc:
                if self.compile is True or not first:
                    raise
                # "auto" promised a run, not a compiled one: nothing was consumed, go eager.
                self._compile_failed = f"torch.compile failed ({type(exc).__name__}: {exc})".splitlines()[0]
                log.warning("compile='auto': running eagerly because %s", self._compile_failed)
                self._compile_logged = self._compile_failed
                self.compiled = False
                return n, accepted
            if first:
                self._compiled_sizes.add(k)
                self.compile_time += time.perf_counter() - t0
            self.state = state
            self.rng.counter += used
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
        meta = metadata(self.system, self.integrator, self.seed, self.device, self.dtype, "torch")
        result = build_result(
            recorder, self, wall_time,
            acceptance_rate(self.accepted, self.production_steps, self.integrator.metropolis_adjusted),
            None if step_sizes is None else step_sizes.cpu().numpy(), meta,
            self.integrator_summary() if recorder.keep else {})
        result.compile_time = self.compile_time
        return result
