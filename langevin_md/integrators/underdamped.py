"""Underdamped Langevin dynamics by operator splitting: BAOAB and OBABO.

The operators (Leimkuhler & Matthews, "Rational construction of stochastic numerical methods
for molecular sampling", AMRX 2013):

* B(τ), kick:  v ← v + τ F(x)/m
* A(τ), drift: x ← x + τ v
* O(τ), exact Ornstein–Uhlenbeck: v ← c v + sqrt((1 − c²) kT/m) ξ with c = exp(−γτ)

Each is written once below and the schemes are their compositions, so the order in the code
is the order in the name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .base import Integrator, StepInfo, UnderdampedState, non_negative, positive, thermal_energy


def kick(state: UnderdampedState, tau: float, inv_mass: torch.Tensor) -> UnderdampedState:
    """B(τ): v ← v + τ F/m."""
    return replace(state, velocities=state.velocities + (tau * inv_mass) * state.forces)


def drift(state: UnderdampedState, tau: float) -> UnderdampedState:
    """A(τ): x ← x + τ v (the cached energy and forces become stale until re-evaluated)."""
    return replace(state, positions=state.positions + tau * state.velocities)


def ornstein_uhlenbeck(state: UnderdampedState, c: float, thermal_velocity: torch.Tensor,
                       generator) -> UnderdampedState:
    """O: v ← c v + sqrt(1 − c²) sqrt(kT/m) ξ, exact for any c = exp(−γτ)."""
    v = state.velocities
    if c == 1.0:  # frictionless: no noise, and no random numbers drawn
        return state
    xi = generator.normal(v.shape[1:], dtype=v.dtype).to(v.device)
    return replace(state, velocities=c * v + (math.sqrt(1.0 - c * c) * thermal_velocity) * xi)


def refresh_forces(system, state: UnderdampedState) -> UnderdampedState:
    energy, forces = system.energy_and_forces(state.positions)
    return replace(state, energy=energy, forces=forces)


def maxwell_boltzmann(system, like: torch.Tensor, generator) -> torch.Tensor:
    """Velocities drawn from N(0, kT/m), shape ``like.shape``."""
    xi = generator.normal(system.event_shape, dtype=like.dtype).to(like.device)
    return xi * torch.sqrt(system.kT / system.dof_masses(like))


@dataclass(frozen=True)
class _Splitting(Integrator):
    timestep: float = 0.002
    friction: float = 1.0

    has_velocities = True

    def __post_init__(self):
        positive("timestep", self.timestep)
        non_negative("friction", self.friction)

    def init(self, system, positions, generator):
        s = super().init(system, positions, generator)
        return UnderdampedState(s.positions, s.energy, s.forces,
                                velocities=maxwell_boltzmann(system, positions, generator))

    def _constants(self, system, state):
        """1/m and the thermal velocity sqrt(kT/m), per walker when the state carries kT."""
        x = state.positions
        m = system.dof_masses(x)
        return 1.0 / m, torch.sqrt(thermal_energy(system, state, x.ndim) / m)


@dataclass(frozen=True)
class BAOAB(_Splitting):
    r"""BAOAB Langevin splitting (Leimkuhler & Matthews 2013, AMRX; J. Chem. Phys. 138, 174102).

    One step of size h is B(h/2) A(h/2) O(h) A(h/2) B(h/2):

    .. math::
        v &\leftarrow v + \tfrac{h}{2} F(x)/m, \qquad x \leftarrow x + \tfrac{h}{2} v,\\
        v &\leftarrow c\,v + \sqrt{(1-c^2)kT/m}\,\xi, \quad c = e^{-\gamma h},\\
        x &\leftarrow x + \tfrac{h}{2} v, \qquad v \leftarrow v + \tfrac{h}{2} F(x)/m.

    On a harmonic well the configurational law is exact, ⟨x²⟩ = kT/k, for every hω < 2; this
    is the same position sequence as OpenMM's ``LangevinMiddleIntegrator``. Velocities at the
    step end have ⟨v²⟩ = (kT/m)(1 − h²ω²/4).

    Parameters
    ----------
    timestep : float
        h in ps (time units for analytic systems).
    friction : float
        γ in 1/ps; 0 gives velocity Verlet (NVE).
    """

    def step(self, system, state, generator):
        inv_m, v_th = self._constants(system, state)
        h = self.timestep
        c = math.exp(-self.friction * h)
        s = kick(state, 0.5 * h, inv_m)
        s = drift(s, 0.5 * h)
        s = ornstein_uhlenbeck(s, c, v_th, generator)
        s = drift(s, 0.5 * h)
        s = refresh_forces(system, s)
        s = kick(s, 0.5 * h, inv_m)
        return s, StepInfo()


@dataclass(frozen=True)
class OBABO(_Splitting):
    r"""OBABO Langevin splitting (Bussi & Parrinello 2007, Phys. Rev. E 75, 056707).

    One step of size h is O(h/2) B(h/2) A(h) B(h/2) O(h/2), with c = exp(−γh/2) in each O:

    .. math::
        v &\leftarrow c\,v + \sqrt{(1-c^2)kT/m}\,\xi, \qquad v \leftarrow v + \tfrac{h}{2}F(x)/m,\\
        x &\leftarrow x + h v, \qquad v \leftarrow v + \tfrac{h}{2}F(x)/m, \qquad
        v \leftarrow c\,v + \sqrt{(1-c^2)kT/m}\,\xi'.

    Velocities are exact on a harmonic well, ⟨v²⟩ = kT/m, and positions are not:
    ⟨x²⟩ = (kT/k)/(1 − h²ω²/4). The different fingerprint from BAOAB is what the
    exact-law tests use to catch a mis-ordered splitting.

    Parameters
    ----------
    timestep : float
        h in ps.
    friction : float
        γ in 1/ps.
    """

    def step(self, system, state, generator):
        inv_m, v_th = self._constants(system, state)
        h = self.timestep
        c = math.exp(-0.5 * self.friction * h)
        s = ornstein_uhlenbeck(state, c, v_th, generator)
        s = kick(s, 0.5 * h, inv_m)
        s = drift(s, h)
        s = refresh_forces(system, s)
        s = kick(s, 0.5 * h, inv_m)
        s = ornstein_uhlenbeck(s, c, v_th, generator)
        return s, StepInfo()
