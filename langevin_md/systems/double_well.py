"""Quartic double well: the target for mode-hopping and first-passage tests."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate

from .base import (ExactMarginal, System, check_axis, check_edges, check_positive, per_coordinate,
                   walker_indices)

# Integrals are truncated where exp(−(U − U_min)/kT) < exp(−_TAIL); the neglected mass is
# far below float64 resolution of the results.
_TAIL = 60.0


class DoubleWell(System):
    """A double well in x₁ with harmonic transverse coordinates.

    .. math::

        U(x) = b\\,(x_1^2 - 1)^2 + t\\,x_1 + \\tfrac12 \\sum_{i=2}^{d} x_i^2

    with barrier height ``b`` and tilt ``t``. At ``t = 0`` the minima are x₁ = ±1, the
    barrier top is x₁ = 0 with height ``b`` above the minima, and each well holds exactly
    half of the Boltzmann mass. A positive tilt lowers the left well (x₁ < 0).

    The density factorises: x₁ follows p₁(x₁) ∝ exp(−U₁(x₁)/kT) with
    U₁ = b (x₁² − 1)² + t x₁, and every transverse coordinate is exactly N(0, kT). The
    methods below give the exact x₁ marginal, mode weights and first-passage times by
    one-dimensional quadrature (double precision, relative error ≲ 1e-9).

    Runs start with the walkers spread evenly over the two minima (:meth:`initial_positions`),
    whatever the tilt. Draws of the target (:meth:`exact_samples`) are a start only when
    asked for, ``initial_positions="exact"``.

    Parameters
    ----------
    dim : int
        Number of coordinates d ≥ 1; ``event_shape = (dim,)``.
    barrier : float
        Barrier height b (energy), positive.
    kT : float
        Thermal energy, positive.
    tilt : float, optional
        Linear tilt t (energy / length) of the x₁ potential. Two wells exist only while
        |t| < 8b / (3√3); larger tilts raise ``ValueError``.
    masses : float or array of shape (dim,), optional
        Masses for the underdamped and Brownian schemes (default 1).
    """

    def __init__(self, dim: int = 1, barrier: float = 3.0, kT: float = 1.0, tilt: float = 0.0, masses=1.0):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.event_shape = (int(dim),)
        self.barrier = check_positive("barrier", barrier)
        self.kT = check_positive("kT", kT)
        try:
            self.tilt = float(tilt)
        except (TypeError, ValueError):
            raise ValueError(f"tilt must be a number, got {tilt!r}") from None
        limit = 8.0 * self.barrier / (3.0 * math.sqrt(3.0))
        if not math.isfinite(self.tilt) or abs(self.tilt) >= limit:
            raise ValueError(
                f"tilt must satisfy |tilt| < 8*barrier/(3*sqrt(3)) = {limit:.6g} so that two wells "
                f"exist, got {tilt!r}"
            )
        self.masses = per_coordinate("masses", masses, dim)
        # Stationary points of U₁: roots of 4b x³ − 4b x + t, sorted (left min, top, right min).
        roots = np.sort(np.roots([4.0 * self.barrier, 0.0, -4.0 * self.barrier, self.tilt]).real)
        self._stationary = roots
        self._quad: dict = {}

    # ----------------------------------------------------------------- energy and forces
    def _params(self, x):
        return self._as_tensors(x, "params", self.barrier, self.tilt)

    def _energy_and_forces(self, x):
        b, t = self._params(x)
        x1 = x[:, 0]
        s = x1 * x1 - 1.0
        rest = x[:, 1:]
        energy = b * s * s + t * x1 + 0.5 * (rest * rest).sum(-1)
        f1 = -(4.0 * b * x1 * s + t)
        forces = torch.cat([f1[:, None], -rest], dim=1)
        return energy, forces

    # ----------------------------------------------------------------- the x₁ marginal
    def potential_1d(self, x1) -> np.ndarray:
        """U₁(x₁) = b (x₁² − 1)² + t x₁ on a numpy array (any shape), in energy units."""
        x1 = np.asarray(x1, dtype=np.float64)
        return self.barrier * (x1 * x1 - 1.0) ** 2 + self.tilt * x1

    @property
    def minima(self) -> np.ndarray:
        """x₁ positions of the left and right minima, shape ``(2,)`` (±1 when untilted)."""
        return self._stationary[[0, 2]].copy()

    @property
    def barrier_top(self) -> float:
        """x₁ of the barrier top (the local maximum of U₁), the dividing point of the modes."""
        return float(self._stationary[1])

    def _u_min(self) -> float:
        return float(self.potential_1d(self.minima).min())

    def _weight(self, x1):
        """exp(−(U₁ − U₁,min)/kT): the unnormalised marginal, overflow-free."""
        return np.exp(-(self.potential_1d(x1) - self._u_min()) / self.kT)

    def support(self) -> tuple[float, float]:
        """x₁ interval outside which the marginal density is below e^{-60} of its peak."""
        if "support" not in self._quad:
            lo, hi = self.minima
            step = 0.05
            while (self.potential_1d(lo) - self._u_min()) / self.kT < _TAIL:
                lo -= step
            while (self.potential_1d(hi) - self._u_min()) / self.kT < _TAIL:
                hi += step
            self._quad["support"] = (float(lo), float(hi))
        return self._quad["support"]

    def _integral(self, f, a, b) -> float:
        top = self.barrier_top
        pts = [p for p in (*self.minima, top) if a < p < b]
        val, _ = integrate.quad(f, a, b, points=pts or None, epsabs=1e-14, epsrel=1e-10, limit=200)
        return val

    @property
    def log_normalizer(self) -> float:
        """log ∫ exp(−U₁(x₁)/kT) dx₁ (the x₁ part of log Z)."""
        if "logz" not in self._quad:
            lo, hi = self.support()
            z = self._integral(self._weight, lo, hi)
            self._quad["logz"] = math.log(z) - self._u_min() / self.kT
        return self._quad["logz"]

    def marginal_log_density(self, x1) -> np.ndarray:
        """Exact normalised log density of the x₁ marginal.

        Parameters
        ----------
        x1 : array_like, any shape
            Values of the first coordinate.

        Returns
        -------
        numpy.ndarray, same shape as ``x1``
            log p₁(x₁) = −U₁(x₁)/kT − log Z₁.
        """
        return -self.potential_1d(x1) / self.kT - self.log_normalizer

    def log_density_grid(self, bins: int = 400, extent=None) -> tuple[np.ndarray, np.ndarray]:
        """The exact x₁ marginal on a uniform grid.

        Parameters
        ----------
        bins : int
            Number of grid points.
        extent : (float, float), optional
            Grid range; defaults to :meth:`support`.

        Returns
        -------
        x1 : numpy.ndarray, shape ``(bins,)``
            Grid points.
        log_density : numpy.ndarray, shape ``(bins,)``
            Normalised log p₁ at the grid points.
        """
        lo, hi = self.support() if extent is None else _extent(extent)
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        x = np.linspace(lo, hi, int(bins))
        return x, self.marginal_log_density(x)

    def exact_marginal(self, axis: int, edges):
        """The x₁ marginal by quadrature; None for the other coordinates (not tabulated)."""
        if check_axis(axis, self.event_shape[0]) != 0:
            return None
        e = check_edges(edges)
        grid = np.linspace(e[0], e[-1], 400)
        return ExactMarginal(e, self.bin_probabilities(e), grid, np.exp(self.marginal_log_density(grid)))

    def bin_probabilities(self, edges) -> np.ndarray:
        """Exact probability that x₁ falls in each bin, for histogram comparisons.

        Parameters
        ----------
        edges : array_like, shape ``(n_bins + 1,)``
            Increasing bin edges. Mass outside ``[edges[0], edges[-1]]`` is not counted.

        Returns
        -------
        numpy.ndarray, shape ``(n_bins,)``
        """
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges must be a strictly increasing 1-D array of >= 2 values, got shape {e.shape}")
        # 64-point Gauss–Legendre per bin, each bin split where it is wider than the
        # narrowest well width so the rule stays exact to ~1e-12.
        nodes, w = np.polynomial.legendre.leggauss(64)
        out = np.empty(e.size - 1)
        for i, (a, b) in enumerate(zip(e[:-1], e[1:])):
            n_sub = max(1, int(np.ceil((b - a) / 0.25)))
            sub = np.linspace(a, b, n_sub + 1)
            half = 0.5 * np.diff(sub)[:, None]
            mid = 0.5 * (sub[:-1] + sub[1:])[:, None]
            pts = mid + half * nodes
            out[i] = np.sum(half * w * np.exp(self.marginal_log_density(pts)))
        return out

    @property
    def mode_weights(self) -> np.ndarray:
        """Exact Boltzmann mass of the left (x₁ < x*) and right (x₁ > x*) wells, shape ``(2,)``.

        x* is :attr:`barrier_top`. Both are 1/2 when the well is untilted.
        """
        if "modes" not in self._quad:
            lo, hi = self.support()
            top = self.barrier_top
            left = self._integral(self._weight, lo, top)
            right = self._integral(self._weight, top, hi)
            self._quad["modes"] = np.array([left, right]) / (left + right)
        return self._quad["modes"].copy()

    @property
    def marginal_mean(self) -> float:
        """Exact ⟨x₁⟩ (0 when untilted)."""
        return self._moment(1)

    @property
    def marginal_variance(self) -> float:
        """Exact Var(x₁). Transverse coordinates have variance exactly kT."""
        m = self.marginal_mean
        return self._moment(2) - m * m

    def _moment(self, k: int) -> float:
        key = f"m{k}"
        if key not in self._quad:
            lo, hi = self.support()
            z = self._integral(self._weight, lo, hi)
            self._quad[key] = self._integral(lambda x: x**k * self._weight(x), lo, hi) / z
        return self._quad[key]

    @property
    def mean(self) -> np.ndarray:
        """Exact Boltzmann mean, shape ``(dim,)``."""
        out = np.zeros(self.event_shape[0])
        out[0] = self.marginal_mean
        return out

    @property
    def variance(self) -> np.ndarray:
        """Exact Boltzmann variance per coordinate, shape ``(dim,)``."""
        out = np.full(self.event_shape[0], self.kT)
        out[0] = self.marginal_variance
        return out

    # ----------------------------------------------------------------- kinetics
    def mean_first_passage_time(self, D: float = 1.0, start=None, end=None, n_grid: int = 200_001) -> float:
        """Exact mean first-passage time of x₁ from ``start`` to ``end`` under overdamped dynamics.

        For dx₁ = −(D/kT) U₁'(x₁) dt + sqrt(2D) dW (ULA with step ε is this with D = 1 and
        t = n ε, in the limit ε → 0) and ``start < end``,

        .. math::

            τ = \\frac{1}{D} \\int_{start}^{end} e^{U_1(y)/kT}
                \\int_{-\\infty}^{y} e^{-U_1(z)/kT}\\,dz\\,dy

        (Gardiner, *Handbook of Stochastic Methods*, §5.2.7), mirrored for ``start > end``.
        Computed on a uniform grid with cumulative Simpson quadrature. Kramers' formula is
        not used: it is 6–19 % off at barriers of 3–8 kT.

        Parameters
        ----------
        D : float
            Diffusion coefficient (length² / time), positive.
        start, end : float, optional
            Starting and absorbing x₁; default the left and right minima (−1 and +1 when
            untilted).
        n_grid : int
            Grid points of the quadrature.

        Returns
        -------
        float
            τ in time units (ULA steps × step size when D = 1).
        """
        D = check_positive("D", D)
        a = self.minima[0] if start is None else float(start)
        b = self.minima[1] if end is None else float(end)
        if not (math.isfinite(a) and math.isfinite(b)) or a == b:
            raise ValueError(f"start and end must be distinct finite numbers, got {start!r} and {end!r}")
        sign = 1.0
        if a > b:  # mirror x → −x: the passage is then left-to-right
            sign, a, b = -1.0, -a, -b

        def u(x):
            return self.potential_1d(sign * x) / self.kT

        lo = min(sign * self.support()[0], sign * self.support()[1], a)
        z = np.linspace(lo, b, int(n_grid))
        uz = u(z)
        c = uz.min()
        inner = integrate.cumulative_simpson(np.exp(-(uz - c)), x=z, initial=0.0)
        m = z >= a
        y = z[m]
        # e^{(U−c)} · ∫ e^{−(U−c)}: the constant c cancels, so nothing overflows until the
        # answer itself does.
        log_g = (uz[m] - c) + np.log(np.maximum(inner[m], 1e-300))
        peak = log_g.max()
        return float(np.exp(peak) * integrate.simpson(np.exp(log_g - peak), x=y) / D)

    # ----------------------------------------------------------------- starting points
    def initial_positions(self, n_walkers, generator):
        """Walkers spread evenly over the two minima: walker i at x₁ = ``minima[i mod 2]``
        (left for even i), every transverse coordinate at 0.

        ``i`` is the walker's global index (``generator.walker_indices``). No random draw and
        no use of :attr:`mode_weights`: a sampler that never crosses the barrier reports
        half the walkers in each well, not the true weights. Exact draws are
        :meth:`exact_samples`, used only when asked for.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        which = walker_indices(generator, n_walkers) % 2
        x = torch.zeros((len(which),) + self.event_shape, dtype=torch.float64)
        x[:, 0] = torch.as_tensor(self.minima[which])
        return x

    def exact_samples(self, n_walkers, generator):
        """Draws of the target, one per walker from its own stream.

        x₁ by inversion of the marginal's CDF, tabulated by cumulative Simpson quadrature
        on 20 001 points of :meth:`support` and interpolated linearly (exact to ~1e-9 in
        probability); transverse coordinates exactly N(0, kT).

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        walker_indices(generator, n_walkers)  # checks n_walkers against the generator
        if "cdf" not in self._quad:
            lo, hi = self.support()
            grid = np.linspace(lo, hi, 20_001)
            cdf = integrate.cumulative_simpson(self._weight(grid), x=grid, initial=0.0)
            # Simpson's partial sums can dip by rounding where the density is ~0: keep the
            # table monotone so the inversion is well defined.
            cdf = np.maximum.accumulate(cdf / cdf[-1])
            self._quad["cdf"] = (grid, cdf)
        grid, cdf = self._quad["cdf"]
        u = generator.uniform((), dtype=torch.float64).cpu().numpy()
        z = generator.normal(self.event_shape, dtype=torch.float64).cpu()
        x = z * math.sqrt(self.kT)
        x[:, 0] = torch.as_tensor(np.interp(u, cdf, grid))
        return x

    def __repr__(self):
        return (f"DoubleWell(dim={self.event_shape[0]}, barrier={self.barrier:g}, kT={self.kT:g}, "
                f"tilt={self.tilt:g})")


def _extent(extent) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in extent)
    except (TypeError, ValueError):
        raise ValueError(f"extent must be a pair (low, high), got {extent!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"extent must be finite with low < high, got {extent!r}")
    return lo, hi
