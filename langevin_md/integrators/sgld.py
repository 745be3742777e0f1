"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011) for posteriors over large data.

The stochastic gradient comes from the system: a
:class:`~langevin_md.systems.torch_models.MinibatchSystem` (e.g.
:class:`~langevin_md.systems.torch_models.BayesianPosterior`) provides
``stochastic_energy_and_forces(x, generator)``, drawing each walker's minibatch from the
walker's own random stream, so runs are reproducible and walkers independent. Any other
system is used with its exact forces (SGLD is then ULA with a step-size schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..units import in_units
from .base import Integrator, State, StepInfo, non_negative, positive, thermal_energy


def stochastic_energy_and_forces(system, x, generator):
    """Minibatch energy and forces when the system offers them, else the exact ones."""
    fn = getattr(system, "stochastic_energy_and_forces", None)
    if fn is None:
        return system.energy_and_forces(x)
    return fn(x, generator)


@dataclass(frozen=True)
class SGLDState(State):
    """A state plus the step count t of the step-size schedule.

    ``energy``/``forces`` are the minibatch estimates at ``positions``.
    """

    count: int = 0


@dataclass(frozen=True)
class SGLD(Integrator):
    r"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011, "Bayesian learning via
    stochastic gradient Langevin dynamics", ICML).

    .. math::  x_{t+1} = x_t + \varepsilon_t\,\hat F(x_t)/kT + \sqrt{2\varepsilon_t}\,\xi_t,
               \qquad \varepsilon_t = \varepsilon_0\,(1 + t/b)^{-\gamma},

    where F̂ is an unbiased minibatch estimate of the force (for a posterior,
    F̂/kT = ∇log p(θ) + (N/n) Σ_{i∈batch} ∇log p(x_i|θ)). This is the package's ULA
    convention; Welling & Teh write the step as ε_WT/2 with noise variance ε_WT, i.e.
    ε_WT = 2ε. Their schedule a(b + t)^{−γ} is ε₀ = a b^{−γ}; γ = 0 gives a constant step
    (the default), and Robbins–Monro conditions hold for γ ∈ (0.5, 1].

    Exact law used by the tests: on U = kx²/2 (σ² = kT/k) with gradient noise of variance
    s² in ∇log p and constant ε, the stationary variance is σ²(1 + εs²/2)/(1 − ε/(2σ²)).

    Parameters
    ----------
    step_size : float or openmm.unit.Quantity
        ε₀, the step at t = 0, in length² (nm² for molecular systems; a Quantity is converted).
    decay_time : float
        b, in steps.
    decay_power : float
        γ ≥ 0 (dimensionless).
    """

    step_size: float = 1e-3
    decay_time: float = 1.0
    decay_power: float = 0.0

    physical_units = {"step_size": "nanometer**2"}

    def __post_init__(self):
        object.__setattr__(self, "step_size",
                           positive("step_size", in_units("step_size", self.step_size, "nanometer**2")))
        positive("decay_time", self.decay_time)
        non_negative("decay_power", self.decay_power)

    def step_size_at(self, t: int) -> float:
        """ε_t = ε₀ (1 + t/b)^{−γ}."""
        return self.step_size * (1.0 + t / self.decay_time) ** (-self.decay_power)

    def init(self, system, positions, generator):
        energy, forces = stochastic_energy_and_forces(system, positions, generator)
        return SGLDState(positions, energy, forces, count=0)

    def step(self, system, state, generator):
        x = state.positions
        eps = self.step_size_at(state.count)
        xi = generator.normal(system.event_shape, dtype=x.dtype).to(x.device)
        x = x + (eps / thermal_energy(system, state, x.ndim)) * state.forces + math.sqrt(2.0 * eps) * xi
        energy, forces = stochastic_energy_and_forces(system, x, generator)
        return SGLDState(x, energy, forces, kT=state.kT, count=state.count + 1), StepInfo()
