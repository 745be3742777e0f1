"""Underdamped Langevin dynamics by operator splitting: BAOAB and OBABO.

The operators (Leimkuhler & Matthews, "Rational construction of stochastic numerical methods
for molecular sampling", AMRX 2013):

* B(τ), kick:  v ← v + τ F(x)/m
* A(τ), drift: x ← x + τ v
* O(τ), exact Ornstein–Uhlenbeck: v ← c v + sqrt((1 − c²) kT/m) ξ with c = exp(−γτ)

Each is written once below and the schemes are their compositions, so the order in the code
is the order in the name.

Holonomic constraints (bonds to hydrogen, rigid water) follow the constrained splitting of
Leimkuhler & Matthews ("Efficient molecular dynamics using geodesic integration and
solvent–solute splitting", Proc. R. Soc. A 472, 20160138 (2016)) in the form OpenMM's
``LangevinMiddleIntegrator`` implements, with one position constraint per step:

* A: x̃ = x + τ v, then SHAKE x' = x̃ + M⁻¹G(x)ᵀλ with g(x') = 0, and v ← v + (x' − x̃)/τ;
* B and O: the velocity update followed by the mass-weighted projection P(x) onto the tangent
  space {v : G(x) v = 0} (RATTLE's velocity stage). In O this projects the noise, so the
  Ornstein–Uhlenbeck step samples the Gaussian velocity law on the tangent space.

Two facts let the schemes project once per step instead of after every B and O, with the
same map: P is linear and idempotent, P(P u + w) = P(u + w); and a constrained drift ignores
the normal part of v, since SHAKE's solution x' ∈ x̃ + M⁻¹G(x)ᵀℝᴷ is the same for any
x̃ + M⁻¹G(x)ᵀμ and the new velocity is (x' − x)/τ. So only the velocity operator that ends
the step projects (velocities at every step end satisfy G(x) v = 0); the ones before a
drift need not. For the same reason BAOAB's A(h/2) O A(h/2) is constrained once, over the
whole displacement from x (:func:`drift_ou_drift`): the positions are then exactly those of
``LangevinMiddleIntegrator`` (which SHAKEs once per step too), and SHAKE costs half as much
as with a SHAKE after each half drift. Bond lengths hold to the SHAKE tolerance
(:mod:`langevin_md.integrators.constraints`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Optional

import torch

from ..units import in_units
from .base import Integrator, StepInfo, UnderdampedState, evolve, non_negative, positive, thermal_energy
from .constraints import ConstraintSolver, constraint_solver


#: Per system: (key, mass tensor, 1/m, sqrt(kT/m)) of the last scalar-kT call of
#: :meth:`_Splitting.mass_factors`. Weak keys: a system's entry goes when the system does.
_CONSTANTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def kick(state: UnderdampedState, tau: float, inv_mass: torch.Tensor,
         project: Optional[ConstraintSolver] = None) -> UnderdampedState:
    """B(τ): v ← v + τ F/m, then v ← P(x) v when ``project`` is a constraint solver."""
    # τF/m + v in place of v + τF/m: IEEE addition commutes exactly, and the fresh product
    # takes the sum without another allocation.
    v = ((tau * inv_mass) * state.forces).add_(state.velocities)
    if project is not None:
        v = project.project_velocities(state.positions, v)
    return evolve(state, velocities=v)


def drift(state: UnderdampedState, tau: float,
          constraints: Optional[ConstraintSolver] = None) -> UnderdampedState:
    """A(τ): x ← x + τ v (the cached energy and forces become stale until re-evaluated).

    With ``constraints``, SHAKE puts x back on the manifold along the constraint directions
    at the old x, and the velocity takes the same correction, v ← v + (x' − x̃)/τ, so that it
    stays the displacement's rate, v = (x' − x)/τ. The result does not depend on the
    velocity's component normal to the manifold at x; its projection onto the new tangent
    space is left to the velocity operator that ends the step.
    """
    x_free = (tau * state.velocities).add_(state.positions)  # x + τv, bitwise (see kick)
    if constraints is None:
        return evolve(state, positions=x_free)
    x = constraints.shake(state.positions, x_free)
    return evolve(state, positions=x, velocities=state.velocities + (x - x_free) / tau)


def ornstein_uhlenbeck(state: UnderdampedState, c: float, thermal_velocity: torch.Tensor,
                       generator, project: Optional[ConstraintSolver] = None) -> UnderdampedState:
    """O: v ← c v + sqrt(1 − c²) sqrt(kT/m) ξ, exact for any c = exp(−γτ).

    With ``project``, v ← P(x) v afterwards: the noise is projected onto the tangent space
    (Leimkuhler & Matthews 2016), which keeps the O step exact for the constrained
    velocity law N(0, kT M⁻¹) restricted to {G(x) v = 0}.
    """
    v = state.velocities
    if c != 1.0:  # frictionless: no noise, and no random numbers drawn
        xi = generator.normal(v.shape[1:], dtype=v.dtype).to(v.device)
        v = ((math.sqrt(1.0 - c * c) * thermal_velocity) * xi).add_(c * v)  # c v + σξ, bitwise
    if project is not None:
        v = project.project_velocities(state.positions, v)
    return state if v is state.velocities else evolve(state, velocities=v)


def drift_ou_drift(state: UnderdampedState, h: float, c: float, thermal_velocity: torch.Tensor, generator,
                   constraints: ConstraintSolver) -> UnderdampedState:
    """A(h/2) O A(h/2) on a constrained system, with one SHAKE over the whole displacement.

    x̃ = x + (h/2) v + (h/2) v_O with v_O the O step's output (c v + sqrt(1 − c²) sqrt(kT/m) ξ,
    noise unprojected), then x' = SHAKE_x(x̃) and v ← v_O + (x' − x̃)/h: the update of OpenMM's
    ``LangevinMiddleIntegrator`` between its velocity constraint and its position
    constraint. The normal components of v and of the noise at x are removed by SHAKE (its
    solution does not depend on them); the step-end velocity projection removes them from v.
    """
    x0 = state.positions
    x_half = (0.5 * h * state.velocities).add_(x0)
    s = ornstein_uhlenbeck(state, c, thermal_velocity, generator)
    x_free = (0.5 * h * s.velocities).add_(x_half)
    x = constraints.shake(x0, x_free)
    return evolve(s, positions=x, velocities=(x - x_free).div_(h).add_(s.velocities))


def refresh_forces(system, state: UnderdampedState) -> UnderdampedState:
    energy, forces = system.energy_and_forces(state.positions)
    return evolve(state, energy=energy, forces=forces)


def maxwell_boltzmann(system, like: torch.Tensor, generator) -> torch.Tensor:
    """Velocities drawn from N(0, kT/m), shape ``like.shape``.

    For a constrained system, project the draw with the constraint solver's
    ``project_velocities``: the M-orthogonal projection of N(0, kT M⁻¹) is the
    Maxwell–Boltzmann law on the tangent space.
    """
    xi = generator.normal(system.event_shape, dtype=like.dtype).to(like.device)
    return xi * torch.sqrt(system.kT / system.dof_masses(like))


@dataclass(frozen=True)
class _Splitting(Integrator):
    timestep: float = 0.002
    friction: float = 1.0

    has_velocities = True
    supports_constraints = True
    #: The MD unit of each physical setting; a config file may give these as "2 fs" etc.
    physical_units = {"timestep": "picosecond", "friction": "/picosecond"}

    def __post_init__(self):
        # Quantities become plain floats in MD units here, so step() never sees one.
        object.__setattr__(self, "timestep", positive("timestep", in_units("timestep", self.timestep, "picosecond")))
        object.__setattr__(self, "friction",
                           non_negative("friction", in_units("friction", self.friction, "/picosecond")))

    def init(self, system, positions, generator):
        solver = constraint_solver(system, positions)
        if solver is not None:
            # start on the manifold (as OpenMM's Context does): structures from files hold
            # their bonds at the force field's equilibrium, not at the constraint lengths
            positions = solver.constrain_positions(positions)
        s = super().init(system, positions, generator)
        v = maxwell_boltzmann(system, positions, generator)
        if solver is not None:
            v = solver.project_velocities(positions, v)
        return UnderdampedState(s.positions, s.energy, s.forces, velocities=v)

    def mass_factors(self, system, state):
        """1/m and the thermal velocity sqrt(kT/m), per walker when the state carries kT.

        For a scalar kT both are computed once per mass tensor and kT (the same operations,
        so the same bits) instead of three small kernels every step.
        """
        x = state.positions
        m = system.dof_masses(x)
        if state.kT is not None or torch.compiler.is_compiling():  # a compiled graph folds them
            return 1.0 / m, torch.sqrt(thermal_energy(system, state, x.ndim) / m)
        key = (id(m), float(system.kT))
        held = _CONSTANTS.get(system)
        if held is None or held[0] != key or held[1] is not m:
            held = (key, m, 1.0 / m, torch.sqrt(system.kT / m))
            _CONSTANTS[system] = held
        return held[2], held[3]


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

    With holonomic constraints (``system.constrained``; bonds to hydrogen, rigid water) the
    displacement of A O A is constrained by one SHAKE and the step-end velocities are
    projected onto the tangent space (RATTLE), the constrained BAOAB of Leimkuhler & Matthews
    (Proc. R. Soc. A 472, 20160138 (2016)) as OpenMM's ``LangevinMiddleIntegrator`` runs it
    (see the module docstring): its positions are that integrator's on the same constrained
    System.

    Parameters
    ----------
    timestep : float or openmm.unit.Quantity
        h in ps (time units for analytic systems); a Quantity is converted (``2*unit.femtosecond``).
    friction : float or openmm.unit.Quantity
        γ in 1/ps (1/time for analytic systems); 0 gives velocity Verlet (NVE), or RATTLE
        with constraints. A Quantity is converted (``1/unit.picosecond``).
    """

    def step(self, system, state, generator):
        inv_m, v_th = self.mass_factors(system, state)
        h = self.timestep
        c = math.exp(-self.friction * h)
        con = constraint_solver(system, state.positions)
        s = kick(state, 0.5 * h, inv_m)
        if con is None:
            s = drift(s, 0.5 * h)
            s = ornstein_uhlenbeck(s, c, v_th, generator)
            s = drift(s, 0.5 * h)
        else:
            # B and O before the drift need no projection (SHAKE ignores normal velocity
            # components, see the module docstring), and A O A is constrained once
            s = drift_ou_drift(s, h, c, v_th, generator, con)
        s = refresh_forces(system, s)
        s = kick(s, 0.5 * h, inv_m, con)
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

    With holonomic constraints the drift is followed by SHAKE and the last O's result is
    projected onto the tangent space (RATTLE), as in :class:`BAOAB`.

    Parameters
    ----------
    timestep : float or openmm.unit.Quantity
        h in ps (time units for analytic systems); a Quantity is converted.
    friction : float or openmm.unit.Quantity
        γ in 1/ps (1/time for analytic systems); a Quantity is converted.
    """

    def step(self, system, state, generator):
        inv_m, v_th = self.mass_factors(system, state)
        h = self.timestep
        c = math.exp(-0.5 * self.friction * h)
        con = constraint_solver(system, state.positions)
        # with constraints, O and B before the drift need no projection (the drift's SHAKE
        # ignores normal velocity components, see the module docstring): the last O projects
        s = ornstein_uhlenbeck(state, c, v_th, generator)
        s = kick(s, 0.5 * h, inv_m)
        s = drift(s, h, con)
        s = refresh_forces(system, s)
        s = kick(s, 0.5 * h, inv_m)
        s = ornstein_uhlenbeck(s, c, v_th, generator, con)
        return s, StepInfo()
