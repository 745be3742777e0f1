"""Fast reads of an OpenMM Context's state into preallocated numpy arrays, and frame reading.

:func:`state_fetcher` calls the SWIG functions behind ``Context.getState`` and
``State.getPositions`` directly, writing into float64 arrays without ``openmm.unit``
Quantities: per record on alanine dipeptide this is several times cheaper than the public
methods, which matters when ``record_every`` is small. It falls back to the public methods if
OpenMM renames them.
"""

from __future__ import annotations

import numpy as np

from ...integrators.underdamped import BAOAB


def state_fetcher():
    """``fetch(context, want_vf, positions_out, velocities_out, forces_out) -> (U, K)``.

    Positions (nm), and with ``want_vf`` velocities (nm/ps) and forces (kJ/mol/nm), are
    written into the given C-contiguous float64 ``(n_particles, 3)`` arrays; U and K in kJ/mol.
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


class FrameReader:
    """Reads one frame from a walker's Context: positions, potential and kinetic energy.

    BAOAB runs as ``LangevinMiddleIntegrator``, whose velocities lag the step end by half a
    kick; the reader reconstructs BAOAB's step-end velocities v + (h/2) F/m (projected onto
    the constraints with OpenMM's own solver) so both executors report the same kinetic
    energy (see :mod:`langevin_md.executors.openmm.export`).
    """

    def __init__(self, system, integrator):
        self.system = system
        self.has_velocities = integrator.has_velocities
        self.half_kick = 0.5 * integrator.timestep if type(integrator) is BAOAB else None
        n = system.event_shape[0]
        self.inv_mass = (1.0 / system.masses)[:, None]
        self.mass = system.masses[:, None]
        self.positions = np.empty((n, 3))
        self.velocities = np.empty((n, 3))
        self.forces = np.empty((n, 3))
        self.fetch = state_fetcher()

    def __call__(self, walker, positions_out=None):
        """(potential energy, kinetic energy or nan), kJ/mol; positions (nm) into ``positions_out``.

        ``positions_out`` must be a C-contiguous float64 (n, 3) array, or None for the
        reader's own buffer (:attr:`positions`).
        """
        want_vf = self.half_kick is not None
        out = self.positions if positions_out is None else positions_out
        energy, kinetic = self.fetch(walker.context, want_vf, out, self.velocities, self.forces)
        if want_vf:
            v = self.velocities
            v_end = v + self.half_kick * self.inv_mass * self.forces
            if self.system.constrained and np.all(np.isfinite(v_end)):
                # Project onto the constraints, then put the half-step velocities back so the
                # dynamics is untouched.
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

    def full_state(self, walker) -> dict:
        """Positions, velocities (as the Context holds them), forces and energy of one walker."""
        n = self.system.event_shape[0]
        out = {"positions": np.empty((n, 3)), "velocities": np.empty((n, 3)), "forces": np.empty((n, 3))}
        energy, _ = self.fetch(walker.context, True, out["positions"], out["velocities"], out["forces"])
        out["energy"] = energy
        return out


__all__ = ["state_fetcher", "FrameReader"]
