"""Annealed samplers for noise-conditional score models: NCSN annealed Langevin and the
predictor–corrector sampler of score-based SDEs.

Both follow the integrator protocol: the noise-level schedule lives in the frozen settings,
and the state carries a step counter from which the current level follows, so the ordinary
sampler loop drives them::

    integ = AnnealedLangevin(sigmas=geometric_sigmas(10.0, 0.01, 10), steps_per_sigma=100,
                             step_size=2e-5)
    result = lmd.sample(ScoreModel(net, (2,)), integ, n_steps=integ.n_steps, n_walkers=1000)

``result.positions[-1]`` then holds the samples. Run exactly ``integ.n_steps`` steps with
``burn_in=0`` (burn-in steps also advance the schedule). Steps beyond ``n_steps`` stay at the
smallest noise level.

The score at level σ comes from ``system.noised_energy_and_forces(x, σ)`` (forces = kT·s(x, σ)),
which :class:`~langevin_md.systems.torch_models.ScoreModel` and noise-conditional
:class:`~langevin_md.systems.torch_models.TorchEnergy` provide. Any other system is used
through ``energy_and_forces``: its score F/kT does not depend on σ and only the step size
anneals.

Every walker's schedule is identical, so the level is a Python int (no device tensor, no
host synchronisation), and walkers stay independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..units import in_units, is_quantity
from .base import Integrator, State, StepInfo, positive, thermal_energy


def noised_energy_and_forces(system, x: torch.Tensor, sigma: float):
    """(energy, kT·s(x, σ)) from a noise-conditional system, else its plain energy and forces."""
    fn = getattr(system, "noised_energy_and_forces", None)
    if fn is None:
        return system.energy_and_forces(x)
    return fn(x, sigma)


def _check_sigmas(sigmas, minimum: int = 1) -> tuple:
    """Noise levels as a tuple of floats in length units (nm for a Quantity).

    ``sigmas`` may be a sequence of numbers or of Quantities, or one Quantity holding a
    sequence (``[1.0, 0.1] * unit.nanometer``).
    """
    if is_quantity(sigmas):
        try:
            sigmas = list(sigmas)  # a Quantity holding a sequence yields one Quantity per level
        except TypeError:
            raise ValueError(f"sigmas must be a sequence of positive lengths, got {sigmas}") from None
    try:
        values = tuple(float(in_units("sigmas", s, "nanometer")) for s in sigmas)
    except TypeError:
        raise ValueError(f"sigmas must be a sequence of positive numbers, got {sigmas!r}") from None
    if len(values) < minimum:
        raise ValueError(f"sigmas must hold at least {minimum} noise level(s), got {len(values)}")
    for s in values:
        positive("sigmas", s)
    if any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError(f"sigmas must be strictly decreasing (largest noise first), got {list(values)}")
    return values


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class AnnealedState(State):
    """A state plus the number of steps taken, which fixes the current noise level.

    ``forces`` hold kT·s(x, σ) at the level the *next* step uses.
    """

    count: int = 0


@dataclass(frozen=True)
class AnnealedLangevin(Integrator):
    r"""Annealed Langevin dynamics (Song & Ermon 2019, "Generative modeling by estimating
    gradients of the data distribution", NeurIPS, Algorithm 1).

    For noise levels σ₁ > … > σ_L, T steps at each level i:

    .. math::  x \leftarrow x + \frac{\alpha_i}{2} s(x, \sigma_i) + \sqrt{\alpha_i}\,z,
               \qquad \alpha_i = \varepsilon\,\sigma_i^2/\sigma_L^2,\ z \sim N(0, I).

    The step ε is the one at the smallest level. Exact law used by the tests: with the
    exact score s(x, σ) = −x/(s₀² + σ²) of N(0, s₀²) noised by σ, the variance follows
    v ← c_i² v + α_i, c_i = 1 − α_i/(2(s₀² + σ_i²)), step by step; the end variance is not
    s₀² (the scheme is unadjusted).

    Parameters
    ----------
    sigmas : sequence of float, or openmm.unit.Quantity
        Noise levels σ_i in length units (nm for a Quantity), strictly decreasing.
    steps_per_sigma : int
        T, steps at each level.
    step_size : float or openmm.unit.Quantity
        ε, the step at the smallest level, in length² (nm² for a Quantity).

    Attributes
    ----------
    n_steps : int
        ``len(sigmas) * steps_per_sigma``: the number of sampler steps of one annealing pass.
    """

    sigmas: Sequence[float] = (1.0, 0.1, 0.01)
    steps_per_sigma: int = 100
    step_size: float = 1e-5

    physical_units = {"sigmas": "nanometer", "step_size": "nanometer**2"}

    def __post_init__(self):
        object.__setattr__(self, "sigmas", _check_sigmas(self.sigmas))
        _check_count("steps_per_sigma", self.steps_per_sigma)
        object.__setattr__(self, "step_size",
                           positive("step_size", in_units("step_size", self.step_size, "nanometer**2")))

    @property
    def n_steps(self) -> int:
        return len(self.sigmas) * self.steps_per_sigma

    def level(self, count: int) -> int:
        """Index of the noise level used by step number ``count`` (0-based)."""
        return min(count // self.steps_per_sigma, len(self.sigmas) - 1)

    def alpha(self, level: int) -> float:
        """α_i = ε σ_i²/σ_L² for level index i."""
        return self.step_size * (self.sigmas[level] / self.sigmas[-1]) ** 2

    def init(self, system, positions, generator):
        energy, forces = noised_energy_and_forces(system, positions, self.sigmas[0])
        return AnnealedState(positions, energy, forces, count=0)

    def step(self, system, state, generator):
        x = state.positions
        a = self.alpha(self.level(state.count))
        z = generator.normal(system.event_shape, dtype=x.dtype).to(x.device)
        x = x + (0.5 * a / thermal_energy(system, state, x.ndim)) * state.forces + math.sqrt(a) * z
        count = state.count + 1
        energy, forces = noised_energy_and_forces(system, x, self.sigmas[self.level(count)])
        return AnnealedState(x, energy, forces, kT=state.kT, count=count), StepInfo()


@dataclass(frozen=True)
class PredictorCorrector(Integrator):
    r"""Predictor–corrector sampler for the variance-exploding SDE (Song et al. 2021,
    "Score-based generative modeling through stochastic differential equations", ICLR,
    Algorithms 2 and 4 with the reverse-diffusion predictor and the Langevin corrector).

    Levels σ₀ > σ₁ > … > σ_{L−1}; walkers should start near N(0, σ₀² I). For each
    i = 1, …, L−1: one predictor step from σ_{i−1} to σ_i,

    .. math::  x \leftarrow x + (\sigma_{i-1}^2 - \sigma_i^2)\, s(x, \sigma_{i-1})
               + \sqrt{\sigma_{i-1}^2 - \sigma_i^2}\; z,

    then M Langevin corrector steps at σ_i,

    .. math::  \epsilon_i = 2\,(r\,\sigma_i)^2,\qquad
               x \leftarrow x + \epsilon_i\, s(x, \sigma_i) + \sqrt{2\epsilon_i}\; z,

    with signal-to-noise ratio r. Song et al. set ε = 2 (r‖z‖/‖g‖)² with the norms of the
    noise and of the score g = s(x, σ_i) averaged over the batch; here their typical values
    ‖z‖ ≈ √d and ‖g‖ ≈ √d/σ_i (the score of data noised by σ_i) are used instead. That
    keeps walkers independent chains (a batch average couples them), and avoids the
    per-walker version's blow-up, where a walker whose score happens to be small takes an
    enormous step. It also makes every move linear for a Gaussian target, so the tests can
    check the exact variance recursion. Each sampler step is one predictor or one corrector
    move; steps past ``n_steps`` are further corrector moves at σ_{L−1}.

    Parameters
    ----------
    sigmas : sequence of float, or openmm.unit.Quantity
        At least two noise levels in length units (nm for a Quantity), strictly decreasing.
    n_corrector : int
        M, corrector steps per level (0 gives the plain reverse-diffusion sampler).
    snr : float
        r, the corrector's signal-to-noise ratio (dimensionless; 0.16 in Song et al. for CIFAR-10).

    Attributes
    ----------
    n_steps : int
        ``(len(sigmas) − 1) * (1 + n_corrector)``.
    """

    sigmas: Sequence[float] = (10.0, 1.0, 0.1, 0.01)
    n_corrector: int = 1
    snr: float = 0.16

    physical_units = {"sigmas": "nanometer"}

    def __post_init__(self):
        object.__setattr__(self, "sigmas", _check_sigmas(self.sigmas, minimum=2))
        if isinstance(self.n_corrector, bool) or not isinstance(self.n_corrector, int) or self.n_corrector < 0:
            raise ValueError(f"n_corrector must be a non-negative integer, got {self.n_corrector!r}")
        positive("snr", self.snr)

    @property
    def n_steps(self) -> int:
        return (len(self.sigmas) - 1) * (1 + self.n_corrector)

    def _move(self, count: int) -> tuple[bool, int]:
        """(is_predictor, level i) of step number ``count``."""
        if count >= self.n_steps:
            return False, len(self.sigmas) - 1
        per = 1 + self.n_corrector
        return count % per == 0, 1 + count // per

    def corrector_step(self, level: int) -> float:
        """ε_i = 2 (r σ_i)², the corrector's step at level i."""
        return 2.0 * (self.snr * self.sigmas[level]) ** 2

    def _sigma_for(self, count: int) -> float:
        predictor, i = self._move(count)
        return self.sigmas[i - 1] if predictor else self.sigmas[i]

    def init(self, system, positions, generator):
        energy, forces = noised_energy_and_forces(system, positions, self._sigma_for(0))
        return AnnealedState(positions, energy, forces, count=0)

    def step(self, system, state, generator):
        x = state.positions
        g = state.forces / thermal_energy(system, state, x.ndim)
        z = generator.normal(system.event_shape, dtype=x.dtype).to(x.device)
        predictor, i = self._move(state.count)
        if predictor:
            dv = self.sigmas[i - 1] ** 2 - self.sigmas[i] ** 2
            x = x + dv * g + math.sqrt(dv) * z
        else:
            eps = self.corrector_step(i)
            x = x + eps * g + math.sqrt(2.0 * eps) * z
        count = state.count + 1
        energy, forces = noised_energy_and_forces(system, x, self._sigma_for(count))
        return AnnealedState(x, energy, forces, kT=state.kT, count=count), StepInfo()
