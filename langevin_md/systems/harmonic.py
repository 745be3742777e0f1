"""Harmonic well: the target every exact-law test is written against."""

from __future__ import annotations

import numpy as np
import torch

from .base import ExactMarginal, System, check_axis, check_edges, check_positive, per_coordinate


class Harmonic(System):
    """Independent harmonic wells, U(x) = Σ_i k_i (x_i − μ_i)² / 2.

    The Boltzmann density is Gaussian with mean μ and variance σ_i² = kT / k_i, which makes
    this the reference target for the discrete-time laws of :mod:`langevin_md.laws`
    (derived in ``docs/exact_results.md``).

    Parameters
    ----------
    dim : int
        Number of coordinates; ``event_shape = (dim,)``.
    k : float or array of shape (dim,)
        Spring constants (energy / length²), positive.
    kT : float
        Thermal energy, positive.
    mean : float or array of shape (dim,), optional
        Centre μ of the well (default 0).
    masses : float or array of shape (dim,), optional
        Masses for the underdamped and Brownian schemes (default 1); ω_i² = k_i / m_i.

    Notes
    -----
    Runs start with every walker at μ (:meth:`initial_positions`); exact Gaussian draws
    (:meth:`exact_samples`) are a start only when asked for, ``initial_positions="exact"``.
    """

    def __init__(self, dim: int = 1, k=1.0, kT: float = 1.0, mean=0.0, masses=1.0):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.event_shape = (int(dim),)
        self.kT = check_positive("kT", kT)
        self.k = per_coordinate("k", k, dim)
        self.masses = per_coordinate("masses", masses, dim)
        mu = np.asarray(mean, dtype=np.float64)
        self.mean = np.full(dim, float(mu)) if mu.ndim == 0 else mu
        if self.mean.shape != (dim,):
            raise ValueError(f"mean must be a scalar or have shape ({dim},), got shape {self.mean.shape}")

    @property
    def variance(self) -> np.ndarray:
        """Exact Boltzmann variance kT/k per coordinate, shape ``(dim,)``."""
        return self.kT / self.k

    @property
    def covariance(self) -> np.ndarray:
        """Exact Boltzmann covariance, shape ``(dim, dim)``."""
        return np.diag(self.variance)

    @property
    def omega(self) -> np.ndarray:
        """Angular frequencies sqrt(k/m), shape ``(dim,)``."""
        return np.sqrt(self.k / self.masses)

    def _params(self, x):
        return self._as_tensors(x, "params", self.k, self.mean)

    def _energy_and_forces(self, x):
        k, mu = self._params(x)
        d = x - mu
        f = -k * d
        return -0.5 * (f * d).sum(-1), f

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """∇²U(x), shape ``(n_walkers,)`` (constant for a harmonic well)."""
        k, _ = self._params(x)
        return k.sum().expand(x.shape[0])

    def exact_marginal(self, axis: int, edges) -> ExactMarginal:
        """Coordinate ``axis`` is N(μ_i, kT/k_i) exactly."""
        from scipy import stats

        i = check_axis(axis, self.event_shape[0])
        e = check_edges(edges)
        law = stats.norm(self.mean[i], np.sqrt(self.variance[i]))
        grid = np.linspace(e[0], e[-1], 400)
        return ExactMarginal(e, np.diff(law.cdf(e)), grid, law.pdf(grid))

    def exact_energy_law(self):
        """U/kT ~ Gamma(dim/2, 1): U is kT/2 times a χ² with ``dim`` degrees of freedom."""
        from scipy import stats

        return stats.gamma(a=0.5 * self.event_shape[0], scale=self.kT)

    def initial_positions(self, n_walkers, generator):
        """Every walker at the well's centre μ (no random draw), shape ``(n_walkers, dim)``.

        Exact draws are :meth:`exact_samples`, used only when asked for.
        """
        return torch.as_tensor(self.mean, dtype=torch.float64).expand(int(n_walkers), -1).clone()

    def exact_samples(self, n_walkers, generator):
        """Exact draws N(μ_i, kT/k_i), one per walker from its own stream.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        z = generator.normal(self.event_shape, dtype=torch.float64).cpu()
        return torch.as_tensor(self.mean) + z * torch.as_tensor(np.sqrt(self.variance))

    def __repr__(self):
        return f"Harmonic(dim={self.event_shape[0]}, k={self.k.tolist()}, kT={self.kT:g})"


class FreeParticle(System):
    """No potential, U = 0: free diffusion, the reference for Brownian dynamics.

    Not a normalisable Boltzmann target, so only dynamical laws (⟨Δx²⟩ = 2Dt) apply. Runs
    start with every walker at the origin.

    Parameters
    ----------
    dim : int
    kT : float
    masses : float or array of shape (dim,)
    """

    def __init__(self, dim: int = 1, kT: float = 1.0, masses=1.0):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.event_shape = (int(dim),)
        self.kT = check_positive("kT", kT)
        self.masses = per_coordinate("masses", masses, dim)

    def _energy_and_forces(self, x):
        return x.new_zeros(x.shape[0]), torch.zeros_like(x)

    def initial_positions(self, n_walkers, generator):
        """Every walker at the origin, shape ``(n_walkers, dim)``."""
        return torch.zeros((n_walkers,) + self.event_shape, dtype=torch.float64)
