"""Gaussian mixtures: multimodal targets with exactly known modes, moments and samples."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import (ExactMarginal, System, check_axis, check_edges, check_positive, per_coordinate,
                   walker_indices)


class GaussianMixture(System):
    """A Gaussian-mixture energy, U(x) = −log Σ_j w_j N(x; μ_j, Σ_j).

    U is dimensionless and independent of kT, so the Boltzmann density is the tempered
    mixture

    .. math::

        p(x) ∝ \\exp(−U(x)/kT) = \\Big(\\sum_j w_j\\, N(x; μ_j, Σ_j)\\Big)^{1/kT},

    which is the mixture itself at kT = 1 (exactly, including normalisation) and sharpens or
    flattens it at other temperatures, as a physical energy would. If instead the mixture
    is wanted at every temperature, use ``kT * GaussianMixture(..., kT=kT)``: the scaled
    energy −kT log mixture gives exp(−U/kT) = mixture.

    Everything labelled "of the mixture" below (``mean``, ``covariance``, ``sample``,
    ``log_density``) describes the mixture, i.e. the Boltzmann density at kT = 1.

    Runs start with the walkers spread evenly over the components, walker i at the mean
    μ_(i mod K) (:meth:`initial_positions`), whatever the weights. Exact draws
    (:meth:`exact_samples`, kT = 1 only) are a start only when asked for,
    ``initial_positions="exact"``.

    Parameters
    ----------
    means : array_like, shape ``(n_components, dim)``
        Component means μ_j.
    covariances : float or sequence, optional
        Component covariances Σ_j. A scalar is a shared isotropic variance σ²·I; otherwise
        one entry per component, each a scalar (σ_j²·I), a ``(dim,)`` vector (diagonal) or a
        ``(dim, dim)`` symmetric positive-definite matrix. Arrays of shape
        ``(n_components,)``, ``(n_components, dim)`` and ``(n_components, dim, dim)`` are read
        the same way. Default 1.
    weights : array_like, shape ``(n_components,)``, optional
        Positive component weights, normalised to sum to 1 (default equal weights).
    kT : float
        Thermal energy, positive.
    masses : float or array of shape (dim,), optional
        Masses for the underdamped and Brownian schemes (default 1).
    """

    def __init__(self, means, covariances=1.0, weights=None, kT: float = 1.0, masses=1.0):
        mu = np.asarray(means, dtype=np.float64)
        if mu.ndim == 1:
            raise ValueError(
                f"means must have shape (n_components, dim), got shape {mu.shape}; for a 1-D "
                "mixture pass a column, e.g. [[-2.0], [2.0]]"
            )
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1 or not np.all(np.isfinite(mu)):
            raise ValueError(f"means must be a finite array of shape (n_components, dim), got shape {mu.shape}")
        n_comp, dim = mu.shape
        self.means = mu
        self.covariances = _parse_covariances(covariances, n_comp, dim)
        if weights is None:
            w = np.full(n_comp, 1.0 / n_comp)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n_comp,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise ValueError(
                    f"weights must be {n_comp} positive finite numbers (one per component), got {weights!r}"
                )
            w = w / w.sum()
        self.weights = w
        self.kT = check_positive("kT", kT)
        self.event_shape = (dim,)
        self.masses = per_coordinate("masses", masses, dim)
        self._chol = np.linalg.cholesky(self.covariances)  # validated in the parser
        self._precision = np.linalg.inv(self.covariances)
        logdet = 2.0 * np.log(np.diagonal(self._chol, axis1=1, axis2=2)).sum(-1)
        # log w_j + log of N_j's normalising constant, per component.
        self._log_const = np.log(w) - 0.5 * logdet - 0.5 * dim * math.log(2.0 * math.pi)
        self._logdet = logdet

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    # ----------------------------------------------------------------- energy and forces
    def _params(self, x):
        return self._as_tensors(x, "params", self.means, self._precision, self._log_const)

    def _component_terms(self, x):
        """log(w_j N_j(x)), shape (n, K), and Σ_j⁻¹(x − μ_j), shape (n, K, d)."""
        mu, prec, log_const = self._params(x)
        d = x[:, None, :] - mu
        pd = torch.einsum("kab,nkb->nka", prec, d)
        return log_const - 0.5 * (d * pd).sum(-1), pd

    def _energy_and_forces(self, x):
        logc, pd = self._component_terms(x)
        log_mix = torch.logsumexp(logc, dim=-1)
        resp = torch.softmax(logc, dim=-1)
        # −∇U = ∇ log mixture = −Σ_j r_j(x) Σ_j⁻¹ (x − μ_j), r the responsibilities.
        forces = -(resp[..., None] * pd).sum(1)
        return -log_mix, forces

    # ----------------------------------------------------------------- exact answers
    def _flat(self, x):
        """(..., dim) array or tensor -> (float64 tensor (m, dim), leading shape, was_numpy)."""
        is_np = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if is_np else x
        if t.ndim < 1 or t.shape[-1] != self.event_shape[0]:
            raise ValueError(f"x must have shape (..., {self.event_shape[0]}), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            t = t.to(torch.float64)
        return t.reshape(-1, self.event_shape[0]), tuple(t.shape[:-1]), is_np

    def log_density(self, x):
        """Normalised log density of the mixture, log Σ_j w_j N(x; μ_j, Σ_j) = −U(x).

        This is the Boltzmann log density at kT = 1.

        Parameters
        ----------
        x : torch.Tensor or array_like, shape ``(..., dim)``

        Returns
        -------
        torch.Tensor or numpy.ndarray (following the input), shape ``(...)``
        """
        flat, lead, is_np = self._flat(x)
        out = torch.logsumexp(self._component_terms(flat)[0], dim=-1).reshape(lead)
        return out.numpy() if is_np else out

    def mode_assignment(self, x):
        """Index of the most responsible component, argmax_j w_j N(x; μ_j, Σ_j).

        Parameters
        ----------
        x : torch.Tensor or array_like, shape ``(..., dim)``
            e.g. a single batch ``(n_walkers, dim)`` or a trajectory
            ``(n_frames, n_walkers, dim)``.

        Returns
        -------
        torch.Tensor or numpy.ndarray of int64 (following the input), shape ``(...)``
        """
        flat, lead, is_np = self._flat(x)
        out = self._component_terms(flat)[0].argmax(-1).reshape(lead)
        return out.numpy() if is_np else out

    @property
    def mean(self) -> np.ndarray:
        """Mean of the mixture, Σ_j w_j μ_j, shape ``(dim,)``."""
        return self.weights @ self.means

    @property
    def covariance(self) -> np.ndarray:
        """Covariance of the mixture, Σ_j w_j (Σ_j + μ_j μ_jᵀ) − m mᵀ, shape ``(dim, dim)``."""
        m = self.mean
        second = np.einsum("k,kab->ab", self.weights, self.covariances + np.einsum("ka,kb->kab", self.means, self.means))
        return second - np.outer(m, m)

    def exact_marginal(self, axis: int, edges):
        """At kT = 1 coordinate ``axis`` is the mixture of the components' normal marginals;
        None at other kT (the tempered density has no closed-form marginal)."""
        from scipy import stats

        i = check_axis(axis, self.event_shape[0])
        e = check_edges(edges)
        if self.kT != 1.0:
            return None
        grid = np.linspace(e[0], e[-1], 400)
        laws = [stats.norm(m[i], math.sqrt(c[i, i])) for m, c in zip(self.means, self.covariances)]
        probabilities = sum(w * np.diff(law.cdf(e)) for w, law in zip(self.weights, laws))
        density = sum(w * law.pdf(grid) for w, law in zip(self.weights, laws))
        return ExactMarginal(e, probabilities, grid, density)

    @property
    def mode_weights(self) -> np.ndarray:
        """Boltzmann probability of each mode, shape ``(n_components,)``.

        At kT = 1 these are the mixture weights, exactly. At other kT the tempered density
        is no longer a mixture, and the value returned is its well-separated limit: with
        overlaps between components negligible, mode j carries
        ∫ (w_j N_j)^{1/kT} ∝ w_j^{1/kT} |Σ_j|^{(1 − 1/kT)/2}. Where components overlap use
        :meth:`assignment_probabilities`, which is exact up to its reported Monte Carlo
        error at any kT.
        """
        if self.kT == 1.0:
            return self.weights.copy()
        beta = 1.0 / self.kT
        logm = beta * np.log(self.weights) + 0.5 * (1.0 - beta) * self._logdet
        m = np.exp(logm - logm.max())
        return m / m.sum()

    def assignment_probabilities(self, n_samples: int = 1 << 18, seed: int = 0):
        """P(mode_assignment(X) = j) for X from the Boltzmann density, with its standard error.

        This is what counts of :meth:`mode_assignment` over exact samples converge to
        (it differs from :attr:`mode_weights` by the mass that overlapping components place
        in each other's regions). Estimated by self-normalised importance sampling from the
        proposal Σ_j π_j N(μ_j, kT Σ_j), π = :attr:`mode_weights`; at kT = 1 the proposal
        is the target and this is plain Monte Carlo.

        Parameters
        ----------
        n_samples : int
            Number of proposal draws.
        seed : int
            Seed of the ``numpy.random.default_rng`` stream (fixed by default so the
            reference is reproducible).

        Returns
        -------
        probabilities : numpy.ndarray, shape ``(n_components,)``
        standard_error : numpy.ndarray, shape ``(n_components,)``
            Delta-method standard error of each estimate.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
        rng = np.random.default_rng(seed)
        pi = self.mode_weights
        x = self._draw(int(n_samples), rng.random(n_samples), rng.standard_normal((n_samples, self.event_shape[0])),
                       pi, self.kT)
        logc = self._component_terms(x)[0]
        log_target = torch.logsumexp(logc, -1) / self.kT
        # log q(x) for the proposal: components with covariance kT Σ_j and weights π_j.
        dim = self.event_shape[0]
        mu, prec, _ = self._params(x)
        d = x[:, None, :] - mu
        quad = (d * torch.einsum("kab,nkb->nka", prec, d)).sum(-1) / self.kT
        log_q_comp = (torch.as_tensor(np.log(pi)) - 0.5 * quad - 0.5 * torch.as_tensor(self._logdet)
                      - 0.5 * dim * math.log(2.0 * math.pi * self.kT))
        log_w = (log_target - torch.logsumexp(log_q_comp, -1)).numpy()
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        labels = logc.argmax(-1).numpy()
        onehot = labels[:, None] == np.arange(self.n_components)
        p = w @ onehot
        se = np.sqrt(np.sum((w[:, None] ** 2) * (onehot - p) ** 2, axis=0))
        return p, se

    def _draw(self, n, u, z, weights, scale) -> torch.Tensor:
        """Mixture draws from uniforms u (n,) and normals z (n, d): float64 CPU tensor (n, d)."""
        u = np.asarray(u, dtype=np.float64).reshape(n)
        z = np.asarray(z, dtype=np.float64).reshape(n, self.event_shape[0])
        comp = np.minimum(np.searchsorted(np.cumsum(weights), u, side="right"), self.n_components - 1)
        x = self.means[comp] + math.sqrt(scale) * np.einsum("nab,nb->na", self._chol[comp], z)
        return torch.as_tensor(x)

    def sample(self, n: int, generator) -> torch.Tensor:
        """Exact independent samples of the mixture (the Boltzmann density at kT = 1).

        Parameters
        ----------
        n : int
            Number of samples. With a ``WalkerRNG`` it must equal ``generator.n_walkers``
            (one sample per walker stream).
        generator : langevin_md.random.WalkerRNG or numpy.random.Generator

        Returns
        -------
        torch.Tensor, shape ``(n, dim)``, float64 on the CPU.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        n = int(n)
        if isinstance(generator, np.random.Generator):
            u, z = generator.random(n), generator.standard_normal((n, self.event_shape[0]))
        elif hasattr(generator, "n_walkers") and hasattr(generator, "normal"):
            if generator.n_walkers != n:
                raise ValueError(
                    f"a WalkerRNG draws one sample per walker: n={n} but the generator has "
                    f"{generator.n_walkers} walkers"
                )
            u = generator.uniform((), dtype=torch.float64).cpu().numpy()
            z = generator.normal(self.event_shape, dtype=torch.float64).cpu().numpy()
        else:
            raise TypeError(
                f"generator must be a langevin_md.random.WalkerRNG or numpy.random.Generator, "
                f"got {type(generator).__name__}"
            )
        return self._draw(n, u, z, self.weights, 1.0)

    def initial_positions(self, n_walkers, generator):
        """Walkers spread evenly over the components: walker i starts at the mean μ_(i mod K).

        ``i`` is the walker's global index (``generator.walker_indices``), so a shard starts
        its walkers where the full run does. No random draw and no use of the weights: a
        sampler that never leaves its start reports equal weights, not the true ones. Exact
        draws are :meth:`exact_samples`, used only when asked for.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        which = walker_indices(generator, n_walkers) % self.n_components
        return torch.as_tensor(self.means[which].copy())

    def exact_samples(self, n_walkers, generator):
        """Exact draws of the target, one per walker from its own stream (:meth:`sample`).

        Only at kT = 1, where the Boltzmann density is the mixture itself; at other kT the
        tempered density is not a Gaussian mixture and this raises ``ValueError``.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        if self.kT != 1.0:
            raise ValueError(
                f"initial_positions=\"exact\": GaussianMixture draws exactly only at kT = 1, where "
                f"the Boltzmann density is the mixture; at kT={self.kT:g} the tempered density "
                "exp(-U/kT) is not a Gaussian mixture. Leave initial_positions unset for the "
                "documented start (walker i at component mean i mod n_components)")
        return self.sample(int(n_walkers), generator)

    def __repr__(self):
        return (f"GaussianMixture(n_components={self.n_components}, dim={self.event_shape[0]}, "
                f"kT={self.kT:g})")


def _parse_covariances(cov, n_comp: int, dim: int) -> np.ndarray:
    """Covariances in any accepted form -> validated array (n_comp, dim, dim)."""
    if isinstance(cov, (list, tuple)):
        entries = list(cov)
    elif np.ndim(cov) == 0:
        entries = [cov] * n_comp
    else:
        entries = list(np.asarray(cov, dtype=np.float64))
    if len(entries) != n_comp:
        raise ValueError(
            f"covariances must be a scalar or have one entry per component ({n_comp}), got {len(entries)} entries"
        )
    out = np.empty((n_comp, dim, dim))
    for j, c in enumerate(entries):
        c = np.asarray(c, dtype=np.float64)
        if c.ndim == 0:
            out[j] = check_positive(f"covariances[{j}]", float(c)) * np.eye(dim)
        elif c.shape == (dim,):
            for v in c:
                check_positive(f"covariances[{j}] (a diagonal)", v)
            out[j] = np.diag(c)
        elif c.shape == (dim, dim):
            if not np.all(np.isfinite(c)) or not np.allclose(c, c.T, rtol=1e-12, atol=1e-12):
                raise ValueError(f"covariances[{j}] must be a finite symmetric matrix, got {c.tolist()}")
            try:
                np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                raise ValueError(f"covariances[{j}] must be positive definite, got {c.tolist()}") from None
            out[j] = 0.5 * (c + c.T)
        else:
            raise ValueError(
                f"covariances[{j}] must be a scalar, shape ({dim},) or ({dim}, {dim}), got shape {c.shape}"
            )
    return out
