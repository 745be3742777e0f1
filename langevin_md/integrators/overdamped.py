"""Overdamped Langevin: the unadjusted Langevin algorithm and Brownian dynamics.

Both are the Euler–Maruyama discretisation of dX = ε∇log p(X) dt' + sqrt(2ε) dW with
∇log p = F/kT; they differ only in how the per-coordinate step ε is given. ULA also takes a
constant preconditioner M (:mod:`.metric`), fixed or adapted from the walkers during burn-in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch

from ..units import in_units
from .base import Integrator, State, StepInfo, evolve, positive, thermal_energy
from .metric import (ADAPTIVE_KINDS, Metric, PreconditionedState, accumulate_metric, check_preconditioner,
                     check_window, freeze_metric, initial_metric_fields, state_metric)


def overdamped_move(state: State, kT, eps, noise: torch.Tensor) -> torch.Tensor:
    """x + ε F/kT + sqrt(2ε) ξ, with ε and kT floats or tensors broadcastable to the positions."""
    scale = math.sqrt(2.0 * eps) if isinstance(eps, float) else torch.sqrt(2.0 * eps)
    # Same operations and rounding as x + (ε/kT)F + scale·ξ (addition commutes exactly), but
    # updating the fresh drift tensor in place saves two allocations per step. No
    # add(alpha=)/addcmul: those fuse a multiply-add and would change the last bit.
    step = (eps / kT) * state.forces
    return step.add_(state.positions).add_(scale * noise)


def preconditioned_move(state: State, metric: Metric, kT, eps, noise: torch.Tensor) -> torch.Tensor:
    """x + ε M F/kT + sqrt(2ε) L ξ with M = L Lᵀ; ε and kT floats or broadcastable tensors."""
    scale = math.sqrt(2.0 * eps) if isinstance(eps, float) else torch.sqrt(2.0 * eps)
    return state.positions + (eps / kT) * metric.apply(state.forces) + scale * metric.apply_sqrt(noise)


def step_size_in_units(integrator, name: str = "step_size") -> object:
    """The setting ``name`` (ε, or HMC's leapfrog ``timestep``) in the unit its scheme gives it.

    Without a preconditioner that is ``integrator.physical_units[name]`` (ε in nm² for ULA and
    MALA, the timestep in ps for HMC); with one, the step is dimensionless (M carries the
    units), so only a dimensionless Quantity is accepted. Call after the preconditioner is
    normalised.
    """
    value = getattr(integrator, name)
    if integrator.preconditioner is None:
        return in_units(name, value, integrator.physical_units[name])
    return in_units(name, value, "dimensionless",
                    note="with a preconditioner the step is dimensionless: M carries the units")


@dataclass(frozen=True)
class ULA(Integrator):
    r"""Unadjusted Langevin algorithm (Euler–Maruyama on overdamped Langevin dynamics).

    .. math::  x_{n+1} = x_n + \varepsilon \nabla\log p(x_n) + \sqrt{2\varepsilon}\,\xi_n,
               \qquad \nabla\log p = F/kT,\ \xi_n \sim N(0, I).

    The chain is biased at finite ε. On U = kx²/2 (σ² = kT/k) its stationary variance is
    exactly σ²/(1 − ε/(2σ²)), and it is stable iff 0 < ε/σ² < 2 (Roberts & Tweedie 1996,
    "Exponential convergence of Langevin distributions and their discrete approximations",
    Bernoulli 2(4)).

    **Preconditioned** (Roberts & Stramer 2002, Methodol. Comput. Appl. Probab. 4, 337;
    Girolami & Calderhead 2011, J. R. Stat. Soc. B 73, 123, constant metric): with a constant
    symmetric positive-definite M = L Lᵀ on the flattened coordinates,

    .. math::  x_{n+1} = x_n + \varepsilon M \nabla\log p(x_n) + \sqrt{2\varepsilon}\,L\xi_n,

    the Euler–Maruyama step of dX = M∇log p dt + sqrt(2M) dW, which leaves p invariant for any
    constant M. On N(0, Σ) it is the linear map x' = A x + sqrt(2ε) L ξ, A = I − εMΣ⁻¹, whose
    stationary covariance C solves the discrete Lyapunov equation C = A C Aᵀ + 2εM
    (:func:`langevin_md.laws.preconditioned_ula_stationary_covariance`): biased at finite ε,
    like the scalar case, and stable iff every eigenvalue of εMΣ⁻¹ lies in (0, 2). With
    M ≈ Σ every direction contracts alike, so one ε suits them all.

    Parameters
    ----------
    step_size : float or openmm.unit.Quantity
        ε, in length² (dimensionless for analytic systems; nm² for molecular ones) without a
        preconditioner; dimensionless when M has the units of a covariance. A Quantity is
        converted to nm² (``0.01*unit.nanometer**2``), or must be dimensionless with a
        preconditioner.
    preconditioner : None, 'none', 'diagonal', 'dense', array or file name
        M. None/'none': M = I, bitwise the unpreconditioned scheme. 'diagonal'/'dense': M
        estimated from the pooled walkers during burn-in (see :mod:`.metric`), then frozen;
        M = I until the first window closes. An array of shape ``(dim,)`` or ``(dim, dim)``
        (``dim = prod(event_shape)``), or a ``.npy``/text file holding one: a fixed M.
    metric_window : int
        First adaptation window in burn-in steps; window k lasts ``metric_window · 2^k``.
        Only used with 'diagonal'/'dense'.
    """

    step_size: float = 0.01
    preconditioner: Union[None, str, tuple] = None
    metric_window: int = 50

    #: The MD unit of each physical setting without a preconditioner (a config file may give
    #: it as "0.01 nm**2"); with one, ε is dimensionless.
    physical_units = {"step_size": "nanometer**2"}

    def __post_init__(self):
        object.__setattr__(self, "preconditioner", check_preconditioner(self.preconditioner))
        object.__setattr__(self, "step_size", positive("step_size", step_size_in_units(self)))
        check_window(self.metric_window)

    @property
    def adaptive(self) -> bool:
        return self.preconditioner in ADAPTIVE_KINDS

    def init(self, system, positions, generator):
        state = super().init(system, positions, generator)
        if self.preconditioner is None:
            return state
        return PreconditionedState(state.positions, state.energy, state.forces,
                                   **initial_metric_fields(self.preconditioner, state.positions))

    def step(self, system, state, generator):
        noise = generator.normal(system.event_shape, dtype=state.positions.dtype).to(state.positions.device)
        kT = thermal_energy(system, state, state.positions.ndim)
        metric = state_metric(state)
        if metric is None:
            x = overdamped_move(state, kT, self.step_size, noise)
        else:
            x = preconditioned_move(state, metric, kT, self.step_size, noise)
        energy, forces = system.energy_and_forces(x)
        return evolve(state, positions=x, energy=energy, forces=forces), StepInfo()

    def adapt(self, state, info):
        return accumulate_metric(state, self.metric_window)[0] if self.adaptive else state

    def end_adaptation(self, state):
        return freeze_metric(state)

    def summary(self, state):
        """The metric M, ``(dim,)`` or ``(dim, dim)``, when the scheme is preconditioned."""
        m = getattr(state, "metric", None)
        return {} if m is None else {"metric": m}


@dataclass(frozen=True)
class Brownian(Integrator):
    r"""Brownian dynamics: Euler–Maruyama with a physical timestep and friction.

    .. math::  x_{n+1} = x_n + \frac{h}{m\gamma} F(x_n) + \sqrt{\frac{2 kT h}{m\gamma}}\,\xi_n,

    i.e. ULA preconditioned per particle with ε_i = kT h/(m_i γ) = D_i h. For a free particle
    ⟨Δx²⟩ = 2 D t per coordinate exactly, D = kT/(mγ) (Ermak & McCammon 1978, J. Chem. Phys.
    69, 1352). This is the scheme of OpenMM's ``BrownianIntegrator``.

    Parameters
    ----------
    timestep : float or openmm.unit.Quantity
        h, in ps (time units for analytic systems); a Quantity is converted.
    friction : float or openmm.unit.Quantity
        γ, in 1/ps (1/time for analytic systems); a Quantity is converted.
    """

    timestep: float = 0.001
    friction: float = 1.0

    physical_units = {"timestep": "picosecond", "friction": "/picosecond"}

    def __post_init__(self):
        object.__setattr__(self, "timestep", positive("timestep", in_units("timestep", self.timestep, "picosecond")))
        object.__setattr__(self, "friction", positive("friction", in_units("friction", self.friction, "/picosecond")))

    def step(self, system, state, generator):
        noise = generator.normal(system.event_shape, dtype=state.positions.dtype).to(state.positions.device)
        kT = thermal_energy(system, state, state.positions.ndim)
        eps = kT * self.timestep / (self.friction * system.dof_masses(state.positions))
        x = overdamped_move(state, kT, eps, noise)
        energy, forces = system.energy_and_forces(x)
        return evolve(state, positions=x, energy=energy, forces=forces), StepInfo()
