"""PNG plots for analysis reports (matplotlib, Agg canvas).

Every function draws one figure and writes it to ``path``; it uses matplotlib's object API
with an Agg canvas, so it neither needs a display nor changes the user's pyplot backend.
Observables are given as arrays of shape ``(n_frames, n_walkers)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..safe_paths import write_via_temp

__all__ = [
    "new_figure", "save_figure",
    "Observable",
    "plot_traces",
    "plot_autocorrelations",
    "plot_running_means",
    "plot_histograms",
    "plot_ramachandran",
    "plot_acceptance",
]

#: Walkers drawn in trace and running-mean plots (more become unreadable).
MAX_WALKERS_DRAWN = 8
#: Points per line: long chains are strided down to this many for drawing only.
MAX_POINTS = 4000


class Observable:
    """A named series ``(n_frames, n_walkers)`` with its unit and period (None: linear)."""

    def __init__(self, name: str, values: np.ndarray, unit: str = "", period: Optional[float] = None,
                 steps: Optional[np.ndarray] = None):
        self.name = name
        self.values = np.asarray(values, dtype=np.float64)
        self.unit = unit
        self.period = period
        self.steps = steps

    @property
    def label(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name


def new_figure(n_panels: int, ncols: int = 2, panel=(5.0, 3.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def save_figure(fig, path) -> str:
    fig.tight_layout()
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=100))  # never through a link
    return str(path)


def _x(obs: Observable, n: int) -> tuple[np.ndarray, str]:
    if obs.steps is not None and len(obs.steps) == n:
        return np.asarray(obs.steps), "step"
    return np.arange(n), "frame"


def _stride(n: int) -> int:
    return max(1, n // MAX_POINTS)


def plot_traces(observables: Sequence[Observable], path, title: str = "") -> str:
    """Value against step for up to :data:`MAX_WALKERS_DRAWN` walkers, one panel per observable."""
    fig, axes = new_figure(len(observables))
    for ax, obs in zip(axes, observables):
        n, w = obs.values.shape
        x, xlabel = _x(obs, n)
        s = _stride(n)
        for j in range(min(w, MAX_WALKERS_DRAWN)):
            style = dict(marker=".", ms=1.5, lw=0) if obs.period else dict(lw=0.7)
            ax.plot(x[::s], obs.values[::s, j], alpha=0.8, label=f"walker {j}", **style)
        ax.set_xlabel(xlabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.set_ylabel(obs.label)
        ax.set_title(f"{obs.name}: trace" + (f" (first {MAX_WALKERS_DRAWN} of {w} walkers)" if w > MAX_WALKERS_DRAWN else ""))
        if min(w, MAX_WALKERS_DRAWN) <= 4:
            ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_autocorrelations(observables: Sequence[Observable], taus: Sequence[float], path,
                          frame_spacing: float = 1.0) -> str:
    """Pooled autocorrelation ρ(t) per observable, with τ (integrated) marked.

    ``frame_spacing`` converts frames to sampler steps on the x axis (``record_every``).
    """
    from .autocorrelation import autocorrelation

    fig, axes = new_figure(len(observables))
    for ax, obs, tau in zip(axes, observables, taus):
        n = obs.values.shape[0]
        max_lag = int(min(n - 1, max(10, math.ceil(6 * tau if np.isfinite(tau) else n // 4))))
        try:
            rho = autocorrelation(obs.values, max_lag=max_lag, pooled=True, period=obs.period)
        except ValueError:  # constant series
            ax.text(0.5, 0.5, "constant: no autocorrelation", ha="center", transform=ax.transAxes)
            continue
        lags = np.arange(rho.size) * frame_spacing
        ax.plot(lags, rho, lw=1.2, color="C0", label="ρ(t), walkers pooled")
        ax.axhline(0.0, color="grey", lw=0.6)
        if np.isfinite(tau):
            ax.axvline(tau * frame_spacing, color="C3", ls="--", lw=1.2,
                       label=f"τ = {tau * frame_spacing:.3g} steps")
            ax.plot(lags, np.exp(-lags / (frame_spacing * max(tau, 1e-12) / 2)), color="C3", lw=0.6, alpha=0.5,
                    label="exp(−2t/τ) (same τ if exponential)")
        ax.set_xlabel("lag [steps]")
        ax.set_ylabel("autocorrelation")
        ax.set_ylim(-0.3, 1.05)
        ax.set_title(f"{obs.name}: autocorrelation")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_running_means(observables: Sequence[Observable], path, exact: Optional[dict] = None) -> str:
    """Cumulative mean per walker (and pooled), with the exact mean where known.

    Angles are averaged circularly (the running circular mean).
    """
    exact = exact or {}
    fig, axes = new_figure(len(observables))
    for ax, obs in zip(axes, observables):
        v = obs.values
        n, w = v.shape
        x, xlabel = _x(obs, n)
        count = np.arange(1, n + 1)[:, None]
        if obs.period:
            k = 2 * np.pi / obs.period
            c, s_ = np.cumsum(np.cos(k * v), 0), np.cumsum(np.sin(k * v), 0)
            run = np.arctan2(s_, c) / k
            pooled = np.arctan2(s_.sum(1), c.sum(1)) / k
        else:
            run = np.cumsum(v, 0) / count
            pooled = run.mean(1)
        st = _stride(n)
        for j in range(min(w, MAX_WALKERS_DRAWN)):
            ax.plot(x[::st], run[::st, j], lw=0.7, alpha=0.6)
        ax.plot(x[::st], pooled[::st], color="k", lw=1.8, label="all walkers")
        if obs.name in exact:
            ax.axhline(exact[obs.name], color="C3", ls="--", lw=1.2, label="exact")
        ax.set_xlabel(xlabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.set_ylabel(f"running mean of {obs.label}")
        ax.set_title(f"{obs.name}: running mean" + (" (circular)" if obs.period else ""))
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_histograms(observables: Sequence[Observable], path, exact: Optional[dict] = None,
                    bins: int = 60) -> str:
    """Pooled histogram (as a density) per observable, with the exact density where known.

    ``exact`` maps an observable's name to ``(x, density)`` arrays.
    """
    exact = exact or {}
    fig, axes = new_figure(len(observables))
    for ax, obs in zip(axes, observables):
        v = obs.values.ravel()
        ref = exact.get(obs.name)
        rng = (float(np.min(ref[0])), float(np.max(ref[0]))) if ref is not None else None
        if obs.period and ref is None:
            rng = (-obs.period / 2, obs.period / 2)
        ax.hist(v, bins=bins, range=rng, density=True, color="C0", alpha=0.55, label="samples")
        if ref is not None:
            ax.plot(ref[0], ref[1], color="C3", lw=1.5, label="exact")
        ax.set_xlabel(obs.label)
        ax.set_ylabel("probability density")
        ax.set_title(f"{obs.name}: distribution")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_ramachandran(phi: np.ndarray, psi: np.ndarray, kT: float, path, states=None,
                      bins: int = 60, energy_unit: str = "kJ/mol") -> str:
    """Ramachandran free-energy surface F(φ, ψ) in kJ/mol, with state cores outlined."""
    from matplotlib.patches import Rectangle

    from .molecular import ramachandran_free_energy

    surf = ramachandran_free_energy(phi, psi, kT, bins)
    fig, (ax,) = new_figure(1, panel=(6.4, 5.4))
    deg = np.degrees
    f = np.where(np.isfinite(surf.free_energy), surf.free_energy, np.nan)
    mesh = ax.pcolormesh(deg(surf.phi_edges), deg(surf.psi_edges), f.T, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label=f"free energy [{energy_unit}] (white: not visited)")
    from matplotlib import patheffects

    # White on a dark outline reads over both the colour map and the white unvisited area.
    outline = [patheffects.withStroke(linewidth=3, foreground="k")]
    for core in states or ():
        for (p0, p1) in _arcs(core.phi):
            for (q0, q1) in _arcs(core.psi):
                box = Rectangle((p0, q0), p1 - p0, q1 - q0, fill=False, ec="w", lw=1.2, ls="--")
                box.set_path_effects(outline)
                ax.add_patch(box)
        ax.text(*_label_point(core), core.name, color="w", fontsize=9, ha="center", va="center",
                fontweight="bold", path_effects=outline)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-180, 181, 60))
    ax.set_xlabel("φ [degrees]")
    ax.set_ylabel("ψ [degrees]")
    ax.set_title(f"Ramachandran free energy ({np.size(phi)} frames)")
    return save_figure(fig, path)


def _arcs(rng):
    lo, hi = rng
    return [(lo, hi)] if lo <= hi else [(lo, 180.0), (-180.0, hi)]


def _label_point(core):
    def mid(lo, hi):
        if lo <= hi:
            return 0.5 * (lo + hi)
        m = 0.5 * (lo + hi + 360.0)
        return m - 360.0 if m > 180 else m

    return mid(*core.phi), mid(*core.psi)


def plot_acceptance(acceptance_rate: np.ndarray, path, low: float = 0.2) -> str:
    """Acceptance rate per walker (bars), with the warning threshold."""
    acc = np.asarray(acceptance_rate, dtype=np.float64)
    fig, (ax,) = new_figure(1, panel=(max(5.0, min(12.0, 0.12 * acc.size + 3)), 3.2))
    idx = np.arange(acc.size)
    colors = np.where(acc < low, "C3", "C0")
    ax.bar(idx, acc, color=colors, width=0.85)
    ax.axhline(low, color="C3", ls="--", lw=1, label=f"{low:g}: too low")
    ax.axhline(acc.mean(), color="k", lw=1, label=f"mean {acc.mean():.3f}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("walker")
    ax.set_ylabel("acceptance rate")
    ax.set_title("Metropolis acceptance per walker")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)
