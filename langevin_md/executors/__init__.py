"""Executors: what steps an integrator on walkers, and the :func:`sample` facade over them.

=========  ============================================  ==========================================
backend    executor                                      runs
=========  ============================================  ==========================================
torch      :class:`~.torch_executor.Sampler`             any system and integrator, batched walkers
                                                         on a torch device
openmm     :class:`~.openmm.OpenMMSampler`               OpenMM systems with BAOAB, OBABO,
                                                         Brownian, ULA, MALA; one Context per
                                                         walker on the system's platform;
                                                         enforces constraints
=========  ============================================  ==========================================

Both take the same constructor arguments (system, integrator, n_walkers, seed, device, dtype,
initial_positions, walker_indices, first_walker) and inherit one stepping loop
(:class:`~.base.Executor`: ``run``, ``run_to``, reporters asked when due, frame sinks); each
adds how it advances the walkers and ``state_dict``/``load_state_dict``, so
configs, run folders, resume and Dask shards work with either. The OpenMM executor is
imported only when it is used.
"""

from __future__ import annotations

import importlib
import logging
import math
from typing import Optional, Union

import numpy as np

from .. import checks
from ..memory import check_kept_frames
from ..result import SampleResult
from .reporting import FrameSink, Reporter
from .torch_executor import Sampler

log = logging.getLogger(__name__)

#: Backend name -> (module, executor class); modules are imported on first use.
BACKENDS = {
    "torch": ("langevin_md.executors.torch_executor", "Sampler"),
    "openmm": ("langevin_md.executors.openmm", "OpenMMSampler"),
}


#: What ``backend=`` accepts: an executor of :data:`BACKENDS`, or "auto" (:mod:`.backend_choice`).
BACKEND_CHOICES = ("auto",) + tuple(BACKENDS)


def executor_class(backend: str):
    """The executor class of ``backend`` (one of :data:`BACKENDS`)."""
    checks.choice("backend", backend, BACKENDS)
    module, name = BACKENDS[backend]
    return getattr(importlib.import_module(module), name)


def sample(system, integrator, n_steps: int, n_walkers: int = 1, record_every: int = 1,
           burn_in: int = 0, seed: int = 0, device=None, dtype=None, initial_positions=None,
           progress: Optional[bool] = None, backend: str = "auto", compile: Union[bool, str] = "auto",
           threads: Optional[int] = None, record_forces: bool = False) -> SampleResult:
    """Sample ``system`` with ``integrator`` on ``n_walkers`` independent walkers.

    Parameters
    ----------
    system : System
    integrator : Integrator
    n_steps : int
        Production steps per walker (after ``burn_in``).
    n_walkers : int
    record_every : int
        Record a frame every this many production steps. Every frame is kept in memory
        (``n_steps // record_every`` frames of positions and energies): before the run a
        RuntimeWarning says how much when that exceeds 1 GiB, and a run whose frames would
        not fit in the available memory is refused (:func:`langevin_md.memory.check_kept_frames`).
        The default of 1 suits short runs; for long ones pass ``record_every`` (about
        ``n_steps // 1000``), or run from a config file, which streams frames to disk.
    burn_in : int
        Steps discarded first; adaptive step sizes are tuned here and frozen after.
    seed : int
        The same seed gives the same result: bitwise for the torch executor and for the
        OpenMM executor on the Reference platform; on OpenMM's other platforms (CPU, OpenCL,
        CUDA) only in law, because their multithreaded or GPU force sums may add terms in a
        different order from run to run.
    device : str or torch.device, optional
        Torch executor only (the OpenMM executor runs on the system's platform).
    dtype : 'float32' or 'float64', optional
    initial_positions : array-like or "exact", optional
        ``(n_walkers, *event_shape)`` or ``event_shape``. By default the system's documented
        start, which never encodes the answer; ``"exact"`` starts from exact draws of the
        target (Harmonic, GaussianMixture at kT = 1, DoubleWell, UniformBox), for tests of
        stationary laws: such a run reproduces the target even when its sampler is stuck.
    progress : bool, optional
        Progress bar (default: only on a terminal).
    backend : {'auto', 'torch', 'openmm'}
        Which executor runs (see :data:`BACKENDS` and the module docstring). ``"auto"``
        (default) picks the faster correct one for this system, scheme, walker count and
        options (:func:`~.backend_choice.choose_backend`: torch for anything only it runs,
        else the cheaper whole run by a cost model from short probes of each, made once per
        process and reused); an explicit choice always wins. ``metadata["backend"]`` and ``metadata["backend_reason"]``
        of the result say which ran and why, and the choice is logged.
    compile : True, False or "auto"
        Torch executor only: fuse steps with ``torch.compile``. ``"auto"`` (default)
        compiles runs large enough to repay the compile time when a compiler is available
        (see :class:`Sampler`).
    threads : int, optional
        Torch executor only: torch intra-op threads during the run (restored afterwards);
        by default one for small problems and torch's setting for large ones.
    record_forces : bool
        Also keep every frame's forces F(x) (float32) as ``result.fields["forces"]``.

    Returns
    -------
    SampleResult
        ``positions`` (n_frames, n_walkers, *event_shape), ``energies`` (n_frames, n_walkers),
        ``acceptance_rate`` (n_walkers,) for Metropolis-adjusted schemes, ``compile_time``
        (seconds), ``fields`` (the integrator's recorded fields; ``U_ff`` and ``U_prior`` for a
        :class:`~langevin_md.systems.ForceFieldWithPrior`; ``forces`` with ``record_forces``).

    Raises
    ------
    NonFiniteStateError
        When a walker's state becomes NaN/inf; its ``result`` keeps the frames before it.
    MemoryError
        Before the run, when the kept frames would not fit in memory (naming their size).
    """
    # Checked before "auto" adds them up for its cost model (a bare TypeError otherwise).
    n_steps = checks.positive_int("n_steps", n_steps)
    burn_in = checks.non_negative_int("burn_in", burn_in)
    backend, reason, system = _resolve_backend(backend, system, integrator, n_walkers, burn_in + n_steps,
                                               seed, device, dtype, compile, threads,
                                               checks.positive_int("record_every", record_every))
    cls = executor_class(backend)
    if backend == "torch":
        sampler = cls(system, integrator, n_walkers=n_walkers, seed=seed, device=device, dtype=dtype,
                      initial_positions=initial_positions, compile=compile, threads=threads)
    else:
        if compile is True:
            raise ValueError(f"compile=True applies to backend='torch' only; the {backend} executor "
                             "already runs every step inside its own engine")
        if compile is not False and compile != "auto":
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        if threads is not None:
            raise ValueError(f"threads={threads!r} applies to backend='torch' only; the {backend} "
                             "executor's engine chooses its own threads")
        sampler = cls(system, integrator, n_walkers=n_walkers, seed=seed, device=device, dtype=dtype,
                      initial_positions=initial_positions)
    # The frames are kept in memory: say what they will take before the run, not after.
    check_kept_frames(checks.non_negative_int("n_steps", n_steps), checks.positive_int("record_every", record_every),
                      sampler.n_walkers,
                      math.prod(system.event_shape), np.dtype(sampler.numpy_dtype).itemsize)
    result = sampler.run(n_steps, record_every=record_every, burn_in=burn_in, progress=progress,
                         record_forces=record_forces)
    result.metadata["backend_reason"] = reason
    from .health import warn_if_stuck

    warn_if_stuck(result)
    return result


def _resolve_backend(backend: str, system, integrator, n_walkers: int, n_steps: int, seed: int, device,
                     dtype, compile, threads, record_every: int = 1):
    """(backend, reason, system to run) for :func:`sample`; "auto" asks :func:`choose_backend`."""
    checks.choice("backend", backend, BACKEND_CHOICES)
    from .backend_choice import choose_backend, openmm_equivalent

    if backend == "openmm":
        # A torch force field compiled from an openmm.System runs as that System; anything
        # else goes as given (the OpenMM executor names what it needs).
        equivalent = openmm_equivalent(system)
        return backend, f"backend={backend!r} given", system if isinstance(equivalent, str) else equivalent
    if backend != "auto":
        return backend, f"backend={backend!r} given", system

    torch_options = [f"{name}={value!r}" for name, value in (("device", device), ("threads", threads))
                     if value is not None] + (["compile=True"] if compile is True else [])
    choice = choose_backend(system, integrator, checks.positive_int("n_walkers", n_walkers), n_steps,
                            torch_options, seed, dtype, record_every)
    log.info("backend='auto' chose %s: %s", choice.backend, choice.reason)
    if choice.backend == "openmm":
        system = openmm_equivalent(system)
    return choice.backend, choice.reason, system


__all__ = ["sample", "BACKEND_CHOICES", "Sampler", "Reporter", "FrameSink", "BACKENDS", "executor_class"]
