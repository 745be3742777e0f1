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
    """Reads frames from a walker's Context: positions, potential and kinetic energy.

    BAOAB runs as ``LangevinMiddleIntegrator``, whose velocities lag the step end by half a
    kick; the reader reconstructs BAOAB's step-end velocities v + (h/2) F/m (projected onto
    the constraints with OpenMM's own solver) so both executors report the same kinetic
    energy (see :mod:`langevin_md.executors.openmm.export`).

    Two ways in. :meth:`__call__` reads one frame and returns both energies at once.
    :meth:`read` is the executor's hot path: per frame it only copies the state into slot
    ``slot`` of a chunk of :attr:`chunk` frames (and, with constraints, projects the velocities
    while the Context is at that frame); :meth:`kinetic` then turns a whole chunk into kinetic
    energies with a few numpy calls. Per frame this is several times cheaper than one numpy
    expression per frame, and gives the same numbers bit for bit (the same elementwise
    operations, each frame's sum over its own contiguous row).
    """

    #: Frames a chunk holds (the most :meth:`read` slots between two :meth:`kinetic` calls).
    chunk = 64

    def __init__(self, system, integrator):
        import openmm

        self.system = system
        self.has_velocities = integrator.has_velocities
        self.half_kick = 0.5 * integrator.timestep if type(integrator) is BAOAB else None
        self.want_vf = self.half_kick is not None
        n = system.event_shape[0]
        self.inv_mass = (1.0 / system.masses)[:, None]
        self.mass = system.masses[:, None]
        if self.want_vf:
            self.kick = self.half_kick * self.inv_mass  # (n, 1): h/2 / m, as the per-frame form groups it
        self.positions = np.empty((n, 3))
        self.velocities = np.empty((n, 3))
        self.forces = np.empty((n, 3))
        self.chunk_positions = np.empty((self.chunk, n, 3))
        self.chunk_velocities = np.empty((self.chunk, n, 3))
        self.chunk_forces = np.empty((self.chunk, n, 3))
        self.chunk_kinetic = np.empty(self.chunk)  # OpenMM's K, for schemes without the half kick
        self.fetch = state_fetcher()
        swig = getattr(openmm, "_openmm", None)
        # The public Context methods add a units check (setVelocities) or build a State with
        # units (getState); the SWIG functions behind them do the same work without.
        self._set_velocities = getattr(swig, "Context_setVelocities", None) or openmm.Context.setVelocities
        self._apply_velocity_constraints = (getattr(swig, "Context_applyVelocityConstraints", None)
                                            or openmm.Context.applyVelocityConstraints)
        self._constraint_tolerance = None

    def _tolerance(self, walker) -> float:
        """The constraint tolerance, asked of OpenMM once: every walker compiles the same scheme."""
        if self._constraint_tolerance is None:
            self._constraint_tolerance = walker.integrator.getConstraintTolerance()
        return self._constraint_tolerance

    def _project(self, walker, v_end: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
        """``v_end`` projected onto the constraints into ``out``; the Context keeps ``v``.

        Only the velocities are set and put back (bitwise): the dynamics is untouched.
        """
        context = walker.context
        self._set_velocities(context, v_end)
        self._apply_velocity_constraints(context, self._tolerance(walker))
        self.fetch_velocities(context, out)
        self._set_velocities(context, v)

    def fetch_velocities(self, context, out: np.ndarray) -> None:
        """The Context's velocities (nm/ps) into the float64 ``(n, 3)`` array ``out``."""
        import openmm

        swig = getattr(openmm, "_openmm", None)
        if swig is not None and hasattr(swig, "State__getVectorAsNumpy"):
            state = swig.Context_getState(context, openmm.State.Velocities, False, -1)
            swig.State__getVectorAsNumpy(state, openmm.State.Velocities, out)
        else:  # pragma: no cover - the public method, if OpenMM renames its SWIG functions
            out[...] = context.getState(getVelocities=True).getVelocities(asNumpy=True)._value

    def read(self, walker, slot: int, positions_out=None) -> float:
        """Copy walker's frame into chunk slot ``slot``; the potential energy (kJ/mol).

        Positions go to ``positions_out`` (a C-contiguous float64 ``(n, 3)`` array), or to
        :attr:`chunk_positions` ``[slot]`` when None. With BAOAB's half kick, the velocities
        and forces stay in the chunk for :meth:`kinetic`; with constraints the step-end
        velocities are projected here, while the Context is at this frame.
        """
        out = self.chunk_positions[slot] if positions_out is None else positions_out
        v, f = self.chunk_velocities[slot], self.chunk_forces[slot]
        energy, kinetic = self.fetch(walker.context, self.want_vf, out, v, f)
        if self.want_vf:
            if self.system.constrained:
                # v then holds the step-end velocities, projected unless they diverged.
                v_end = v + self.kick * f
                if np.isfinite(v_end).all():
                    self._project(walker, v_end, v, self.velocities)
                    v[...] = self.velocities
                else:
                    v[...] = v_end
        else:
            self.chunk_kinetic[slot] = kinetic if self.has_velocities else np.nan
        return energy

    def kinetic(self, count: int) -> np.ndarray:
        """Kinetic energies (kJ/mol, shape ``(count,)``) of chunk slots ``0 .. count-1``.

        Non-finite velocities give inf or nan (a diverged walker), without a warning.
        """
        if not self.want_vf:
            return self.chunk_kinetic[:count].copy()
        v, f = self.chunk_velocities[:count], self.chunk_forces[:count]
        with np.errstate(over="ignore", invalid="ignore"):
            if self.system.constrained:
                v_end = v  # projected in read()
            else:
                v_end = v + self.kick * f
            return 0.5 * (self.mass * v_end * v_end).reshape(count, -1).sum(axis=1)

    def __call__(self, walker, positions_out=None):
        """(potential energy, kinetic energy or nan), kJ/mol; positions (nm) into ``positions_out``.

        ``positions_out`` must be a C-contiguous float64 (n, 3) array, or None for the
        reader's own buffer (:attr:`positions`).
        """
        out = self.positions if positions_out is None else positions_out
        energy = self.read(walker, 0, out)
        return energy, float(self.kinetic(1)[0])

    def full_state(self, walker) -> dict:
        """Positions, velocities (as the Context holds them), forces and energy of one walker."""
        n = self.system.event_shape[0]
        out = {"positions": np.empty((n, 3)), "velocities": np.empty((n, 3)), "forces": np.empty((n, 3))}
        energy, _ = self.fetch(walker.context, True, out["positions"], out["velocities"], out["forces"])
        out["energy"] = energy
        return out


__all__ = ["state_fetcher", "FrameReader"]
