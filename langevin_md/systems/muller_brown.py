"""The Müller–Brown potential: a two-dimensional surface with three minima and two saddles."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import ExactMarginal, System, check_axis, check_positive, per_coordinate
from .scratch import Scratch

# Müller & Brown (1979), Theor. Chim. Acta 53, 75–93, eq. (9) and its table of parameters.
_A = np.array([-200.0, -100.0, -170.0, 15.0])
_a = np.array([-1.0, -1.0, -6.5, 0.7])
_b = np.array([0.0, 0.0, 11.0, 0.6])
_c = np.array([-10.0, -10.0, -6.5, 0.7])
_X0 = np.array([1.0, 0.0, -0.5, -1.0])
_Y0 = np.array([0.0, 0.5, 1.5, 1.0])

# The three minima (roots of ∇U to |∇U| < 1e-12), deepest first; U = −146.6995, −108.1667,
# −80.7678 at energy_scale 1.
_MINIMA = np.array([
    [-0.558223634633, 1.441725841805],
    [0.623499404931, 0.028037758529],
    [-0.050010822998, 0.466694104872],
])

DEFAULT_EXTENT = ((-1.8, 1.3), (-0.5, 2.2))


class MullerBrown(System):
    """The Müller–Brown potential (Müller & Brown 1979).

    .. math::

        U(x, y) = s \\sum_{k=1}^{4} A_k \\exp\\big(a_k (x - x^0_k)^2
                  + b_k (x - x^0_k)(y - y^0_k) + c_k (y - y^0_k)^2\\big)

    with the standard parameters A = (−200, −100, −170, 15), a = (−1, −1, −6.5, 0.7),
    b = (0, 0, 11, 0.6), c = (−10, −10, −6.5, 0.7), x⁰ = (1, 0, −0.5, −1),
    y⁰ = (0, 0.5, 1.5, 1) and an overall energy scale s (1 by default). ``event_shape``
    is (2,). The minima lie at U ≈ −146.70, −108.17 and −80.77 (times s), so at s/kT = 1
    nearly all mass sits in the deepest well; s ≈ 0.1 or kT ≈ 10 gives visible transitions.

    Exact reference quantities come from tensor-product Gauss–Legendre quadrature on a grid:
    :meth:`density_grid`, :meth:`marginals`, :meth:`mass_fraction`.

    Parameters
    ----------
    kT : float
        Thermal energy, positive.
    energy_scale : float, optional
        Factor s multiplying the standard surface, positive.
    masses : float or array of shape (2,), optional
        Masses for the underdamped and Brownian schemes (default 1).

    References
    ----------
    K. Müller and L. D. Brown, "Location of saddle points and minimum energy paths by a
    constrained simplex optimization procedure", Theor. Chim. Acta 53, 75–93 (1979).
    """

    def __init__(self, kT: float = 1.0, energy_scale: float = 1.0, masses=1.0):
        self.event_shape = (2,)
        self.kT = check_positive("kT", kT)
        self.energy_scale = check_positive("energy_scale", energy_scale)
        self.masses = per_coordinate("masses", masses, 2)
        self._memo: dict = {}
        self._scratch = Scratch()

    # ----------------------------------------------------------------- energy and forces
    def _params(self, x):
        # Columns (4, 1): the four terms run along dim 0, walkers along the contiguous dim 1.
        # Built once per (dtype, device); this runs every step, so nothing is computed before
        # the cache lookup.
        cached = self.__dict__.get("_tensor_cache", {}).get(("params", x.dtype, x.device))
        if cached is not None:
            return cached
        col = lambda v: np.asarray(v, dtype=np.float64)[:, None]  # noqa: E731
        return self._as_tensors(x, "params", *map(col, (self.energy_scale * _A, _a, _b, _c, _X0, _Y0,
                                                          2.0 * _a, 2.0 * _c)))

    def _energy_and_forces(self, x):
        # Terms × walkers layout: every broadcast is a per-row scalar over a contiguous row and
        # the sums over the four terms add whole rows, which is 2-4× cheaper on the CPU than the
        # (n, 4) layout with its stride-0 columns and short inner reductions. Each value is
        # computed with the same operations in the same order as the textbook form
        # A·exp(a·dx·dx + b·dx·dy + c·dy·dy), so results are bitwise those of the (n, 4)
        # formulation (no fused multiply-add: addcmul would change the last bit).
        scratch = self.__dict__.get("_scratch")  # absent on objects pickled by older versions
        if ((x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling()
                or torch.is_inference_mode_enabled() or scratch is None):
            # Autograd cannot see through reused buffers; a compiled graph fuses the
            # temporaries away anyway (mutating held buffers would only add guards); buffers
            # made under inference mode could not be written outside it.
            return self._energy_and_forces_functional(x)
        A, a, b, c, x0, y0, a2, c2 = self._params(x)
        # Intermediates live in reused buffers (see :mod:`.scratch`): allocating five (4, n)
        # temporaries per call cost more than the arithmetic. Only the results are fresh.
        dx, dy, bdx, e, t = scratch.buffers(x, 5, (4, x.shape[0]))
        torch.sub(x[:, 0], x0, out=dx)
        torch.sub(x[:, 1], y0, out=dy)
        torch.mul(b, dx, out=bdx)
        torch.mul(a, dx, out=e).mul_(dx)
        e.add_(torch.mul(bdx, dy, out=t)).add_(torch.mul(c, dy, out=t).mul_(dy))
        terms = e.exp_().mul_(A)
        energy = terms.sum(0)
        forces = torch.empty((x.shape[0], 2), dtype=x.dtype, device=x.device)
        torch.mul(a2, dx, out=t).add_(torch.mul(b, dy, out=dx)).mul_(terms)
        torch.sum(t, 0, out=forces[:, 0])
        torch.mul(c2, dy, out=t).add_(bdx).mul_(terms)
        torch.sum(t, 0, out=forces[:, 1])
        return energy, forces.neg_()

    def _energy_and_forces_functional(self, x):
        """The same arithmetic out of place, for autograd and for compiled graphs."""
        A, a, b, c, x0, y0, a2, c2 = self._params(x)
        dx = x[:, 0] - x0  # (4, n)
        dy = x[:, 1] - y0
        bdx = b * dx
        exponent = (a * dx).mul_(dx).add_(bdx * dy).add_((c * dy).mul_(dy))
        terms = exponent.exp_() * A  # out of place: autograd keeps exp's output
        energy = terms.sum(0)
        fx = (a2 * dx).add_(b * dy).mul_(terms).sum(0).neg_()
        fy = (c2 * dy).add_(bdx).mul_(terms).sum(0).neg_()
        return energy, torch.stack([fx, fy], dim=-1)

    def potential(self, x, y) -> np.ndarray:
        """U on numpy arrays ``x`` and ``y`` of one broadcast shape, in energy units."""
        x = np.asarray(x, dtype=np.float64)[..., None]
        y = np.asarray(y, dtype=np.float64)[..., None]
        dx, dy = x - _X0, y - _Y0
        return self.energy_scale * np.sum(_A * np.exp(_a * dx * dx + _b * dx * dy + _c * dy * dy), axis=-1)

    # ----------------------------------------------------------------- known structure
    @property
    def minima(self) -> np.ndarray:
        """The three minima, deepest first, shape ``(3, 2)``."""
        return _MINIMA.copy()

    @property
    def minimum_energies(self) -> np.ndarray:
        """U at :attr:`minima`, shape ``(3,)``."""
        return self.potential(_MINIMA[:, 0], _MINIMA[:, 1])

    def _hessians(self) -> np.ndarray:
        """Analytic Hessians of U at the minima, shape ``(3, 2, 2)``."""
        out = []
        for mx, my in _MINIMA:
            dx, dy = mx - _X0, my - _Y0
            t = self.energy_scale * _A * np.exp(_a * dx * dx + _b * dx * dy + _c * dy * dy)
            gx, gy = 2 * _a * dx + _b * dy, _b * dx + 2 * _c * dy
            hxx = np.sum(t * (gx * gx + 2 * _a))
            hyy = np.sum(t * (gy * gy + 2 * _c))
            hxy = np.sum(t * (gx * gy + _b))
            out.append([[hxx, hxy], [hxy, hyy]])
        return np.array(out)

    def initial_positions(self, n_walkers, generator):
        """Walkers spread evenly over the three minima (walker i starts in minimum i mod 3).

        Each walker gets Gaussian noise from the local harmonic approximation of its well,
        N(0, kT H⁻¹), so starts are in-basin at any kT.

        Returns
        -------
        torch.Tensor, shape ``(n_walkers, 2)``, float64 on the CPU.
        """
        z = generator.normal((2,), dtype=torch.float64).cpu()
        chol = torch.as_tensor(np.linalg.cholesky(self.kT * np.linalg.inv(self._hessians())))
        which = torch.as_tensor(np.asarray(generator.walker_indices) % 3)
        centre = torch.as_tensor(_MINIMA)[which]
        return centre + torch.einsum("nab,nb->na", chol[which], z)

    # ----------------------------------------------------------------- exact density
    def _cells(self, bins, extent, order):
        nx, ny = _bins(bins)
        (x0, x1), (y0, y1) = _extent2(extent)
        xe = np.linspace(x0, x1, nx + 1)
        ye = np.linspace(y0, y1, ny + 1)
        nodes, w = np.polynomial.legendre.leggauss(order)
        hx, hy = 0.5 * (xe[1] - xe[0]), 0.5 * (ye[1] - ye[0])
        px = (0.5 * (xe[:-1] + xe[1:]))[:, None] + hx * nodes  # (nx, order)
        py = (0.5 * (ye[:-1] + ye[1:]))[:, None] + hy * nodes
        return xe, ye, px, py, hx * w, hy * w

    def _log_cell_mass(self, bins, extent, order: int = 8) -> tuple:
        """log of ∫_cell exp(−(U − U_min)/kT), per cell, shape ``(nx, ny)``."""
        xe, ye, px, py, wx, wy = self._cells(bins, extent, order)
        u_min = self.minimum_energies.min()
        nx, ny = px.shape[0], py.shape[0]
        out = np.empty((nx, ny))
        # Row blocks keep memory at a few MB for fine grids.
        for i in range(nx):
            u = self.potential(px[i][:, None, None, None], py[None, None, :, :])  # (o, 1, ny, o)
            f = np.exp(-(u - u_min) / self.kT) * wx[:, None, None, None] * wy
            out[i] = np.log(np.maximum(f.sum(axis=(0, 1, 3)), 1e-300))
        return xe, ye, out

    def density_grid(self, bins=200, extent=DEFAULT_EXTENT):
        """The normalised Boltzmann density averaged over the cells of a grid.

        Each cell's mass is integrated with 8×8-point Gauss–Legendre quadrature and the
        grid is normalised to total mass 1 over ``extent``; :meth:`mass_fraction` says how
        much mass lies outside it. For the default box that is below 1e-15 for kT/s ≤ 5,
        but 4e-7 at kT/s = 10 and 1e-3 at kT/s = 20: pass a larger ``extent`` when hotter.

        Parameters
        ----------
        bins : int or (int, int)
            Number of cells along x and y.
        extent : ((float, float), (float, float))
            ((x_min, x_max), (y_min, y_max)).

        Returns
        -------
        x : numpy.ndarray, shape ``(nx,)``
            Cell centres along x.
        y : numpy.ndarray, shape ``(ny,)``
            Cell centres along y.
        density : numpy.ndarray, shape ``(nx, ny)``
            Cell-averaged probability density, ``density.sum() * dx * dy == 1``;
            ``density[i, j]`` belongs to ``(x[i], y[j])``.
        """
        xe, ye, logm = self._log_cell_mass(bins, extent)
        mass = np.exp(logm - logm.max())
        mass /= mass.sum()
        area = (xe[1] - xe[0]) * (ye[1] - ye[0])
        return 0.5 * (xe[:-1] + xe[1:]), 0.5 * (ye[:-1] + ye[1:]), mass / area

    def marginals(self, bins=200, extent=DEFAULT_EXTENT):
        """Exact marginal densities of x and y, cell-averaged, normalised over ``extent``.

        Returns
        -------
        x : numpy.ndarray, shape ``(nx,)``
        p_x : numpy.ndarray, shape ``(nx,)``
            Marginal density of x (``p_x.sum() * dx == 1``).
        y : numpy.ndarray, shape ``(ny,)``
        p_y : numpy.ndarray, shape ``(ny,)``
        """
        x, y, dens = self.density_grid(bins, extent)
        dx, dy = x[1] - x[0], y[1] - y[0]
        return x, dens.sum(1) * dy, y, dens.sum(0) * dx

    def exact_marginal(self, axis: int, edges) -> ExactMarginal:
        """Marginal of x (axis 0) or y (axis 1), tabulated by :meth:`marginals` on 120 cells
        over the default extent; ``edges`` is ignored and the cells' edges are returned."""
        i = check_axis(axis, 2)
        x, px, y, py = self.marginals(bins=120)
        g, p = ((x, px), (y, py))[i]
        h = g[1] - g[0]
        cell_edges = np.concatenate([g - h / 2, [g[-1] + h / 2]])
        return ExactMarginal(cell_edges, p * h, g, p)

    def mass_fraction(self, extent=DEFAULT_EXTENT) -> float:
        """Boltzmann probability of the box ``extent``.

        The total is integrated over a box grown from ``extent`` until U exceeds its minimum
        by more than 60 kT all along the boundary, so the neglected mass is < e⁻⁶⁰ relative.
        Far from the minima the fourth (positive) term grows without bound, so such a box
        exists at every kT.

        Returns
        -------
        float in (0, 1]
        """
        (x0, x1), (y0, y1) = _extent2(extent)
        u_min = self.minimum_energies.min()
        bx0, bx1, by0, by1 = min(x0, -1.8), max(x1, 1.3), min(y0, -0.5), max(y1, 2.2)
        t = np.linspace(0.0, 1.0, 801)
        while True:
            xs = np.concatenate([bx0 + (bx1 - bx0) * t, bx0 + (bx1 - bx0) * t, np.full_like(t, bx0), np.full_like(t, bx1)])
            ys = np.concatenate([np.full_like(t, by0), np.full_like(t, by1), by0 + (by1 - by0) * t, by0 + (by1 - by0) * t])
            if (self.potential(xs, ys).min() - u_min) / self.kT > 60.0:
                break
            bx0, bx1, by0, by1 = bx0 - 0.25, bx1 + 0.25, by0 - 0.25, by1 + 0.25
        # Cells of at most ~0.6 of the narrowest well's width (0.016 at kT/s = 1), with
        # 4×4-point Gauss–Legendre each: relative error < 1e-10.
        h = 0.01 * min(2.0, max(1.0, math.sqrt(self.kT / self.energy_scale)))
        big = ((bx0, bx1), (by0, by1))
        inside = self._log_cell_mass((_n(x0, x1, h), _n(y0, y1, h)), ((x0, x1), (y0, y1)), order=4)[2]
        total = self._log_cell_mass((_n(bx0, bx1, h), _n(by0, by1, h)), big, order=4)[2]
        lse = lambda v: v.max() + math.log(np.exp(v - v.max()).sum())  # noqa: E731
        return float(min(1.0, math.exp(lse(inside) - lse(total))))

    def __repr__(self):
        return f"MullerBrown(kT={self.kT:g}, energy_scale={self.energy_scale:g})"


def _n(lo, hi, h) -> int:
    return max(1, int(math.ceil((hi - lo) / h)))


def _bins(bins) -> tuple[int, int]:
    vals = (bins, bins) if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool) else bins
    try:
        nx, ny = vals
    except (TypeError, ValueError):
        raise ValueError(f"bins must be a positive integer or a pair of them, got {bins!r}") from None
    for v in (nx, ny):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bins must be a positive integer or a pair of them, got {bins!r}")
    return int(nx), int(ny)


def _extent2(extent):
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in extent)
    except (TypeError, ValueError):
        raise ValueError(f"extent must be ((x_min, x_max), (y_min, y_max)), got {extent!r}") from None
    if not all(map(math.isfinite, (x0, x1, y0, y1))) or x0 >= x1 or y0 >= y1:
        raise ValueError(f"extent must be finite with min < max on both axes, got {extent!r}")
    return (x0, x1), (y0, y1)
