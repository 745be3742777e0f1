"""``backend="auto"``: which executor runs a given system, scheme, walker count and options.

The rule, in order (the first that applies decides, and its reason is kept):

1. **Only torch can run it.** A system that is not an OpenMM force field (analytic targets,
   learned priors, sums with priors), a :class:`~langevin_md.systems.TorchForceField` for
   which no equivalent :class:`~langevin_md.systems.openmm_system.OpenMMSystem` can be made
   exactly (:func:`openmm_equivalent`), a scheme the OpenMM executor lacks (replica exchange,
   SGLD, HMC, adaptive MALA, ...; :func:`~.openmm.check_supported` names it) or a torch-only
   option (``device``, ``threads``, ``compile=True``) all go to the torch executor.
2. **A short run.** Below :data:`PROBE_MIN_WALKER_STEPS` walker-steps a probe would cost a
   sizeable part of the run: torch, the batched default, without probing.
3. **Measured.** Otherwise both candidates are timed on a few steps (:func:`probe_backends`:
   a torch executor on all ``n_walkers``, eager; one OpenMM Context for one walker, whose
   set-up is timed apart) and the cost model picks the cheaper whole run: the torch executor
   steps every walker at once, ``steps × t_torch(N)``; the OpenMM executor steps one Context
   per walker after another, ``N × (t_context + steps × t_openmm)``. The torch probe is eager,
   so where ``compile="auto"`` later compiles, torch is faster than the estimate: ties go
   to torch.

The choice never changes the physics: the OpenMM executor runs the same ``openmm.System``
(for a TorchForceField, the one it was compiled from) and the same scheme in law.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from typing import Optional, Sequence

log = logging.getLogger(__name__)

#: Runs shorter than this (walkers × steps) go to torch without a probe.
PROBE_MIN_WALKER_STEPS = 10_000
#: Steps the torch candidate is timed for (after one untimed step that warms caches).
PROBE_STEPS = 5
#: Seconds the OpenMM candidate is timed for (at least 10 steps, at most 2000): one OpenMM
#: step can be ~10 µs, so a few steps would measure the executor's per-call overhead only.
OPENMM_PROBE_SECONDS = 0.1


#: Probe timings per system (weakly held), keyed by (integrator, walkers, dtype): a process that
#: calls ``sample()`` again on the same system and walker count reuses them, so only the first
#: call pays the probe (~0.1–0.3 s) and repeated calls cannot flip on timing noise.
_PROBES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The executor ``backend="auto"`` picked (``"torch"`` or ``"openmm"``) and why."""

    backend: str
    reason: str


def openmm_equivalent(system):
    """An OpenMMSystem computing exactly ``system``'s energies, or a string saying why none exists.

    An OpenMMSystem is returned as it is. A TorchForceField qualifies when it was compiled
    from an ``openmm.System`` (:meth:`~langevin_md.systems.TorchForceField.from_openmm` keeps it
    as ``source_openmm_system``) and has a topology and reference positions: the OpenMMSystem
    is built from that very System object, topology, positions and temperature.
    """
    from ..systems.openmm_system import OpenMMSystem
    from ..systems.torch_forcefield import TorchForceField

    if isinstance(system, OpenMMSystem):
        return system
    if not isinstance(system, TorchForceField):
        return (f"{type(system).__name__} is not an OpenMM force field; only the torch executor "
                "runs it")
    source = getattr(system, "source_openmm_system", None)
    if source is None:
        return ("this TorchForceField keeps no openmm.System (loaded from a file or built "
                "directly), so no exactly equivalent OpenMMSystem can be made")
    if system.topology is None or system.positions is None:
        return "this TorchForceField has no topology or reference positions for an OpenMMSystem"
    return OpenMMSystem(source, system.topology.to_openmm(), system.positions, system.temperature)


def torch_only_reason(system, integrator, torch_options: Sequence[str]) -> Optional[str]:
    """Why only the torch executor can run this (rule 1 of the module docstring), or None."""
    from ..systems.openmm_system import OpenMMSystem
    from ..systems.torch_forcefield import TorchForceField
    from .openmm import check_supported

    if not isinstance(system, (OpenMMSystem, TorchForceField)):
        return f"{type(system).__name__} is not an OpenMM force field; only the torch executor runs it"
    try:
        check_supported(integrator)
    except ValueError as exc:
        return f"the OpenMM executor cannot run this scheme ({exc})"
    if torch_options:
        return f"{', '.join(torch_options)} applies to the torch executor only"
    return None


def choose_backend(system, integrator, n_walkers: int, n_steps: int,
                   torch_options: Sequence[str] = (), seed: int = 0, dtype=None) -> BackendChoice:
    """Pick the executor for a run of ``n_steps`` steps (burn-in included) on ``n_walkers`` walkers.

    Parameters
    ----------
    system : System
    integrator : Integrator
    n_walkers, n_steps : int
    torch_options : sequence of str
        Options given that only the torch executor takes (e.g. ``"device='cuda'"``), as shown
        in the reason.
    seed : int
        Seed of the probe's walkers (the probe's steps are thrown away).
    dtype : 'float32' or 'float64', optional
        The run's dtype: the torch probe runs in it.

    Returns
    -------
    BackendChoice
    """
    why = torch_only_reason(system, integrator, torch_options)
    if why is not None:
        return BackendChoice("torch", why)
    equivalent = openmm_equivalent(system)
    if isinstance(equivalent, str):
        return BackendChoice("torch", equivalent)
    work = n_walkers * n_steps
    if work < PROBE_MIN_WALKER_STEPS:
        return BackendChoice("torch", f"a short run ({work} walker-steps < {PROBE_MIN_WALKER_STEPS}): "
                                      "the batched torch executor, unprobed")
    key = (repr(integrator), int(n_walkers), str(dtype))
    try:
        timings = _PROBES.setdefault(system, {})
    except TypeError:  # a system that cannot be weakly referenced: probe every time
        timings = {}
    cached = key in timings
    if not cached:
        timings[key] = probe_backends(system, equivalent, integrator, n_walkers, seed, dtype)
    t_torch, t_context, t_openmm = timings[key]
    cost_torch = n_steps * t_torch
    cost_openmm = n_walkers * (t_context + n_steps * t_openmm)
    numbers = (f"probe: torch {t_torch * 1e3:.3g} ms per step of {n_walkers} walkers (eager), OpenMM "
               f"{t_openmm * 1e3:.3g} ms per walker-step + {t_context * 1e3:.3g} ms per Context; "
               f"{n_steps} steps: torch ~{cost_torch:.3g} s, OpenMM ~{cost_openmm:.3g} s"
               + ("; timings probed earlier in this process" if cached else ""))
    if cost_openmm < cost_torch:
        return BackendChoice("openmm", f"OpenMM is faster here ({numbers})")
    return BackendChoice("torch", f"torch is as fast or faster here ({numbers})")


def probe_backends(torch_system, openmm_system, integrator, n_walkers: int, seed: int,
                   dtype=None) -> tuple[float, float, float]:
    """Time both candidates on a few steps; the walkers are thrown away.

    Returns
    -------
    t_torch : float
        Seconds per eager torch step of all ``n_walkers`` walkers.
    t_context : float
        Seconds to build and seed one walker's OpenMM Context and take its first step.
    t_openmm : float
        Seconds per OpenMM step of one walker.
    """
    from .openmm import OpenMMSampler
    from .torch_executor import Sampler

    probe = Sampler(torch_system, integrator, n_walkers=n_walkers, seed=seed, dtype=dtype, compile=False)
    probe.run(1, progress=False)  # warm-up: first-call allocations, the dtype's copy of the terms
    t0 = time.perf_counter()
    probe.run(PROBE_STEPS, record_every=PROBE_STEPS, progress=False)
    t_torch = (time.perf_counter() - t0) / PROBE_STEPS
    del probe
    walker = OpenMMSampler(openmm_system, integrator, n_walkers=1, seed=seed)
    t0 = time.perf_counter()
    walker.run(1, progress=False)  # builds the Context
    t_context = time.perf_counter() - t0
    t_openmm = float("nan")
    for n in (10, None):
        if n is None:  # the second run long enough to hide per-call overhead
            n = int(min(2000, max(10, OPENMM_PROBE_SECONDS / max(t_openmm, 1e-9))))
        t0 = time.perf_counter()
        walker.run(n, record_every=n, progress=False)
        t_openmm = (time.perf_counter() - t0) / n
    return t_torch, t_context, t_openmm


__all__ = ["BackendChoice", "choose_backend", "openmm_equivalent", "probe_backends", "torch_only_reason",
           "PROBE_MIN_WALKER_STEPS", "PROBE_STEPS",
           "OPENMM_PROBE_SECONDS"]
