"""A uniform density in a box with soft walls: the flat target, with exact marginals."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import erf, erfc

from .base import (ExactMarginal, System, check_axis, check_edges, check_positive, per_coordinate,
                   walker_indices)


class UniformBox(System):
    """Uniform density in the box [low, high] kept by soft quadratic walls.

    .. math::

        U(x) = \\frac{s}{2} \\sum_i \\mathrm{dist}_i(x)^2,\\qquad
        \\mathrm{dist}_i(x) = \\max(\\mathrm{low}_i - x_i,\\ 0,\\ x_i - \\mathrm{high}_i)

    U is zero inside the box, so p is constant there; outside, each coordinate has a
    half-Gaussian tail exp(−s d²/(2kT)) with width σ_w = sqrt(kT/s). The density factorises
    over coordinates, and each marginal is known in closed form (:meth:`marginal_density`,
    :meth:`marginal_cdf`, :attr:`mean`, :attr:`variance`), tails included.

    Runs start with every walker at the box centre (:meth:`initial_positions`). Exact draws
    (:meth:`exact_samples`) are a start only when asked for, ``initial_positions="exact"``.

    Parameters
    ----------
    low, high : float or array of shape (dim,)
        Box corners, low < high per coordinate. Scalars for both need ``dim``.
    wall_stiffness : float
        s (energy / length²), positive. The forces outside grow as s·d, so very stiff
        walls need small steps.
    kT : float
        Thermal energy, positive.
    dim : int, optional
        Number of coordinates when ``low`` and ``high`` are both scalars (default 1).
    masses : float or array of shape (dim,), optional
        Masses for the underdamped and Brownian schemes (default 1).
    """

    def __init__(self, low=-1.0, high=1.0, wall_stiffness: float = 1e3, kT: float = 1.0, dim=None, masses=1.0):
        lo = np.atleast_1d(np.asarray(low, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(high, dtype=np.float64))
        if lo.ndim != 1 or hi.ndim != 1:
            raise ValueError(f"low and high must be scalars or 1-D, got shapes {lo.shape} and {hi.shape}")
        n = max(lo.size, hi.size)
        if dim is not None:
            if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
                raise ValueError(f"dim must be a positive integer, got {dim!r}")
            if n > 1 and n != dim:
                raise ValueError(f"dim={dim} disagrees with low/high of length {n}")
            n = int(dim)
        for name, arr in (("low", lo), ("high", hi)):
            if arr.size not in (1, n):
                raise ValueError(f"{name} must be a scalar or have shape ({n},), got shape {arr.shape}")
        lo, hi = np.broadcast_to(lo, (n,)).copy(), np.broadcast_to(hi, (n,)).copy()
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo >= hi):
            raise ValueError(f"need finite low < high in every coordinate, got low={lo.tolist()}, high={hi.tolist()}")
        self.low, self.high = lo, hi
        self.wall_stiffness = check_positive("wall_stiffness", wall_stiffness)
        self.kT = check_positive("kT", kT)
        self.event_shape = (n,)
        self.masses = per_coordinate("masses", masses, n)

    # ----------------------------------------------------------------- energy and forces
    def _params(self, x):
        return self._as_tensors(x, "params", self.low, self.high, self.wall_stiffness)

    def _energy_and_forces(self, x):
        lo, hi, s = self._params(x)
        # Signed distance outside: positive above high, negative below low, zero inside.
        d = torch.clamp(x - hi, min=0.0) - torch.clamp(lo - x, min=0.0)
        return 0.5 * s * (d * d).sum(-1), -s * d

    # ----------------------------------------------------------------- exact marginals
    @property
    def wall_width(self) -> float:
        """σ_w = sqrt(kT / s), the standard deviation of the half-Gaussian tails."""
        return math.sqrt(self.kT / self.wall_stiffness)

    @property
    def tail_mass(self) -> np.ndarray:
        """Probability of lying outside [low_i, high_i] per coordinate, shape ``(dim,)``."""
        t = self.wall_width * math.sqrt(math.pi / 2.0)
        return 2.0 * t / self._z()

    def _z(self) -> np.ndarray:
        """Marginal normaliser per coordinate: (high − low) + 2 σ_w sqrt(π/2)."""
        return (self.high - self.low) + 2.0 * self.wall_width * math.sqrt(math.pi / 2.0)

    def _axis(self, axis):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= axis < self.event_shape[0]:
            raise ValueError(f"axis must be an integer in [0, {self.event_shape[0]}), got {axis!r}")
        return float(self.low[axis]), float(self.high[axis]), float(self._z()[axis])

    def marginal_density(self, x, axis: int = 0) -> np.ndarray:
        """Exact normalised density of coordinate ``axis``.

        Parameters
        ----------
        x : array_like, any shape
        axis : int

        Returns
        -------
        numpy.ndarray, same shape as ``x``
            1/Z inside [low, high], exp(−d²/(2σ_w²))/Z outside, Z = (high − low) + 2σ_w√(π/2).
        """
        lo, hi, z = self._axis(axis)
        x = np.asarray(x, dtype=np.float64)
        d = np.maximum(x - hi, 0.0) + np.maximum(lo - x, 0.0)
        return np.exp(-0.5 * (d / self.wall_width) ** 2) / z

    def marginal_cdf(self, x, axis: int = 0) -> np.ndarray:
        """Exact cumulative distribution of coordinate ``axis``, same shape as ``x``."""
        lo, hi, z = self._axis(axis)
        x = np.asarray(x, dtype=np.float64)
        sw = self.wall_width
        t = sw * math.sqrt(math.pi / 2.0)  # mass of one unnormalised tail
        below = t * erfc((lo - x) / (sw * math.sqrt(2.0)))
        inside = t + (x - lo)
        above = t + (hi - lo) + t * erf((x - hi) / (sw * math.sqrt(2.0)))
        return np.where(x < lo, below, np.where(x <= hi, inside, above)) / z

    def bin_probabilities(self, edges, axis: int = 0) -> np.ndarray:
        """Exact probability of each bin of coordinate ``axis``, shape ``(n_bins,)``."""
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges must be a strictly increasing 1-D array of >= 2 values, got shape {e.shape}")
        return np.diff(self.marginal_cdf(e, axis))

    def exact_marginal(self, axis: int, edges) -> ExactMarginal:
        """Coordinate ``axis``: flat inside the box with Gaussian tails (:meth:`marginal_density`)."""
        i = check_axis(axis, self.event_shape[0])
        e = check_edges(edges)
        grid = np.linspace(e[0], e[-1], 400)
        return ExactMarginal(e, self.bin_probabilities(e, i), grid, self.marginal_density(grid, i))

    def density_grid(self, bins: int = 200, padding: float = 5.0):
        """Exact marginal densities of every coordinate on a grid covering box and tails.

        Parameters
        ----------
        bins : int
            Grid points per coordinate.
        padding : float
            The grid of coordinate i spans [low_i − padding·σ_w, high_i + padding·σ_w].

        Returns
        -------
        grid : numpy.ndarray, shape ``(dim, bins)``
            Grid points per coordinate.
        density : numpy.ndarray, shape ``(dim, bins)``
            Normalised marginal density at the grid points.
        """
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        padding = check_positive("padding", padding, allow_zero=True)
        pad = padding * self.wall_width
        grid = np.stack([np.linspace(lo - pad, hi + pad, int(bins)) for lo, hi in zip(self.low, self.high)])
        dens = np.stack([self.marginal_density(g, i) for i, g in enumerate(grid)])
        return grid, dens

    @property
    def mean(self) -> np.ndarray:
        """Exact mean per coordinate, (low + high)/2 by symmetry, shape ``(dim,)``."""
        return 0.5 * (self.low + self.high)

    @property
    def variance(self) -> np.ndarray:
        """Exact variance per coordinate, shape ``(dim,)``.

        With half-width h and σ = σ_w,
        Var = [2h³/3 + 2σ√(π/2) h² + 4σ² h + 2σ³√(π/2)] / [2h + 2σ√(π/2)],
        which tends to (high − low)²/12 as the walls stiffen.
        """
        h = 0.5 * (self.high - self.low)
        s = self.wall_width
        r = math.sqrt(math.pi / 2.0)
        num = 2.0 * h**3 / 3.0 + 2.0 * s * r * h**2 + 4.0 * s**2 * h + 2.0 * s**3 * r
        return num / (2.0 * h + 2.0 * s * r)

    def initial_positions(self, n_walkers, generator):
        """Every walker at the box centre (low + high)/2 (no random draw).

        A sampler that never moves then reports a point, not a flat density. Exact draws
        are :meth:`exact_samples`, used only when asked for.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        centre = torch.as_tensor(0.5 * (self.low + self.high))
        return centre.expand(len(walker_indices(generator, n_walkers)), -1).clone()

    def exact_samples(self, n_walkers, generator):
        """Exact draws of the target, one per walker from its own stream.

        Each coordinate by inversion of :meth:`marginal_cdf`: one uniform u per coordinate,
        t = u·Z with Z = (high − low) + σ_w √(2π); t below the tail mass a = σ_w √(π/2) lands
        in the lower wall at low − σ_w √2 erfc⁻¹(t/a), above Z − a in the upper wall at
        high + σ_w √2 erfc⁻¹((Z − t)/a), and otherwise inside at low + (t − a).

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, dim)``, float64 on the CPU.
        """
        from scipy.special import erfcinv

        walker_indices(generator, n_walkers)  # checks n_walkers against the generator
        u = generator.uniform(self.event_shape, dtype=torch.float64).cpu().numpy()
        sw = self.wall_width
        a = sw * math.sqrt(math.pi / 2.0)
        z = self._z()
        t = u * z
        # u = 0 exactly (probability 2⁻⁵³) would put a walker at −∞: nudge it into the tail.
        below = np.maximum(t, np.finfo(np.float64).tiny)
        above = z - t
        inside = self.low + (t - a)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(t < a, self.low - sw * math.sqrt(2.0) * erfcinv(below / a),
                         np.where(above < a, self.high + sw * math.sqrt(2.0) * erfcinv(above / a), inside))
        return torch.as_tensor(x)

    def __repr__(self):
        return (f"UniformBox(low={self.low.tolist()}, high={self.high.tolist()}, "
                f"wall_stiffness={self.wall_stiffness:g}, kT={self.kT:g})")
