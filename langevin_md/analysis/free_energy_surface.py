"""Free-energy surfaces F = −kT ln p on one or two features, with bootstrap standard errors.

Samples may carry weights (MBAR weights at a target temperature, from
:meth:`~langevin_md.analysis.mbar.TemperatureMBAR.weights`), so one surface can pool every
rung of a replica-exchange run. Errors come from resampling whole independent chains (walkers
or ladders) with replacement, or from replicate weights the caller supplies (MBAR's own
bootstrap, :meth:`~langevin_md.analysis.mbar.TemperatureMBAR.bootstrap_weights`, which also
re-solves the free energies of the rungs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from .plots import new_figure, save_figure

__all__ = ["FreeEnergySurface", "free_energy_surface", "plot_free_energy_surface"]


@dataclass(frozen=True)
class FreeEnergySurface:
    """A binned free-energy surface.

    Attributes
    ----------
    edges : tuple of numpy.ndarray
        One array of bin edges per feature, shapes ``(n_bins_i + 1,)`` (feature units).
    free_energy : numpy.ndarray, shape ``(n_bins_1[, n_bins_2])``
        F = −kT ln p, shifted so that its minimum is 0 (``unit``); NaN in empty bins.
    standard_error : numpy.ndarray, same shape
        Bootstrap standard error of F − F_ref, where F_ref = −kT ln(total probability), so
        that it does not depend on which bin happens to be lowest; NaN where a resample left
        the bin empty.
    probability : numpy.ndarray, same shape
        Weighted fraction of samples in each bin.
    unit : str
        "kJ/mol" for molecular systems, "kT" for reduced ones.
    labels : tuple of str
        Feature names, for plots.
    """

    edges: tuple
    free_energy: np.ndarray
    standard_error: np.ndarray
    probability: np.ndarray
    unit: str
    labels: tuple

    @property
    def centers(self) -> tuple:
        """Bin centres, one array ``(n_bins_i,)`` per feature."""
        return tuple(0.5 * (e[1:] + e[:-1]) for e in self.edges)


def _histogram(x: np.ndarray, w: np.ndarray, edges: tuple) -> np.ndarray:
    h, _ = np.histogramdd(x, bins=edges, weights=w)
    return h / h.sum()


def free_energy_surface(features, chains=None, weights=None, replicate_weights=None, bins=60,
                        extent: Optional[Sequence] = None, periodic: bool = False, kT: float = 1.0,
                        unit: str = "kT", labels: Sequence[str] = (), n_bootstrap: int = 100,
                        seed: int = 0) -> FreeEnergySurface:
    """Free energy F = −kT ln p on a 1-D or 2-D grid, with bootstrap errors.

    Parameters
    ----------
    features : array_like, shape ``(n_samples,)`` or ``(n_samples, d)``, d ∈ {1, 2}
        Feature values (e.g. φ and ψ in degrees).
    chains : array_like of int, shape ``(n_samples,)``, optional
        Independent chain of each sample (walker or ladder), resampled whole. Required unless
        ``replicate_weights`` is given.
    weights : array_like, shape ``(n_samples,)``, optional
        Non-negative sample weights (e.g. MBAR weights); default equal.
    replicate_weights : array_like, shape ``(n_bootstrap, n_samples)``, optional
        Weights of each bootstrap replicate (e.g. from
        :meth:`~langevin_md.analysis.mbar.TemperatureMBAR.bootstrap_weights`); replaces the
        chain bootstrap.
    bins : int or sequence of int
        Bins per feature.
    extent : sequence of (low, high), optional
        Range of each feature; default the data's range (periodic: must be given, e.g.
        ``[(-180, 180), (-180, 180)]``).
    periodic : bool
        Whether the features are angles wrapped into ``extent``.
    kT : float
        Thermal energy in ``unit`` (e.g. 2.494 kJ/mol at 300 K; 1 for reduced units).
    unit : str
        Unit of F and kT.
    labels : sequence of str
        Feature names.
    n_bootstrap : int
        Chain resamples (ignored with ``replicate_weights``).
    seed : int

    Returns
    -------
    FreeEnergySurface
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] not in (1, 2) or x.shape[0] < 2:
        raise ValueError(f"features must have shape (n_samples,) or (n_samples, d) with d = 1 or 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    n, d = x.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum, got shape {w.shape}")
    kT = float(kT)
    if not np.isfinite(kT) or kT <= 0:
        raise ValueError(f"kT must be positive, got {kT!r}")
    nb = [int(bins)] * d if np.ndim(bins) == 0 else [int(b) for b in bins]
    if len(nb) != d or min(nb) < 2:
        raise ValueError(f"bins must be an integer >= 2 or one per feature ({d}), got {bins!r}")
    if extent is None:
        if periodic:
            raise ValueError("periodic features need an explicit extent, e.g. [(-180, 180)] * d")
        extent = [(x[:, i].min(), x[:, i].max()) for i in range(d)]
    extent = [tuple(map(float, e)) for e in extent]
    if len(extent) != d or any(not lo < hi for lo, hi in extent):
        raise ValueError(f"extent must give (low, high) with low < high for each of {d} features, got {extent}")
    if periodic:
        lo = np.array([e[0] for e in extent])
        span = np.array([e[1] - e[0] for e in extent])
        x = lo + np.mod(x - lo, span)
    edges = tuple(np.linspace(lo, hi, k + 1) for (lo, hi), k in zip(extent, nb))

    if replicate_weights is None:
        if chains is None:
            raise ValueError("chains (one id per sample) are needed for the bootstrap; or pass replicate_weights")
        c = np.asarray(chains)
        if c.shape != (n,):
            raise ValueError(f"chains must have shape ({n},), got {c.shape}")
        ids, inverse = np.unique(c, return_inverse=True)
        if ids.size < 2:
            raise ValueError("a bootstrap over chains needs >= 2 independent chains")
        rng = np.random.default_rng(seed)
        mult = np.stack([np.bincount(rng.integers(ids.size, size=ids.size), minlength=ids.size)
                         for _ in range(int(n_bootstrap))])
        reps = mult[:, inverse] * w
    else:
        reps = np.asarray(replicate_weights, dtype=np.float64)
        if reps.ndim != 2 or reps.shape[1] != n or reps.shape[0] < 2:
            raise ValueError(f"replicate_weights must have shape (n_bootstrap >= 2, {n}), got {reps.shape}")

    p = _histogram(x, w, edges)
    with np.errstate(divide="ignore"):
        f = -kT * np.log(p)
        boot = np.stack([-kT * np.log(_histogram(x, r, edges)) for r in reps])
    finite = np.isfinite(boot)
    # Standard error over the replicates that populated the bin; NaN if fewer than two did.
    cnt = finite.sum(0)
    b0 = np.where(finite, boot, 0.0)
    mean = b0.sum(0) / np.maximum(cnt, 1)
    var = (np.where(finite, (boot - mean) ** 2, 0.0)).sum(0) / np.maximum(cnt - 1, 1)
    se = np.where(cnt >= 2, np.sqrt(var), np.nan)
    f = np.where(np.isfinite(f), f, np.nan)
    f = f - np.nanmin(f)
    se = np.where(np.isfinite(f), se, np.nan)
    labels = tuple(labels) or tuple(f"feature {i}" for i in range(d))
    return FreeEnergySurface(edges, f, se, p, unit, labels)


def plot_free_energy_surface(fes: FreeEnergySurface, path, title: str = "Free-energy surface",
                             max_free_energy: Optional[float] = None) -> str:
    """Draw a surface with its uncertainty (PNG).

    1-D: F against the feature with a ±2 s.e. band. 2-D: F as filled contours (left) and its
    standard error on the same grid (right), both masked where F exceeds ``max_free_energy``
    (default: 25 kT-equivalents or the largest F) or the bin is empty.
    """

    f, se = fes.free_energy, fes.standard_error
    if fes.free_energy.ndim == 1:
        fig, (ax,) = new_figure(1, panel=(6.0, 3.8))
        c = fes.centers[0]
        ax.plot(c, f, color="C0", lw=1.5, label="F")
        ax.fill_between(c, f - 2 * se, f + 2 * se, color="C0", alpha=0.3, label="±2 s.e. (bootstrap)")
        ax.set_xlabel(fes.labels[0])
        ax.set_ylabel(f"F [{fes.unit}]")
        ax.set_title(title)
        ax.legend(fontsize=8)
        return save_figure(fig, path)
    top = np.nanmax(f) if max_free_energy is None else float(max_free_energy)
    shown = np.where(f <= top, f, np.nan)
    fig, (ax, bx) = new_figure(2, ncols=2, panel=(5.2, 4.2))
    ex = [fes.edges[0][0], fes.edges[0][-1], fes.edges[1][0], fes.edges[1][-1]]
    im = ax.imshow(shown.T, origin="lower", extent=ex, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label=f"F [{fes.unit}]")
    levels = np.arange(0, np.nanmax(shown) + 1e-9, max(np.nanmax(shown) / 8, 1e-9))
    if levels.size > 1:
        ax.contour(*fes.centers, shown.T, levels=levels, colors="white", linewidths=0.5)
    ax.set_title(title)
    err = np.where(np.isfinite(shown), se, np.nan)
    # A few barely visited bins have huge errors; cap the colour scale so the rest stays legible.
    cap = np.nanpercentile(err, 95) if np.isfinite(err).any() else None
    im2 = bx.imshow(err.T, origin="lower", extent=ex, aspect="auto", cmap="magma", vmax=cap)
    fig.colorbar(im2, ax=bx, label=f"standard error of F [{fes.unit}]", extend="max")
    bx.set_title("Uncertainty (bootstrap s.e.)")
    for a in (ax, bx):
        a.set_xlabel(fes.labels[0])
        a.set_ylabel(fes.labels[1])
    return save_figure(fig, path)
