"""One walker of the OpenMM executor: a Context with its own compiled, seeded integrator."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .export import to_openmm_integrator
from .seeds import INTEGRATOR_STREAM, VELOCITY_STREAM, walker_seed


def is_nan_error(exc: Exception) -> bool:
    """True for the OpenMMException the CPU/GPU platforms raise on NaN coordinates."""
    text = str(exc).lower()
    return "nan" in text or "infinit" in text or "not finite" in text


class Walker:
    """A Context for global walker ``index``, seeded from ``(seed, index, epoch)``.

    Parameters
    ----------
    system : OpenMMSystem
    integrator : Integrator
        One of the schemes :func:`~.export.to_openmm_integrator` compiles.
    seed : int
        The run seed.
    index : int
        Global walker index.
    positions : numpy.ndarray, shape ``(n_particles, 3)``
        nm; constrained systems have their constraints applied.
    velocities : numpy.ndarray or None
        nm/ps, as a Context holds them (a checkpoint's); None draws Maxwell–Boltzmann
        velocities at the system's temperature (schemes with velocities only).
    epoch : int
        The step at which the seeds are drawn: 0 for a fresh run, the checkpoint step when
        resuming.
    step : int
        The Context's step counter.
    """

    def __init__(self, system, integrator, seed: int, index: int, positions: np.ndarray,
                 velocities: Optional[np.ndarray] = None, epoch: int = 0, step: int = 0):
        self.index = index
        self._spec = (system, integrator, seed, positions, velocities, epoch, step)
        self._integrator = None
        self._context = None

    @property
    def built(self) -> bool:
        return self._context is not None

    @property
    def integrator(self):
        """The walker's ``openmm.Integrator`` (the Context is built on first use)."""
        self._build()
        return self._integrator

    @property
    def context(self):
        """The walker's ``openmm.Context``, built on first use.

        Built lazily, just before the walker first steps: on the Reference platform creating
        a Context reseeds the process-wide generator, so building every Context up front
        would give all walkers' first draws the last-built seed.
        """
        self._build()
        return self._context

    def _build(self) -> None:
        if self._context is not None:
            return
        system, integrator, seed, positions, velocities, epoch, step = self._spec
        omm = to_openmm_integrator(integrator, system)
        omm.setRandomNumberSeed(walker_seed(seed, self.index, INTEGRATOR_STREAM, epoch))
        context = system.make_context(omm)
        context.setPositions(positions)
        context.setStepCount(step)
        if system.constrained:
            context.applyConstraints(omm.getConstraintTolerance())
        if integrator.metropolis_adjusted:
            # MALA caches U and F at the current point; they are for the old positions now.
            omm.setGlobalVariableByName("cache_valid", 0.0)
        if integrator.has_velocities:
            if velocities is None:
                # Applies the velocity constraints too.
                context.setVelocitiesToTemperature(
                    system.temperature, walker_seed(seed, self.index, VELOCITY_STREAM, epoch))
            else:
                context.setVelocities(velocities)
        self._integrator, self._context = omm, context
        self._spec = None

    def take_acceptance(self) -> float:
        """Accepted MALA proposals since the last call (the counters restart at 0)."""
        n = self.integrator.getGlobalVariableByName("n_accept")
        self.integrator.setGlobalVariableByName("n_accept", 0.0)
        self.integrator.setGlobalVariableByName("n_trials", 0.0)
        return n


__all__ = ["Walker", "is_nan_error"]
