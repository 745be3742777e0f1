"""The OpenMM executor: our schemes stepped inside OpenMM's platform, no Python per step.

:func:`sample_openmm` is what ``langevin_md.sample(..., backend="openmm")`` runs. Every walker
is its own ``openmm.Context`` (on the system's platform and properties) with its own compiled
integrator (:func:`~langevin_md.integrators.openmm_export.to_openmm_integrator`). Between
recordings a walker's integrator takes ``record_every`` steps in one ``step`` call; at a
record the state is fetched once (``getState``) and checked for finiteness. Walkers run one
after another, each from start to end, with one Context alive at a time.

Reproducibility: walker ``w``'s integrator seed and Maxwell–Boltzmann velocity seed are pure
functions of ``(seed, w)``, so on the Reference platform (and the CPU platform, up to
threading of force sums) the same seed gives the same chains, and walker ``w`` runs the same
chain whatever ``n_walkers`` is. That needs the walkers to run one at a time: the Reference
platform draws every Context's random numbers from one process-wide generator (measured:
stepping another Context in between changes a chain). For the CustomIntegrator schemes
(OBABO, ULA, MALA) a chain also depends on ``record_every``: fetching the energy makes OpenMM
evaluate the kinetic-energy expression, which draws from that generator too (numbers are
skipped, never reused, so the statistics are unaffected). The random numbers are OpenMM's,
not the torch executor's streams: the two executors agree in law, not sample by sample.

Forces of the System that act on velocities are applied as OpenMM applies them, where the
torch executor ignores them: a ``CMMotionRemover`` (added by ``ForceField.createSystem`` by
default) zeroes the centre-of-mass velocity at each step start. For a molecule without
external fields this changes neither the configurational law nor the internal kinetic
energy; it removes 3 degrees of freedom from the kinetic energy.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from .integrators.openmm_export import check_supported, scheme_description, to_openmm_integrator
from .integrators.underdamped import BAOAB
from .random import _GAMMA, _mix64_int
from .result import SampleResult
from .sampler import NonFiniteStateError, _positive_int

#: Salts that separate a walker's integrator stream from its initial-velocity stream.
_INTEGRATOR_STREAM = 0x1D8E4E27C47D124F
_VELOCITY_STREAM = 0x7A4F3C1B9E2D5A61


def walker_seed(seed: int, walker: int, stream: int) -> int:
    """A nonzero 31-bit OpenMM seed from ``(seed, walker, stream)`` (0 would mean "random")."""
    z = _mix64_int(_mix64_int(int(seed) * _GAMMA + stream) + int(walker) * _GAMMA)
    return (z & 0x7FFFFFFF) or 1


def _initial_positions(system, initial_positions, n_walkers: int) -> np.ndarray:
    shape = tuple(system.event_shape)
    if initial_positions is None:
        return np.broadcast_to(system.positions, (n_walkers,) + shape)
    if hasattr(initial_positions, "value_in_unit"):
        from openmm import unit

        initial_positions = initial_positions.value_in_unit(unit.nanometer)
    if hasattr(initial_positions, "detach"):  # torch tensor
        initial_positions = initial_positions.detach().cpu().numpy()
    x0 = np.asarray(initial_positions, dtype=np.float64)
    if x0.shape == shape:
        x0 = np.broadcast_to(x0, (n_walkers,) + shape)
    if x0.shape != (n_walkers,) + shape:
        raise ValueError(
            f"initial_positions have shape {x0.shape}; expected ({n_walkers}, "
            f"{', '.join(map(str, shape))}) for {n_walkers} walkers, or {shape} for one point "
            "shared by all walkers (nm)"
        )
    return x0


def _dtype(dtype):
    table = {None: np.float64, "float64": np.float64, "float32": np.float32}
    try:
        import torch

        table.update({torch.float64: np.float64, torch.float32: np.float32})
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def _is_nan_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "nan" in text or "infinit" in text or "not finite" in text


class _Walker:
    """One Context with its own compiled integrator, seeded for walker ``index``, at ``x0``."""

    def __init__(self, system, integrator, seed: int, index: int, x0: np.ndarray):
        self.index = index
        self.integrator = to_openmm_integrator(integrator, system)
        self.integrator.setRandomNumberSeed(walker_seed(seed, index, _INTEGRATOR_STREAM))
        self.context = system.make_context(self.integrator)
        self.context.setPositions(x0)
        if system.constrained:
            self.context.applyConstraints(self.integrator.getConstraintTolerance())
        if integrator.metropolis_adjusted:
            # MALA caches U and F at the current point; they are for the old positions now.
            self.integrator.setGlobalVariableByName("cache_valid", 0.0)
        if integrator.has_velocities:
            # Applies the velocity constraints too.
            self.context.setVelocitiesToTemperature(system.temperature,
                                                    walker_seed(seed, index, _VELOCITY_STREAM))


def _state_fetcher():
    """``fetch(context, want_vf, positions_out, velocities_out, forces_out) -> (U, K)``.

    Calls the SWIG functions behind ``Context.getState`` and ``State.getPositions`` directly,
    writing into preallocated float64 arrays (no ``openmm.unit`` Quantities): per record on
    alanine dipeptide this is several times cheaper than the public methods, which matters
    when ``record_every`` is small. Falls back to the public methods if OpenMM renames them.
    """
    import openmm

    swig = getattr(openmm, "_openmm", None)
    names = ("Context_getState", "State__getVectorAsNumpy", "State_getPotentialEnergy",
             "State_getKineticEnergy")
    base = openmm.State.Positions | openmm.State.Energy
    extra = openmm.State.Velocities | openmm.State.Forces
    if swig is not None and all(hasattr(swig, n) for n in names):
        get_state, get_vector = swig.Context_getState, swig.State__getVectorAsNumpy
        get_u, get_k = swig.State_getPotentialEnergy, swig.State_getKineticEnergy
        kinds = (openmm.State.Positions, openmm.State.Velocities, openmm.State.Forces)

        def fetch(context, want_vf, positions_out, velocities_out, forces_out):
            state = get_state(context, base | extra if want_vf else base, False, -1)
            get_vector(state, kinds[0], positions_out)
            if want_vf:
                get_vector(state, kinds[1], velocities_out)
                get_vector(state, kinds[2], forces_out)
            return get_u(state), get_k(state)

        return fetch

    def fetch_public(context, want_vf, positions_out, velocities_out, forces_out):  # pragma: no cover
        state = context.getState(getPositions=True, getEnergy=True, getVelocities=want_vf, getForces=want_vf)
        positions_out[...] = state.getPositions(asNumpy=True)._value
        if want_vf:
            velocities_out[...] = state.getVelocities(asNumpy=True)._value
            forces_out[...] = state.getForces(asNumpy=True)._value
        return state.getPotentialEnergy()._value, state.getKineticEnergy()._value

    return fetch_public


class _Recorder:
    """Fetches one frame from a Context: positions, potential and kinetic energy."""

    def __init__(self, system, integrator):
        self.system = system
        self.has_velocities = integrator.has_velocities
        # BAOAB runs as LangevinMiddleIntegrator, whose velocities lag the step end by half a
        # kick: reconstruct BAOAB's step-end velocities from the forces (module docstring of
        # openmm_export).
        self.half_kick = 0.5 * integrator.timestep if type(integrator) is BAOAB else None
        n = system.event_shape[0]
        self.inv_mass = (1.0 / system.masses)[:, None]
        self.mass = system.masses[:, None]
        self.positions = np.empty((n, 3))
        self.velocities = np.empty((n, 3))
        self.forces = np.empty((n, 3))
        self.fetch = _state_fetcher()

    def __call__(self, walker: _Walker, positions_out=None):
        """(potential energy, kinetic energy or nan), kJ/mol; positions (nm) into ``positions_out``.

        ``positions_out`` must be a C-contiguous float64 (n, 3) array, or None for the
        recorder's own buffer (:attr:`positions`).
        """
        want_vf = self.half_kick is not None
        out = self.positions if positions_out is None else positions_out
        energy, kinetic = self.fetch(walker.context, want_vf, out, self.velocities, self.forces)
        if want_vf:
            v = self.velocities
            v_end = v + self.half_kick * self.inv_mass * self.forces
            if self.system.constrained and np.all(np.isfinite(v_end)):
                # Project onto the constraints with OpenMM's own solver, then put the
                # half-step velocities back so the dynamics is untouched.
                context = walker.context
                context.setVelocities(v_end)
                context.applyVelocityConstraints(walker.integrator.getConstraintTolerance())
                v_end = context.getState(getVelocities=True).getVelocities(asNumpy=True)._value
                context.setVelocities(v)
            with np.errstate(over="ignore", invalid="ignore"):  # a diverged walker reports inf
                kinetic = 0.5 * float(np.sum(self.mass * v_end * v_end))
        elif not self.has_velocities:
            kinetic = np.nan
        return energy, kinetic


def sample_openmm(system, integrator, n_steps: int, n_walkers: int = 1, record_every: int = 1,
                  burn_in: int = 0, seed: int = 0, device=None, dtype=None,
                  initial_positions=None, progress: Optional[bool] = None) -> SampleResult:
    """Sample an :class:`~langevin_md.systems.openmm_system.OpenMMSystem` inside OpenMM.

    Same arguments and result as :func:`langevin_md.sample` (which calls this for
    ``backend="openmm"``).

    Parameters
    ----------
    system : OpenMMSystem
        Walkers run on its platform with its platform properties (``make_context``).
    integrator : BAOAB, OBABO, Brownian, ULA or MALA
        Compiled by :func:`~langevin_md.integrators.openmm_export.to_openmm_integrator`.
    n_steps, n_walkers, record_every, burn_in, seed
        As in :func:`langevin_md.sample`.
    device : None
        Must be None: the device is the system's OpenMM platform (choose it when building the
        system).
    dtype : 'float32' or 'float64', optional
        Type of the returned arrays (OpenMM computes in its platform's precision).
    initial_positions : array-like, optional
        ``(n_walkers, n_particles, 3)`` or ``(n_particles, 3)`` nm; default the system's
        reference structure. Constrained systems have constraints applied to them.
    progress : bool, optional
        Progress bar (default: only on a terminal).

    Returns
    -------
    SampleResult
        ``positions`` (n_frames, n_walkers, n_particles, 3) nm, ``energies`` (n_frames,
        n_walkers) kJ/mol, ``kinetic_energies`` for BAOAB/OBABO (at the step end, BAOAB's
        reconstructed as described in :mod:`~langevin_md.integrators.openmm_export`),
        ``acceptance_rate`` (n_walkers,) for MALA over production steps.
        ``metadata["backend"] == "openmm"``.

    Raises
    ------
    NonFiniteStateError
        When a recorded state is NaN/inf (or OpenMM stops on a NaN coordinate); ``result``
        keeps the frames recorded before it.
    """
    from tqdm.auto import tqdm

    from .systems.openmm_system import OpenMMSystem

    if not isinstance(system, OpenMMSystem):
        raise TypeError(
            "backend='openmm' needs an OpenMMSystem (an openmm.System with its topology), got "
            f"{type(system).__name__}; use backend='torch' for other systems"
        )
    check_supported(integrator)
    if device is not None:
        raise ValueError(
            f"device={device!r} applies to backend='torch' only; the OpenMM executor runs on the "
            f"system's OpenMM platform ({system.platform_name}): choose it when building the system"
        )
    out_dtype = _dtype(dtype)
    n_steps = _positive_int("n_steps", n_steps)
    n_walkers = _positive_int("n_walkers", n_walkers)
    record_every = _positive_int("record_every", record_every)
    burn_in = _positive_int("burn_in", burn_in, allow_zero=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    x0 = _initial_positions(system, initial_positions, n_walkers)
    if not np.all(np.isfinite(x0)):
        bad = np.nonzero(~np.isfinite(x0.reshape(n_walkers, -1)).all(-1))[0].tolist()
        raise NonFiniteStateError(
            f"the starting state is not finite for walkers {bad[:10]}: NaN/inf initial positions",
            None, bad, (0, 0))

    name = type(integrator).__name__
    n_frames = n_steps // record_every
    remainder = n_steps - n_frames * record_every
    n = system.event_shape[0]
    positions = np.empty((n_frames, n_walkers, n, 3), dtype=out_dtype)
    energies = np.empty((n_frames, n_walkers), dtype=out_dtype)
    kinetic = np.empty((n_frames, n_walkers), dtype=out_dtype) if integrator.has_velocities else None
    acceptance = np.zeros(n_walkers) if integrator.metropolis_adjusted else None
    direct = out_dtype == np.float64  # OpenMM writes straight into the result array
    frame_steps = burn_in + record_every * np.arange(1, n_frames + 1, dtype=np.int64)
    record = _Recorder(system, integrator)

    # (steps, frame index or None) chunks: burn-in, one chunk per recorded frame, the rest
    plan = ([(burn_in, None)] if burn_in else []) + [(record_every, f) for f in range(n_frames)]
    plan += [(remainder, None)] if remainder else []

    def run_walker(walker: _Walker):
        """Run one walker to the end: None, or (last good step, failing step) if it went non-finite."""
        import openmm

        step = 0
        j = walker.index
        for chunk, frame in plan:
            try:
                walker.integrator.step(chunk)
            except openmm.OpenMMException as exc:
                # The CPU and GPU platforms stop on NaN coordinates ("Particle coordinate is NaN").
                if not _is_nan_error(exc):
                    raise
                return step, step + chunk
            if step == 0 and burn_in and acceptance is not None:
                walker.integrator.setGlobalVariableByName("n_accept", 0.0)
                walker.integrator.setGlobalVariableByName("n_trials", 0.0)
            step += chunk
            bar.update(chunk)
            if frame is None:
                continue
            if direct:
                e, k = record(walker, positions[frame, j])
            else:
                e, k = record(walker)
                positions[frame, j] = record.positions
            energies[frame, j] = e
            if kinetic is not None:
                kinetic[frame, j] = k
            if not (np.isfinite(e) and np.isfinite(k if kinetic is not None else 0.0)
                    and np.all(np.isfinite(positions[frame, j]))):
                return step - chunk, step
        if plan[-1][1] is None and not np.isfinite(record(walker)[0]):  # unrecorded end: check it
            return step - plan[-1][0], step
        if acceptance is not None:
            acceptance[j] = (walker.integrator.getGlobalVariableByName("n_accept")
                             / max(1.0, walker.integrator.getGlobalVariableByName("n_trials")))
        return None

    def result(wall_time: float, frames: int) -> SampleResult:
        return SampleResult(
            positions=positions[:frames], energies=energies[:frames], steps=frame_steps[:frames],
            kT=float(system.kT), acceptance_rate=acceptance,
            step_sizes=np.full(n_walkers, float(integrator.step_size)) if acceptance is not None else None,
            kinetic_energies=None if kinetic is None else kinetic[:frames],
            walker_indices=np.arange(n_walkers, dtype=np.int64), wall_time=wall_time,
            n_steps_run=burn_in + n_steps,
            metadata={"system": repr(system), "integrator": repr(integrator), "seed": int(seed),
                      "device": f"openmm:{system.platform_name}", "dtype": np.dtype(out_dtype).name,
                      "backend": "openmm", "openmm_integrator": scheme_description(integrator)},
            system=system,
        )

    # Initial energies through the system's own Context: refuse a bad start before any run.
    import torch

    e0, _ = system.energy_and_forces(torch.from_numpy(np.array(x0, dtype=np.float64)))
    bad0 = np.nonzero(~np.isfinite(e0.numpy()))[0].tolist()
    if bad0:
        shown = ", ".join(map(str, bad0[:10])) + (" ..." if len(bad0) > 10 else "")
        raise NonFiniteStateError(
            f"the starting state is not finite for walkers [{shown}] ({len(bad0)} of {n_walkers}): "
            "the initial positions have a non-finite energy (overlapping atoms, a point outside "
            "the potential's domain, or NaN coordinates)", None, bad0, (0, 0))

    # Walkers run one after another, each to the end. OpenMM's Reference platform draws every
    # Context's random numbers from one process-wide generator, seeded when an integrator
    # first steps, so interleaving walkers would make a walker's chain depend on the others;
    # one at a time it depends on (seed, walker) only. One Context alive at a time also keeps
    # memory flat in the number of walkers.
    failures = {}
    disable = None if progress is None else not progress
    bar = tqdm(total=n_walkers * (burn_in + n_steps), disable=disable, unit="step",
               desc=f"{name} (openmm)", leave=False)
    wall = 0.0  # stepping and recording only, as the torch executor's wall_time
    try:
        for w in range(n_walkers):
            walker = _Walker(system, integrator, int(seed), w, x0[w])
            t0 = time.perf_counter()
            stopped = run_walker(walker)
            wall += time.perf_counter() - t0
            if stopped is not None:
                failures[w] = stopped
            del walker  # frees the Context before the next one is built
    finally:
        bar.close()
    if failures:
        bad = sorted(failures)
        first = min(failures.values(), key=lambda s: s[1])
        good_frames = int(np.searchsorted(frame_steps, first[1], side="left"))
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        steps = first
        when = f"at step {steps[1]}" if steps[0] + 1 >= steps[1] else f"between steps {steps[0] + 1} and {steps[1]}"
        msg = (f"non-finite state {when} for walkers [{shown}] ({len(bad)} of {n_walkers}). "
               f"Likely causes: a step size too large for the stiffest mode of the system (try a "
               f"smaller step for {name}), a start far from equilibrium with huge forces "
               "(minimise first), or an energy that is not finite everywhere. Frames recorded "
               "before it are in the exception's .result.")
        raise NonFiniteStateError(msg, result(wall, good_frames), bad, steps)
    return result(wall, n_frames)
