"""Overdamped Langevin: the unadjusted Langevin algorithm and Brownian dynamics.

Both are the Euler–Maruyama discretisation of dX = ε∇log p(X) dt' + sqrt(2ε) dW with
∇log p = F/kT; they differ only in how the per-coordinate step ε is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .base import Integrator, State, StepInfo, positive, thermal_energy


def overdamped_move(state: State, kT, eps, noise: torch.Tensor) -> torch.Tensor:
    """x + ε F/kT + sqrt(2ε) ξ, with ε and kT floats or tensors broadcastable to the positions."""
    scale = math.sqrt(2.0 * eps) if isinstance(eps, float) else torch.sqrt(2.0 * eps)
    return state.positions + (eps / kT) * state.forces + scale * noise


@dataclass(frozen=True)
class ULA(Integrator):
    r"""Unadjusted Langevin algorithm (Euler–Maruyama on overdamped Langevin dynamics).

    .. math::  x_{n+1} = x_n + \varepsilon \nabla\log p(x_n) + \sqrt{2\varepsilon}\,\xi_n,
               \qquad \nabla\log p = F/kT,\ \xi_n \sim N(0, I).

    The chain is biased at finite ε. On U = kx²/2 (σ² = kT/k) its stationary variance is
    exactly σ²/(1 − ε/(2σ²)), and it is stable iff 0 < ε/σ² < 2 (Roberts & Tweedie 1996,
    "Exponential convergence of Langevin distributions and their discrete approximations",
    Bernoulli 2(4)).

    Parameters
    ----------
    step_size : float
        ε, in length² (dimensionless for analytic systems; nm² for molecular ones).
    """

    step_size: float = 0.01

    def __post_init__(self):
        positive("step_size", self.step_size)

    def step(self, system, state, generator):
        noise = generator.normal(system.event_shape, dtype=state.positions.dtype).to(state.positions.device)
        kT = thermal_energy(system, state, state.positions.ndim)
        x = overdamped_move(state, kT, self.step_size, noise)
        energy, forces = system.energy_and_forces(x)
        return replace(state, positions=x, energy=energy, forces=forces), StepInfo()


@dataclass(frozen=True)
class Brownian(Integrator):
    r"""Brownian dynamics: Euler–Maruyama with a physical timestep and friction.

    .. math::  x_{n+1} = x_n + \frac{h}{m\gamma} F(x_n) + \sqrt{\frac{2 kT h}{m\gamma}}\,\xi_n,

    i.e. ULA preconditioned per particle with ε_i = kT h/(m_i γ) = D_i h. For a free particle
    ⟨Δx²⟩ = 2 D t per coordinate exactly, D = kT/(mγ) (Ermak & McCammon 1978, J. Chem. Phys.
    69, 1352). This is the scheme of OpenMM's ``BrownianIntegrator``.

    Parameters
    ----------
    timestep : float
        h, in ps (time units for analytic systems).
    friction : float
        γ, in 1/ps.
    """

    timestep: float = 0.001
    friction: float = 1.0

    def __post_init__(self):
        positive("timestep", self.timestep)
        positive("friction", self.friction)

    def step(self, system, state, generator):
        noise = generator.normal(system.event_shape, dtype=state.positions.dtype).to(state.positions.device)
        kT = thermal_energy(system, state, state.positions.ndim)
        eps = kT * self.timestep / (self.friction * system.dof_masses(state.positions))
        x = overdamped_move(state, kT, eps, noise)
        energy, forces = system.energy_and_forces(x)
        return replace(state, positions=x, energy=energy, forces=forces), StepInfo()
