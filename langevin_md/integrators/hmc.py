"""Hamiltonian Monte Carlo with a leapfrog trajectory and a Metropolis test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from .base import positive, sum_event, thermal_energy, walker_view
from .metropolis import AdaptiveStepSize, check_target_accept, metropolis_select


@dataclass(frozen=True)
class HMC(AdaptiveStepSize):
    r"""Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011, "MCMC using Hamiltonian
    dynamics", Handbook of MCMC).

    Momenta p ~ N(0, m kT) are drawn fresh, L leapfrog steps of size h integrate
    H(x, p) = U(x) + Σ p²/(2m), and the end point is accepted with probability
    min(1, exp(−ΔH/kT)). Each leapfrog step is

    .. math:: p \leftarrow p + \tfrac{h}{2}F(x),\quad x \leftarrow x + h\,p/m,\quad
              p \leftarrow p + \tfrac{h}{2}F(x).

    Exact for any h; costs L force evaluations per step.

    Parameters
    ----------
    step_size : float
        Leapfrog step h (time units; ps for molecular systems). Initial value when adapting.
    n_leapfrog : int
        L, leapfrog steps per proposal.
    target_accept : float, optional
        If set, h is tuned per walker by dual averaging during burn-in, then frozen.
    """

    step_size: float = 0.1
    n_leapfrog: int = 10
    target_accept: Optional[float] = None

    metropolis_adjusted = True
    needs_energy = True

    def __post_init__(self):
        positive("step_size", self.step_size)
        if isinstance(self.n_leapfrog, bool) or not isinstance(self.n_leapfrog, int) or self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive integer, got {self.n_leapfrog!r}")
        check_target_accept(self.target_accept)

    def step(self, system, state, generator):
        x0 = state.positions
        m = system.dof_masses(x0)
        h = walker_view(state.step_size, x0.ndim)
        xi = generator.normal(system.event_shape, dtype=x0.dtype).to(x0.device)
        u = generator.uniform((), dtype=x0.dtype).to(x0.device)
        p = xi * torch.sqrt(thermal_energy(system, state, x0.ndim) * m)
        kinetic0 = 0.5 * sum_event(p * p / m)
        x, forces = x0, state.forces
        energy = state.energy
        for _ in range(self.n_leapfrog):
            p = p + (0.5 * h) * forces
            x = x + h * p / m
            energy, forces = system.energy_and_forces(x)
            p = p + (0.5 * h) * forces
        kinetic = 0.5 * sum_event(p * p / m)
        log_ratio = -((energy + kinetic) - (state.energy + kinetic0)) / thermal_energy(system, state, 1)
        proposal = replace(state, positions=x, energy=energy, forces=forces)
        return metropolis_select(state, proposal, log_ratio, u)

