"""Hamiltonian Monte Carlo with a leapfrog trajectory and a Metropolis test."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import torch

from .base import sum_event, thermal_energy, walker_view
from .metric import state_metric
from .metropolis import AdaptiveStepSize, metropolis_select


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

    **Preconditioned** (mass matrix M⁻¹; Neal 2011 §4.1; Girolami & Calderhead 2011, J. R.
    Stat. Soc. B 73, 123, constant metric). With a preconditioner M = L Lᵀ (symmetric positive
    definite on the flattened coordinates) the scheme works in reduced units: the system's
    masses are not used, and

    .. math::
        H(x, p) = U(x)/kT + \tfrac12 p^\top M p, \qquad p = L^{-\top}\xi \sim N(0, M^{-1}),

        p \leftarrow p + \tfrac{h}{2}F(x)/kT,\quad x \leftarrow x + h\,M p,\quad
        p \leftarrow p + \tfrac{h}{2}F(x)/kT,

    accepted with probability min(1, exp(−ΔH)). This is the physical Hamiltonian with mass
    matrix kT·M⁻¹ and momenta N(0, kT·M⁻¹) measured in units of sqrt(kT); at kT = 1 it is
    exactly "mass matrix M⁻¹, momenta ~ N(0, M⁻¹)" (BlackJAX's ``inverse_mass_matrix = M``).
    h is dimensionless when M has the units of a covariance, and M = Σ, the target's
    covariance, makes every direction of a Gaussian oscillate with period 2π.

    Without a preconditioner h is a time (ps for molecular systems) and one trajectory lasts
    L·h; with one, h is dimensionless.

    The leapfrog step is called ``timestep``, as BAOAB's is; ``step_size`` means ε (nm²) of
    the overdamped schemes (ULA, MALA) everywhere else.

    Parameters
    ----------
    timestep : float or openmm.unit.Quantity
        Leapfrog step h, the initial value when adapting: a time without a preconditioner
        (ps for molecular systems; a Quantity is converted, ``1*unit.femtosecond``),
        dimensionless with one.
    n_leapfrog : int
        L, leapfrog steps per proposal (a count; the trajectory length is L·h).
    target_accept : float, optional
        If set, h is tuned per walker by dual averaging during burn-in, then frozen.
    preconditioner : None, 'none', 'diagonal', 'dense', array or file name
        M, the inverse mass matrix in the reduced units above. None/'none': the system's
        masses, bitwise the unpreconditioned scheme. 'diagonal'/'dense': M estimated from the
        pooled walkers during burn-in (see :mod:`.metric`), restarting the step-size
        adaptation at each new M, then frozen; M = I until the first window closes. An array
        of shape ``(dim,)`` or ``(dim, dim)`` (``dim = prod(event_shape)``), or a
        ``.npy``/text file holding one: a fixed M.
    metric_window : int
        First adaptation window in burn-in steps; window k lasts ``metric_window · 2^k``.
        Only used with 'diagonal'/'dense'.
    step_size : float or openmm.unit.Quantity, optional
        Deprecated alias of ``timestep`` (keyword only): warns, then sets ``timestep``; the
        attribute is None afterwards.
    """

    timestep: float = 0.1
    n_leapfrog: int = 10
    target_accept: Optional[float] = None
    preconditioner: Union[None, str, tuple] = None
    metric_window: int = 50
    step_size: Optional[float] = field(default=None, kw_only=True, repr=False, compare=False)

    metropolis_adjusted = True
    needs_energy = True
    step_field = "timestep"
    #: The MD unit of h without a preconditioner (a config file may give "1 fs"). The
    #: deprecated ``step_size`` alias is not listed: a config gives it as a number in ps (the
    #: config layer reads a converted setting back under its own name, which the alias is not).
    physical_units = {"timestep": "picosecond"}

    def __post_init__(self):
        if self.step_size is not None:
            if self.timestep != HMC.timestep:
                raise ValueError(f"HMC got timestep={self.timestep!r} and step_size={self.step_size!r}; "
                                 "step_size is the deprecated name of timestep: give timestep only")
            warnings.warn("HMC(step_size=...) is deprecated: HMC's leapfrog step is called timestep "
                          "(ps), as BAOAB's is; use HMC(timestep=...)", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "timestep", self.step_size)
            object.__setattr__(self, "step_size", None)
        if isinstance(self.n_leapfrog, bool) or not isinstance(self.n_leapfrog, int) or self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive integer, got {self.n_leapfrog!r}")
        self._check_settings()

    def step(self, system, state, generator):
        if state_metric(state) is not None:
            return self._preconditioned_step(system, state, generator)
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


    def _preconditioned_step(self, system, state, generator):
        metric = state_metric(state)
        x0 = state.positions
        h = walker_view(state.step_size, x0.ndim)
        xi = generator.normal(system.event_shape, dtype=x0.dtype).to(x0.device)
        u = generator.uniform((), dtype=x0.dtype).to(x0.device)
        kT = thermal_energy(system, state, x0.ndim)
        p = metric.solve_sqrt_transpose(xi)
        kinetic0 = 0.5 * metric.quadratic(p)
        x, forces = x0, state.forces
        energy = state.energy
        for _ in range(self.n_leapfrog):
            p = p + (0.5 * h) * forces / kT
            x = x + h * metric.apply(p)
            energy, forces = system.energy_and_forces(x)
            p = p + (0.5 * h) * forces / kT
        kinetic = 0.5 * metric.quadratic(p)
        log_ratio = -(energy - state.energy) / thermal_energy(system, state, 1) - (kinetic - kinetic0)
        proposal = replace(state, positions=x, energy=energy, forces=forces)
        return metropolis_select(state, proposal, log_ratio, u)
