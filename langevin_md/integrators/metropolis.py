"""Metropolis-adjusted schemes: the shared accept/reject step, step-size adaptation, MALA and
random-walk Metropolis.

MALA is the ULA proposal composed with the generic Metropolis–Hastings test, as in BlackJAX.
Step sizes are per walker, so a walker's chain never depends on the others (and a shard of
walkers on another machine reproduces the same chains). The one exception is an adapted
preconditioner (``preconditioner="diagonal"`` or ``"dense"``, :mod:`.metric`): it is estimated
from all walkers of the run, or of each Dask shard separately, during burn-in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional, Union

import torch

from ..units import in_units
from .base import (Integrator, State, StepInfo, evolve, positive, select_walkers, sum_event, thermal_energy,
                   walker_view)
from .metric import (ADAPTIVE_KINDS, PreconditionedState, accumulate_metric, check_preconditioner,
                     check_window, freeze_metric, initial_metric_fields, state_metric)
from .overdamped import overdamped_move, preconditioned_move, step_size_in_units


# --------------------------------------------------------------------------- the MH test
def metropolis_select(current: State, proposal: State, log_ratio: torch.Tensor, uniform: torch.Tensor):
    """Accept ``proposal`` per walker with probability min(1, exp(log_ratio)).

    A proposal with a non-finite energy has a NaN/−inf ratio and is rejected, which is the
    correct Metropolis treatment of a zero-density point.

    Parameters
    ----------
    current, proposal : State
        States of the same type; every tensor field is selected walker-wise.
    log_ratio : torch.Tensor, shape ``(n_walkers,)``
        log of the Metropolis–Hastings ratio.
    uniform : torch.Tensor, shape ``(n_walkers,)``
        U(0, 1) draws.

    Returns
    -------
    State, StepInfo
    """
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
    accepted = torch.log(uniform) < log_ratio
    fields = {}
    for name, new in proposal.tensors().items():
        old = getattr(current, name)
        if old is None or new is old:
            continue
        fields[name] = select_walkers(accepted, new, old)
    prob = torch.exp(torch.clamp(log_ratio, max=0.0))
    return evolve(proposal, **fields), StepInfo(accepted=accepted, acceptance_probability=prob)


# --------------------------------------------------------------------------- adaptation
@dataclass(frozen=True)
class AdaptiveState(PreconditionedState):
    """A state whose step size is per walker and may be adapted during burn-in.

    It also carries the optional metric of :class:`~.metric.PreconditionedState` (None when
    the scheme is not preconditioned).

    Attributes
    ----------
    step_size : torch.Tensor, shape ``(n_walkers,)``
    log_step_avg, error_avg : torch.Tensor, shape ``(n_walkers,)``
        Dual-averaging statistics (log ε̄ and H̄ of Hoffman & Gelman 2014, Alg. 5).
    mu : torch.Tensor, shape ``(n_walkers,)``
        Shrinkage target log(10 ε₀).
    adapt_count : int
        Adaptation steps taken so far.
    """

    step_size: Optional[torch.Tensor] = None
    log_step_avg: Optional[torch.Tensor] = None
    error_avg: Optional[torch.Tensor] = None
    mu: Optional[torch.Tensor] = None
    adapt_count: int = 0


def init_adaptive(state: State, step_size: float) -> AdaptiveState:
    """Wrap ``state`` (keeping all its fields) with every walker's step size set to ``step_size``."""
    eps = torch.full_like(state.energy, float(step_size))
    kept = {f.name: getattr(state, f.name) for f in fields(state)}
    return AdaptiveState(**kept, step_size=eps, log_step_avg=torch.log(eps),
                         error_avg=torch.zeros_like(eps), mu=torch.log(10.0 * eps))


def restart_dual_averaging(state: AdaptiveState) -> AdaptiveState:
    """Start dual averaging afresh from each walker's averaged step size ε̄.

    Called when the metric changes: the statistics gathered so far describe the old kernel
    (Stan restarts its step-size adaptation after every metric window in the same way).
    """
    eps = torch.exp(state.log_step_avg) if state.adapt_count > 0 else state.step_size
    return replace(state, step_size=eps, log_step_avg=torch.log(eps), error_avg=torch.zeros_like(eps),
                   mu=torch.log(10.0 * eps), adapt_count=0)


def dual_averaging_update(state: AdaptiveState, info: StepInfo, target: float,
                          gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75) -> AdaptiveState:
    """One dual-averaging step towards acceptance ``target`` (Hoffman & Gelman 2014, JMLR 15).

    H̄_t = (1 − 1/(t+t₀)) H̄_{t−1} + (δ − α_t)/(t+t₀);  log ε_t = μ − √t/γ · H̄_t;
    log ε̄_t = t^{−κ} log ε_t + (1 − t^{−κ}) log ε̄_{t−1}, per walker.
    """
    t = state.adapt_count + 1
    w = 1.0 / (t + t0)
    alpha = info.acceptance_probability.to(state.error_avg.dtype)
    error_avg = (1.0 - w) * state.error_avg + w * (target - alpha)
    log_eps = state.mu - (math.sqrt(t) / gamma) * error_avg
    eta = t ** (-kappa)
    log_avg = eta * log_eps + (1.0 - eta) * state.log_step_avg
    return replace(state, step_size=torch.exp(log_eps), error_avg=error_avg,
                   log_step_avg=log_avg, adapt_count=t)


def freeze_adaptation(state: AdaptiveState) -> AdaptiveState:
    """Fix each walker's step size at its dual-averaged value ε̄."""
    if state.adapt_count == 0:
        return state
    return replace(state, step_size=torch.exp(state.log_step_avg))


def check_target_accept(target_accept):
    if target_accept is not None:
        t = float(target_accept)
        if not 0.0 < t < 1.0:
            raise ValueError(f"target_accept must lie strictly between 0 and 1, got {target_accept!r}")


class AdaptiveStepSize(Integrator):
    """Mixin for schemes with a per-walker step tuned towards ``target_accept``, and an
    optional preconditioner (fixed, or adapted from the walkers during burn-in).

    The step is the setting named by :attr:`step_field`: ε (``step_size``, nm²) for MALA, the
    leapfrog ``timestep`` (ps) for HMC. Every walker's current value lives in the state's
    ``step_size`` tensor whichever it is (a state field, kept so checkpoints stay readable).
    """

    target_accept: Optional[float]
    preconditioner: object
    metric_window: int
    #: The name of the setting that gives the initial step.
    step_field = "step_size"

    # The step size and its dual-averaging statistics belong to the temperature: under
    # replica exchange they travel with it, so every rung keeps (and tunes) its own.
    temperature_fields = ("step_size", "log_step_avg", "error_avg", "mu")

    def _check_settings(self):
        # Normalised to None, "diagonal", "dense", a path, or a hashable tuple matrix; first,
        # because it decides the step size's unit.
        object.__setattr__(self, "preconditioner", check_preconditioner(self.preconditioner))
        field = self.step_field
        object.__setattr__(self, field, positive(field, step_size_in_units(self, field)))
        check_target_accept(self.target_accept)
        check_window(self.metric_window)

    @property
    def adapts_metric(self) -> bool:
        return self.preconditioner in ADAPTIVE_KINDS

    @property
    def adaptive(self) -> bool:
        return self.target_accept is not None or self.adapts_metric

    def init(self, system, positions, generator):
        state = super().init(system, positions, generator)
        if self.preconditioner is not None:
            state = PreconditionedState(state.positions, state.energy, state.forces,
                                        **initial_metric_fields(self.preconditioner, state.positions))
        return init_adaptive(state, getattr(self, self.step_field))

    def adapt(self, state, info):
        if self.target_accept is not None:
            state = dual_averaging_update(state, info, self.target_accept)
        if self.adapts_metric:
            state, changed = accumulate_metric(state, self.metric_window)
            if changed and self.target_accept is not None:
                state = restart_dual_averaging(state)
        return state

    def end_adaptation(self, state):
        state = freeze_metric(state)
        return freeze_adaptation(state) if self.target_accept is not None else state

    def summary(self, state):
        """The metric M, ``(dim,)`` or ``(dim, dim)``, when the scheme is preconditioned."""
        return {} if state.metric is None else {"metric": state.metric}


# --------------------------------------------------------------------------- MALA
@dataclass(frozen=True)
class MALA(AdaptiveStepSize):
    r"""Metropolis-adjusted Langevin algorithm.

    Proposal (the ULA step) and Metropolis–Hastings test:

    .. math::
        y = x + \varepsilon F(x)/kT + \sqrt{2\varepsilon}\,\xi, \qquad
        \log q(y|x) = -\frac{|y - x - \varepsilon F(x)/kT|^2}{4\varepsilon},

        \log\alpha = -\frac{U(y) - U(x)}{kT} + \log q(x|y) - \log q(y|x).

    The target is exactly invariant at any ε (Roberts & Tweedie 1996, Bernoulli 2(4);
    Besag 1994). With ``target_accept`` set, each walker's ε is tuned by dual averaging
    (Hoffman & Gelman 2014) during burn-in only and frozen afterwards, so the production
    chain is an exact, fixed kernel.

    **Preconditioned** (Roberts & Stramer 2002, Methodol. Comput. Appl. Probab. 4, 337;
    Girolami & Calderhead 2011, J. R. Stat. Soc. B 73, 123, constant metric): with a constant
    symmetric positive-definite M = L Lᵀ on the flattened coordinates,

    .. math::
        y = x + \varepsilon M F(x)/kT + \sqrt{2\varepsilon}\,L\xi, \qquad
        \log q(y|x) = -\frac{(y - x - \varepsilon M F(x)/kT)^\top M^{-1}
                              (y - x - \varepsilon M F(x)/kT)}{4\varepsilon},

    i.e. q(y|x) = N(x + ε M ∇log p(x), 2ε M); the log-determinant cancels in the ratio. Exact
    at any ε and M. ε is then dimensionless when M has the units of a covariance.

    Parameters
    ----------
    step_size : float or openmm.unit.Quantity
        ε, the initial value when adapting: length² without a preconditioner (nm² for
        molecular systems; a Quantity is converted, ``0.01*unit.nanometer**2``),
        dimensionless with one.
    target_accept : float, optional
        Desired mean acceptance probability in (0, 1), e.g. 0.574 (Roberts & Rosenthal 1998).
    preconditioner : None, 'none', 'diagonal', 'dense', array or file name
        M. None/'none': M = I, bitwise the unpreconditioned scheme. 'diagonal'/'dense': M
        estimated from the pooled walkers during burn-in (see :mod:`.metric`), restarting the
        step-size adaptation at each new M, then frozen. An array of shape ``(dim,)`` or
        ``(dim, dim)`` (``dim = prod(event_shape)``), or a ``.npy``/text file holding one:
        a fixed M.
    metric_window : int
        First adaptation window in burn-in steps; window k lasts ``metric_window · 2^k``.
        Only used with 'diagonal'/'dense'.
    """

    step_size: float = 0.01
    target_accept: Optional[float] = None
    preconditioner: Union[None, str, tuple] = None
    metric_window: int = 50

    metropolis_adjusted = True
    needs_energy = True
    #: The MD unit of ε without a preconditioner (a config file may give "0.01 nm**2").
    physical_units = {"step_size": "nanometer**2"}

    def __post_init__(self):
        self._check_settings()

    def step(self, system, state, generator):
        x = state.positions
        kT = thermal_energy(system, state, x.ndim)
        eps = walker_view(state.step_size, x.ndim)
        noise = generator.normal(system.event_shape, dtype=x.dtype).to(x.device)
        u = generator.uniform((), dtype=x.dtype).to(x.device)
        metric = state_metric(state)
        if metric is not None:
            return self._preconditioned_step(system, state, metric, kT, eps, noise, u)
        y = overdamped_move(state, kT, eps, noise)
        energy, forces = system.energy_and_forces(y)
        # log q(y|x) = -|sqrt(2ε)ξ|²/(4ε) = -|ξ|²/2; the reverse move uses the forces at y.
        # The expressions of the equations, evaluated in the same order with the same roundings,
        # but updating fresh temporaries in place (fewer n-sized allocations per step).
        back = (x - y).sub_((eps / kT) * forces)
        log_q_ratio = sum_event(back.mul_(back)).div_(-4.0 * state.step_size).add_(
            sum_event(noise * noise).mul_(0.5))
        log_ratio = (energy - state.energy).neg_().div_(thermal_energy(system, state, 1)).add_(log_q_ratio)
        proposal = evolve(state, positions=y, energy=energy, forces=forces)
        return metropolis_select(state, proposal, log_ratio, u)

    def _preconditioned_step(self, system, state, metric, kT, eps, noise, u):
        x = state.positions
        y = preconditioned_move(state, metric, kT, eps, noise)
        energy, forces = system.energy_and_forces(y)
        # Forward: y − x − εMF(x)/kT = sqrt(2ε) Lξ, so its M⁻¹ quadratic over 4ε is |ξ|²/2.
        back = x - y - (eps / kT) * metric.apply(forces)
        log_q_ratio = metric.inverse_quadratic(back) / (-4.0 * state.step_size) + 0.5 * sum_event(noise * noise)
        log_ratio = -(energy - state.energy) / thermal_energy(system, state, 1) + log_q_ratio
        proposal = evolve(state, positions=y, energy=energy, forces=forces)
        return metropolis_select(state, proposal, log_ratio, u)


# --------------------------------------------------------------------------- RWM
@dataclass(frozen=True)
class RandomWalkMetropolis(Integrator):
    r"""Random-walk Metropolis with a Gaussian proposal (Metropolis et al. 1953).

    .. math:: y = x + s\,\xi, \qquad \log\alpha = -(U(y) - U(x))/kT.

    A gradient-free baseline: it mixes in O(d) steps where MALA needs O(d^{1/3})
    (Roberts & Rosenthal 1998).

    Parameters
    ----------
    scale : float or openmm.unit.Quantity
        Proposal standard deviation s, in length units (nm for molecular systems; a Quantity
        is converted, ``0.01*unit.nanometer``).
    """

    scale: float = 0.1

    metropolis_adjusted = True
    needs_energy = True
    physical_units = {"scale": "nanometer"}

    def __post_init__(self):
        object.__setattr__(self, "scale", positive("scale", in_units("scale", self.scale, "nanometer")))

    def step(self, system, state, generator):
        x = state.positions
        noise = generator.normal(system.event_shape, dtype=x.dtype).to(x.device)
        u = generator.uniform((), dtype=x.dtype).to(x.device)
        y = x + self.scale * noise
        energy, forces = system.energy_and_forces(y)
        proposal = evolve(state, positions=y, energy=energy, forces=forces)
        return metropolis_select(state, proposal, -(energy - state.energy) / thermal_energy(system, state, 1), u)
