"""``backend="auto"``: which executor runs a given system, scheme, walker count and options.

The rule, in order (the first that applies decides, and its reason is kept):

1. **Only torch can run it.** A system that is not an OpenMM force field (analytic targets,
   learned priors, sums with priors), a :class:`~langevin_md.systems.TorchForceField` for
   which no equivalent :class:`~langevin_md.systems.openmm_system.OpenMMSystem` can be made
   exactly (:func:`openmm_equivalent`) or that was given a torch-only setting
   (``precision="mixed"``, explicit ``kernels``), a scheme the OpenMM executor lacks (replica
   exchange, SGLD, HMC, adaptive MALA, ...; :func:`~.openmm.check_supported` names it) or a
   torch-only option (``device``, ``threads``, ``compile=True``) all go to the torch executor.
2. **Measured, for runs of any length.** A cost model of the whole run, from timings probed
   once per process and reused by every later call:

   * OpenMM (:func:`probe_openmm`, once per system and scheme, whatever the walker count:
     one walker's Context built, seeded and stepped for about :data:`OPENMM_PROBE_SECONDS`, and
     a few frame reads): the executor steps one Context per walker after another,
     ``N × (t_context + steps × (t_step + t_frame / record_every))``;
   * torch (:func:`probe_torch`, once per system, scheme, walker count and dtype: a torch
     executor on all ``N`` walkers, eager, one warm-up step then :data:`PROBE_STEPS` timed):
     every walker at once, ``steps × t_torch(N)``. The probe is cut short after its first
     step when that already decides: the set-up and that step alone took longer than the
     whole OpenMM run would (OpenMM wins whatever the remaining steps cost), or ``steps``
     times it, an upper bound of the torch run, is within the OpenMM run's cost (torch wins).
     So a short run is not held up by probing; a cut probe is not kept, and the next call
     measures again.

   The cheaper run wins. The torch probe is eager, so where ``compile="auto"`` later
   compiles, torch is faster than the estimate: ties go to torch. No crossover is written
   down: a faster torch path or a slower OpenMM platform moves the choice by itself.

The choice never changes the physics: the OpenMM executor runs the same ``openmm.System``
(for a TorchForceField, the one it was compiled from) and the same scheme in law. It may
change which random numbers a seed gives (the executors draw their own), so a user who needs
one executor's bitwise chain names it: an explicit ``backend`` always wins.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import weakref
from typing import Optional, Sequence

log = logging.getLogger(__name__)

#: Steps the torch candidate is timed for (after one untimed step that warms caches).
PROBE_STEPS = 5
#: Seconds of stepping the OpenMM candidate is timed for (from 10 steps, doubling, at most
#: :data:`OPENMM_PROBE_MAX_STEPS`): one OpenMM step can be ~10 µs, so a few steps would
#: measure the per-call overhead only.
OPENMM_PROBE_SECONDS = 0.02
#: The most steps the OpenMM probe takes.
OPENMM_PROBE_MAX_STEPS = 4000
#: Frame reads the OpenMM probe times (each is a state fetch and, with BAOAB, an energy
#: evaluation OpenMM does not cache).
OPENMM_PROBE_FRAMES = 5

#: Probe timings per system (weakly held): ``("openmm", integrator repr)`` -> OpenMMTimings and
#: ``("torch", integrator repr, walkers, dtype)`` -> seconds per torch step. A process that calls
#: ``sample()`` again on the same system reuses them, so only the first call pays a probe and
#: repeated calls cannot flip on timing noise.
_PROBES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: The OpenMMSystem made for a TorchForceField (weakly held), so repeated runs reuse it and its
#: evaluation Context.
_EQUIVALENTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class OpenMMTimings:
    """What one OpenMM walker costs (seconds): set-up, one step, one recorded frame."""

    context: float
    step: float
    frame: float

    def run_cost(self, n_walkers: int, n_steps: int, record_every: int) -> float:
        """Seconds for the OpenMM executor to run ``n_walkers`` walkers ``n_steps`` steps."""
        return n_walkers * (self.context + n_steps * (self.step + self.frame / record_every))


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
    is built from that very System object, topology, positions and temperature, once per
    force field in a process (later calls return the same one).
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
    twin = _EQUIVALENTS.get(system)
    if twin is None or twin.openmm_system is not source:
        twin = OpenMMSystem(source, system.topology.to_openmm(), system.positions, system.temperature)
        _EQUIVALENTS[system] = twin
    return twin


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
    if isinstance(system, TorchForceField):
        # Settings of how torch evaluates the force field: asked for, so the run is torch's.
        settings = ([f"precision={system.precision!r}"] if system.precision != "double" else []) + \
                   ([f"kernels={system.kernels!r}"] if system.kernels != "auto" else [])
        if settings:
            return f"the force field was built with {', '.join(settings)}, a setting of the torch executor"
    return None


def _cache(system) -> dict:
    """The probe timings kept for ``system`` (a fresh dict when it cannot be weakly referenced)."""
    try:
        return _PROBES.setdefault(system, {})
    except TypeError:  # a system that cannot be weakly referenced: probe every time
        return {}


def choose_backend(system, integrator, n_walkers: int, n_steps: int,
                   torch_options: Sequence[str] = (), seed: int = 0, dtype=None,
                   record_every: int = 1) -> BackendChoice:
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
    record_every : int
        Steps per recorded frame: each OpenMM frame costs a state fetch (and an energy
        evaluation), which the cost model counts.

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
    n_walkers, n_steps, record_every = int(n_walkers), int(n_steps), max(1, int(record_every))
    timings = _cache(system)
    omm_key = ("openmm", repr(integrator))
    torch_key = ("torch", repr(integrator), n_walkers, str(dtype))
    # Which timings earlier calls left (a torch probe cut short is not kept).
    earlier = ("; timings probed earlier in this process" if omm_key in timings and torch_key in timings else
               "; OpenMM's timings probed earlier in this process" if omm_key in timings else "")
    if omm_key not in timings:
        try:
            timings[omm_key] = probe_openmm(equivalent, integrator, seed)
        except ValueError as exc:  # e.g. a scheme OpenMM cannot constrain: torch says its own piece
            return BackendChoice("torch", f"the OpenMM executor cannot run this ({exc})")
    omm = timings[omm_key]
    cost_openmm = omm.run_cost(n_walkers, n_steps, record_every)
    openmm_text = (f"OpenMM {omm.step * 1e6:.3g} µs per walker-step + {omm.frame * 1e6:.3g} µs per frame "
                   f"+ {omm.context * 1e3:.3g} ms per Context")
    if torch_key not in timings:
        t_torch, first = probe_torch(system, integrator, n_walkers, seed, dtype, budget=cost_openmm,
                                     n_steps=n_steps)
        if t_torch is None and first > cost_openmm:
            return BackendChoice("openmm", (
                f"OpenMM is faster here (probe: the torch executor's set-up and first step of {n_walkers} "
                f"walkers took {first:.3g} s, more than the whole OpenMM run of {n_steps} steps, "
                f"~{cost_openmm:.3g} s; {openmm_text}{earlier})"))
        if t_torch is None:
            return BackendChoice("torch", (
                f"torch is as fast or faster here (probe: the torch executor's set-up and first step of "
                f"{n_walkers} walkers took {first:.3g} s, so its {n_steps}-step run takes at most "
                f"~{n_steps * first:.3g} s against OpenMM's ~{cost_openmm:.3g} s; {openmm_text}{earlier})"))
        timings[torch_key] = t_torch
    t_torch = timings[torch_key]
    cost_torch = n_steps * t_torch
    numbers = (f"probe: torch {t_torch * 1e3:.3g} ms per step of {n_walkers} walkers (eager), {openmm_text}; "
               f"{n_steps} steps, a frame every {record_every}: torch ~{cost_torch:.3g} s, "
               f"OpenMM ~{cost_openmm:.3g} s{earlier}")
    if cost_openmm < cost_torch:
        return BackendChoice("openmm", f"OpenMM is faster here ({numbers})")
    return BackendChoice("torch", f"torch is as fast or faster here ({numbers})")


def probe_openmm(openmm_system, integrator, seed: int) -> OpenMMTimings:
    """Time one OpenMM walker: its Context's set-up, a step, a recorded frame.

    The walker (global index 0 of ``seed``) is thrown away. Its Context reseeds OpenMM's
    Reference generator when it first steps, as every walker of a run does when it first
    steps, so the probe does not change a later run's random numbers.
    """
    from .openmm.state import FrameReader
    from .openmm.walker import Walker
    from .start import start_positions

    x0 = start_positions(openmm_system, None, 1, None)[0].numpy().astype("float64")  # a run's start
    t0 = time.perf_counter()
    walker = Walker(openmm_system, integrator, seed, 0, x0)
    step = walker.integrator.step  # builds and seeds the Context
    step(1)
    t_context = time.perf_counter() - t0
    n, taken, elapsed = 10, 0, 0.0
    while elapsed < OPENMM_PROBE_SECONDS and taken < OPENMM_PROBE_MAX_STEPS:
        t0 = time.perf_counter()
        step(n)
        elapsed += time.perf_counter() - t0
        taken += n
        n = min(2 * n, OPENMM_PROBE_MAX_STEPS - taken)
    t_step = elapsed / taken
    reader = FrameReader(openmm_system, integrator)
    t0 = time.perf_counter()
    for slot in range(OPENMM_PROBE_FRAMES):
        reader.read(walker, slot)
    reader.kinetic(OPENMM_PROBE_FRAMES)
    t_frame = (time.perf_counter() - t0) / OPENMM_PROBE_FRAMES
    return OpenMMTimings(context=t_context, step=t_step, frame=t_frame)


def probe_torch(system, integrator, n_walkers: int, seed: int, dtype=None, budget: float = math.inf,
                n_steps: Optional[int] = None) -> tuple[Optional[float], float]:
    """Seconds per eager torch step of all ``n_walkers`` walkers; the walkers are thrown away.

    The probe stops after its first step when that already decides a run of ``n_steps``
    steps against ``budget`` seconds (the other executor's cost): when the set-up and first
    step took longer than ``budget``, or when ``n_steps`` times that (an upper bound of the
    torch run) is within it.

    Returns
    -------
    t_torch : float or None
        Seconds per step, or None when the probe stopped after its first step.
    t_first : float
        Seconds the set-up and first step took.
    """
    from .torch_executor import Sampler

    t0 = time.perf_counter()
    probe = Sampler(system, integrator, n_walkers=n_walkers, seed=seed, dtype=dtype, compile=False)
    probe.run(1, progress=False)  # warm-up: first-call allocations, the dtype's copy of the terms
    t_first = time.perf_counter() - t0
    if t_first > budget or (n_steps is not None and n_steps * t_first <= budget):
        return None, t_first
    t0 = time.perf_counter()
    probe.run(PROBE_STEPS, record_every=PROBE_STEPS, progress=False)
    return (time.perf_counter() - t0) / PROBE_STEPS, t_first


def probe_backends(torch_system, openmm_system, integrator, n_walkers: int, seed: int,
                   dtype=None) -> tuple[float, float, float]:
    """Both probes at once: ``(t_torch, t_context, t_openmm)`` in seconds (see the module docstring).

    Returns
    -------
    t_torch : float
        Seconds per eager torch step of all ``n_walkers`` walkers.
    t_context : float
        Seconds to build and seed one walker's OpenMM Context and take its first step.
    t_openmm : float
        Seconds per OpenMM step of one walker.
    """
    omm = probe_openmm(openmm_system, integrator, seed)
    t_torch, _ = probe_torch(torch_system, integrator, n_walkers, seed, dtype)
    return t_torch, omm.context, omm.step


__all__ = ["BackendChoice", "OpenMMTimings", "choose_backend", "openmm_equivalent", "probe_backends",
           "probe_openmm", "probe_torch", "torch_only_reason", "PROBE_STEPS", "OPENMM_PROBE_SECONDS",
           "OPENMM_PROBE_MAX_STEPS", "OPENMM_PROBE_FRAMES"]
