"""Learned energies and scores as Boltzmann targets: any ``torch.nn.Module`` swapped in.

* :class:`TorchEnergy` wraps a module ``(n_walkers, *event_shape) -> (n_walkers,)`` giving
  U(x); forces F = −∇U come from autograd.
* :class:`FeaturePrior` is a :class:`TorchEnergy` whose module sees features of the
  positions (dihedrals, distances; :mod:`langevin_md.systems.features`) instead of raw
  coordinates; autograd carries the forces back to Cartesians.
* :class:`ScoreModel` wraps a noise-conditional score s(x, σ) ≈ ∇ log p_σ(x) with no energy.

Forces are computed with ``torch.autograd.grad(..., create_graph=False)`` on a fresh leaf,
so no graph survives a step: memory stays flat over long runs. The module runs on its own
device and dtype; positions are moved there and the results moved back to the caller's.
Both wrappers accept ``torch.compile``d modules.

Noise-conditional models
------------------------
A module is *noise-conditional* when it has an attribute ``noise_conditional = True`` and
accepts ``module(x, sigma)`` with ``sigma`` of shape ``(n_walkers,)`` (the models of
:mod:`langevin_md.learned.models` are). The annealed samplers call
:meth:`TorchEnergy.noised_energy_and_forces` / :meth:`ScoreModel.noised_energy_and_forces`
at each noise level; plain ``energy_and_forces`` evaluates at the smallest level.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .base import System, check_positive


def _module_placement(module: torch.nn.Module, like: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first parameter or buffer (else ``like``'s)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return like.device, like.dtype


def _event_shape(event_shape) -> tuple:
    try:
        shape = tuple(int(s) for s in event_shape)
    except TypeError:
        raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}")
    return shape


def _masses(masses, event_shape: tuple) -> np.ndarray:
    n = event_shape[0]
    m = np.ones(n) if masses is None else np.asarray(masses, dtype=np.float64)
    if m.ndim == 0:
        m = np.full(n, float(m))
    if m.shape != (n,) or not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"masses must be a positive scalar or have shape ({n},), got {masses!r}")
    return m


def _sigma_tensor(sigma, n: int, like: torch.Tensor) -> torch.Tensor:
    """σ as a ``(n,)`` tensor on ``like``'s device/dtype (accepts a float or a ``(n,)`` tensor)."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return s.expand(n) if s.ndim == 0 else s


def _is_noise_conditional(module) -> bool:
    # torch.compile's OptimizedModule forwards attribute look-ups to the original module.
    return bool(getattr(module, "noise_conditional", False))


class TorchEnergy(System):
    """A Boltzmann target whose energy is a PyTorch module, U(x) = module(x).

    Parameters
    ----------
    module : torch.nn.Module
        Maps positions ``(n_walkers, *event_shape)`` to energies ``(n_walkers,)`` (energy
        units: kJ/mol for molecular systems, dimensionless otherwise). May be
        ``torch.compile``d. It is evaluated on its own device and dtype.
    event_shape : tuple of int
        ``(dim,)`` or ``(n_particles, 3)``.
    kT : float
        Thermal energy, same units as the module's output.
    masses : float or array, shape ``event_shape[:1]``, optional
        For the underdamped/Brownian schemes (default 1).

    Notes
    -----
    Forces F = −∇U are ``torch.autograd.grad`` of Σ_walkers U on a detached copy of the
    positions, with ``create_graph=False``: no graph is kept between steps. Parameters of
    the module get no gradient (they are not inputs of the grad call).
    """

    def __init__(self, module: torch.nn.Module, event_shape, kT: float, masses=None):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.event_shape = _event_shape(event_shape)
        self.kT = check_positive("kT", kT)
        self.masses = _masses(masses, self.event_shape)

    # the function differentiated; FeaturePrior overrides it
    def _energy_fn(self, x: torch.Tensor, sigma: Optional[torch.Tensor]) -> torch.Tensor:
        return self.module(x) if sigma is None else self.module(x, sigma)

    def _evaluate(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        device, dtype = _module_placement(self.module, x)
        xin = x.detach().to(device=device, dtype=dtype).requires_grad_(True)
        s = None if sigma is None else _sigma_tensor(sigma, x.shape[0], xin)
        with torch.enable_grad():
            energy = self._energy_fn(xin, s)
            if not isinstance(energy, torch.Tensor) or tuple(energy.shape) != (x.shape[0],):
                got = tuple(energy.shape) if isinstance(energy, torch.Tensor) else type(energy).__name__
                raise ValueError(
                    f"the energy module of {type(self).__name__} returned {got} for positions of "
                    f"shape {tuple(x.shape)}; expected one energy per walker, shape ({x.shape[0]},)"
                )
            (grad,) = torch.autograd.grad(energy.sum(), xin, create_graph=False)
        return (energy.detach().to(device=x.device, dtype=x.dtype),
                (-grad).to(device=x.device, dtype=x.dtype))

    def _energy_and_forces(self, x):
        return self._evaluate(x, None)

    def noised_energy_and_forces(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """U(x, σ) and −∇U(x, σ) for noise-conditional modules; plain U(x) otherwise.

        Parameters
        ----------
        x : torch.Tensor, shape ``(n_walkers, *event_shape)``
        sigma : float or torch.Tensor of shape ``(n_walkers,)``
            Noise level (length units). Ignored unless the module has
            ``noise_conditional = True``.
        """
        self.check_positions(x)
        return self._evaluate(x, sigma if _is_noise_conditional(self.module) else None)

    def __repr__(self):
        return f"{type(self).__name__}({type(self.module).__name__}, event_shape={self.event_shape}, kT={self.kT:g})"


class FeaturePrior(TorchEnergy):
    """An energy defined on features of the positions: U(x) = module(feature_fn(x)).

    Typical use: a prior on backbone dihedrals of a molecule,
    ``feature_fn = lambda x: torch.stack([dihedral(x, *phi), dihedral(x, *psi)], -1)``,
    added to a force field as ``ff + λ * prior``. Forces on the Cartesian coordinates come
    from autograd through ``feature_fn``, which must be differentiable torch code.

    Parameters
    ----------
    module : torch.nn.Module
        Maps features ``(n_walkers, n_features...)`` to energies ``(n_walkers,)``.
    feature_fn : callable
        Positions ``(n_walkers, *event_shape)`` -> features ``(n_walkers, ...)``.
    event_shape : tuple of int
        Shape of the positions (e.g. ``(22, 3)`` for alanine dipeptide).
    kT : float
        Thermal energy (the force field's kT, kJ/mol, when the prior is added to one).
    masses : float or array, optional
        Default 1; when added to a force field the sum takes the force field's masses
        (put the force field first).
    """

    def __init__(self, module: torch.nn.Module, feature_fn: Callable[[torch.Tensor], torch.Tensor],
                 event_shape, kT: float, masses=None):
        if not callable(feature_fn):
            raise TypeError(f"feature_fn must be callable, got {type(feature_fn).__name__}")
        super().__init__(module, event_shape, kT, masses)
        self.feature_fn = feature_fn

    def _energy_fn(self, x, sigma):
        feats = self.feature_fn(x)
        return self.module(feats) if sigma is None else self.module(feats, sigma)


class ScoreModel(System):
    """A target known only through a noise-conditional score model s(x, σ) ≈ ∇ log p_σ(x).

    ``module(x, sigma)`` takes positions ``(n_walkers, *event_shape)`` and noise levels
    ``(n_walkers,)`` and returns the score, shape ``(n_walkers, *event_shape)`` (1/length).

    There is no energy, so ``score_only = True``: MALA and HMC refuse this system (their
    Metropolis test needs energy differences), while ULA and the annealed samplers accept it.

    * ``energy_and_forces(x)`` returns forces kT·s(x, σ_min), so ULA's drift ε F/kT is
      ε s(x, σ_min): ULA samples p_{σ_min}, the data density smoothed by N(0, σ_min²). The
      energies it returns are zeros (a placeholder: there is no energy to report).
    * :meth:`noised_energy_and_forces` gives kT·s(x, σ) at any level, for the annealed
      samplers.

    Parameters
    ----------
    module : torch.nn.Module
        ``module(x, sigma) -> score``. May be ``torch.compile``d.
    event_shape : tuple of int
    kT : float
        Only scales the returned forces (F = kT s), so any kT samples the same density.
    sigma_min : float, optional
        Noise level used by ``energy_and_forces``. Defaults to ``module.sigma_min`` when the
        module has one (the models of :mod:`langevin_md.training` do); otherwise required.
    masses : float or array, optional
    """

    score_only = True

    def __init__(self, module: torch.nn.Module, event_shape, kT: float = 1.0,
                 sigma_min: Optional[float] = None, masses=None):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if sigma_min is None:
            sigma_min = getattr(module, "sigma_min", None)
            if isinstance(sigma_min, torch.Tensor):
                sigma_min = float(sigma_min)
            if sigma_min is None:
                raise ValueError(
                    f"ScoreModel needs sigma_min (the noise level at which ULA evaluates the score): "
                    f"{type(module).__name__} has no sigma_min attribute, so pass sigma_min=..."
                )
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.module = module
        self.event_shape = _event_shape(event_shape)
        self.kT = check_positive("kT", kT)
        self.masses = _masses(masses, self.event_shape)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """s(x, σ), shape ``(n_walkers, *event_shape)``, on ``x``'s device and dtype."""
        device, dtype = _module_placement(self.module, x)
        xin = x.detach().to(device=device, dtype=dtype)
        with torch.no_grad():
            s = self.module(xin, _sigma_tensor(sigma, x.shape[0], xin))
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != tuple(x.shape):
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(
                f"the score module returned {got} for positions of shape {tuple(x.shape)}; a "
                "score has the shape of the positions"
            )
        return s.to(device=x.device, dtype=x.dtype)

    def _energy_and_forces(self, x):
        return x.new_zeros(x.shape[0]), self.kT * self.score(x, self.sigma_min)

    def noised_energy_and_forces(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeros (no energy) and kT·s(x, σ)."""
        self.check_positions(x)
        return x.new_zeros(x.shape[0]), self.kT * self.score(x, sigma)

    def __repr__(self):
        return (f"ScoreModel({type(self.module).__name__}, event_shape={self.event_shape}, "
                f"kT={self.kT:g}, sigma_min={self.sigma_min:g})")


class MinibatchSystem(System):
    """A target whose energy is a sum over N data, with cheap unbiased minibatch estimates.

    Subclasses implement ``_energy_and_forces`` (the exact, full-data U and F) and
    :meth:`stochastic_energy_and_forces` (an unbiased estimate from a minibatch drawn from
    the walkers' random streams). :class:`~langevin_md.integrators.SGLD` calls the latter;
    every other integrator sees the exact target.

    Attributes
    ----------
    n_data : int
        N.
    batch_size : int
        n, data per walker per evaluation.
    """

    n_data: int
    batch_size: int

    def stochastic_energy_and_forces(self, x: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Unbiased minibatch estimates of U(x) and F(x); ``generator`` is a WalkerRNG."""
        raise NotImplementedError(f"{type(self).__name__} must implement stochastic_energy_and_forces")


class BayesianPosterior(MinibatchSystem):
    """A Bayesian posterior p(θ | data) ∝ p(θ) Π_i p(x_i | θ) as a Boltzmann target at kT = 1.

    U(θ) = −log p(θ) − Σ_{i=1}^{N} log p(x_i | θ). The minibatch estimate draws n indices per
    walker uniformly *with replacement* from the walker's random stream and rescales:
    Û(θ) = −log p(θ) − (N/n) Σ_{b=1}^{n} log p(x_{i_b} | θ), so E[Û] = U and E[∇Û] = ∇U.
    Forces (exact and minibatch) come from autograd.

    Parameters
    ----------
    log_prior : callable
        θ ``(n_walkers, *event_shape)`` -> log p(θ) ``(n_walkers,)`` (torch code; constants
        may be dropped).
    log_likelihood : callable
        (θ ``(n_walkers, *event_shape)``, data ``(n_walkers, m, *datum_shape)``) ->
        per-datum log-likelihoods ``(n_walkers, m)``. Each walker sees its own rows.
    data : array_like, shape ``(N, *datum_shape)``
    event_shape : tuple of int
        Shape of θ.
    batch_size : int
        n ≤ N.
    """

    kT = 1.0

    def __init__(self, log_prior: Callable, log_likelihood: Callable, data, event_shape, batch_size: int):
        if not callable(log_prior) or not callable(log_likelihood):
            raise TypeError("log_prior and log_likelihood must be callables on torch tensors")
        d = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
        if d.ndim < 1 or d.shape[0] < 1:
            raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(d.shape)}")
        if not d.is_floating_point():
            d = d.to(torch.float64)
        self.data = d
        self.n_data = int(d.shape[0])
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= self.n_data:
            raise ValueError(f"batch_size must be an integer in [1, {self.n_data}] (the number of data), got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.log_prior = log_prior
        self.log_likelihood = log_likelihood
        self.event_shape = _event_shape(event_shape)
        self.masses = np.ones(self.event_shape[0])
        self._data_cache: dict = {}

    def _data_on(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        d = self._data_cache.get(key)
        if d is None:
            d = self.data.to(dtype=like.dtype, device=like.device)
            self._data_cache[key] = d
        return d

    def _evaluate(self, x: torch.Tensor, batch: torch.Tensor, scale: float):
        xin = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loglik = self.log_likelihood(xin, batch)
            if tuple(loglik.shape) != (x.shape[0], batch.shape[1]):
                raise ValueError(
                    f"log_likelihood returned shape {tuple(loglik.shape)}; expected one value per "
                    f"walker and datum, ({x.shape[0]}, {batch.shape[1]})"
                )
            energy = -self.log_prior(xin) - scale * loglik.sum(-1)
            (grad,) = torch.autograd.grad(energy.sum(), xin)
        return energy.detach(), -grad

    def _energy_and_forces(self, x):
        d = self._data_on(x)
        return self._evaluate(x, d.unsqueeze(0).expand((x.shape[0],) + tuple(d.shape)), 1.0)

    def stochastic_energy_and_forces(self, x, generator):
        """Minibatch estimates Û, −∇Û (see the class notes); draws n uniforms per walker."""
        self.check_positions(x)
        d = self._data_on(x)
        u = generator.uniform((self.batch_size,), dtype=torch.float64).to(x.device)
        idx = torch.clamp((u * self.n_data).long(), max=self.n_data - 1)
        return self._evaluate(x, d[idx], self.n_data / self.batch_size)

    def __repr__(self):
        return f"BayesianPosterior(event_shape={self.event_shape}, n_data={self.n_data}, batch_size={self.batch_size})"
