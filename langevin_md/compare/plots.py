"""Plots of a step-size sweep (:func:`~langevin_md.compare.core.step_size_sweep`)."""

from __future__ import annotations

import math
import os

import numpy as np

from ..safe_paths import write_via_temp
from .core import Z_MAX, Comparison

_VERDICT_COLOURS = {"ok": "#2a9d8f", "biased": "#e9c46a", "stuck": "#8d99ae", "collapsed": "#f4a261",
                    "diverged": "#e63946"}
#: Diverged step sizes have no ESS and no bias z: they are drawn in a band at the bottom of the
#: efficiency panel and at the top of the bias panel, at these heights (fractions of the axes).
_DIVERGED_BAND = 0.05


def plot_step_size_sweep(sweep: Comparison, path, system=None) -> str:
    """Draw a step-size sweep: efficiency, bias and the sampled law at three step sizes.

    The figure is :func:`step_size_sweep_figure`; this writes it as a PNG.

    Parameters
    ----------
    sweep : Comparison
        From :func:`step_size_sweep`.
    path : str or PathLike
        PNG to write.
    system : System, optional
        For the exact density in panel 3.

    Returns
    -------
    str
        The path written.
    """
    fig = step_size_sweep_figure(sweep, system)
    path = os.fspath(path)
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    return path


def step_size_sweep_figure(sweep: Comparison, system=None):
    """The step-size sweep figure (a ``matplotlib.figure.Figure``, not shown or saved).

    Panels: (1) ESS per 1000 force evaluations against step size; (2) the largest |bias z|
    against step size with the |z| = 5 line; (3) histograms of the observable at the
    smallest step, the most efficient unbiased step and the largest step, over the exact
    marginal density when ``system`` knows it. Points are coloured by verdict. A diverged
    step size has neither an ESS nor a bias: it is an ``x`` in a band labelled "diverged" at
    the bottom of panel 1 and at the top of panel 2, never at a height that reads as a value.
    Panels 1 and 2 share a log step-size axis whose labels are decades only (minor ticks are
    unlabelled so that they cannot overlap), spanning at least one whole decade.

    Parameters
    ----------
    sweep : Comparison
        From :func:`step_size_sweep`.
    system : System, optional
        For the exact density in panel 3.

    Returns
    -------
    matplotlib.figure.Figure
        Three axes, in panel order (``fig.axes[:3]``).
    """
    # Lazy: matplotlib is heavy and only drawing needs it. A bare Figure (no pyplot) draws
    # with the Agg canvas whatever backend the caller's session selected.
    from matplotlib.figure import Figure

    rows = sweep.rows
    if not rows or any(r.step_size is None for r in rows):
        raise ValueError("plot_step_size_sweep needs the rows of step_size_sweep (each with a step size)")
    steps = np.array([r.step_size for r in rows], dtype=np.float64)
    diverged = np.array([r.diverged for r in rows])
    fig = Figure(figsize=(15, 4.4))
    axes = [fig.add_subplot(1, 3, 1)]
    axes.append(fig.add_subplot(1, 3, 2, sharex=axes[0]))
    axes.append(fig.add_subplot(1, 3, 3))
    _efficiency_panel(axes[0], rows, steps, diverged)
    _bias_panel(axes[1], rows, steps, diverged)
    _step_axis(axes[0], steps)
    _histogram_panel(axes[2], sweep, rows, system)
    fig.suptitle(rows[0].name.split(" ")[0] + f": {sweep.n_force_evals} force evaluations per walker, "
                 f"{sweep.n_walkers} walkers")
    fig.tight_layout()
    return fig


def _colour(row) -> str:
    return _VERDICT_COLOURS.get(row.verdict, "k")


def _diverged_band(ax, steps: np.ndarray, diverged: np.ndarray, height: float) -> None:
    """x markers at ``height`` (axes fraction) for the diverged steps, with a "diverged" label."""
    if not diverged.any():
        return
    band = ax.get_xaxis_transform()  # x in data, y in axes fraction
    xs = steps[diverged]
    ax.scatter(xs, np.full(xs.size, height), transform=band, marker="x", s=60, color=_VERDICT_COLOURS["diverged"],
               zorder=3, clip_on=False, label="diverged (no value)")
    # The label goes beside the group, on the side with room: left of the first diverged step
    # unless that step is the smallest of the sweep.
    left = xs.min() > steps.min()
    x = xs.min() / 1.25 if left else xs.max() * 1.25
    ax.text(x, height, "diverged", transform=band, ha="right" if left else "left", va="center", fontsize=8,
            color=_VERDICT_COLOURS["diverged"])


def _efficiency_panel(ax, rows, steps, diverged) -> None:
    eff = np.array([np.nan if r.diverged else r.ess_per_1000_evaluations for r in rows], dtype=np.float64)
    eff = np.where(np.isfinite(eff), eff, 0.0)
    live = ~diverged
    ax.plot(steps[live], eff[live], "-", color="0.6", zorder=1)
    for s, e, r in zip(steps[live], eff[live], [r for r in rows if not r.diverged]):
        ax.scatter([s], [e], color=_colour(r), marker="o", s=60, zorder=2, label=r.verdict)
    top = float(eff[live].max()) if live.any() and eff[live].max() > 0 else 1.0
    # Data 0 sits above the diverged band, so a diverged step never looks like ESS 0 (or any value).
    hi = 1.1 * top
    ax.set_ylim(-hi * 2 * _DIVERGED_BAND / (1 - 2 * _DIVERGED_BAND), hi)
    ax.axhline(0.0, color="0.85", lw=0.8, zorder=0)
    _diverged_band(ax, steps, diverged, _DIVERGED_BAND)
    ax.set_xlabel("step size")
    ax.set_ylabel("ESS per 1000 force evaluations")
    ax.set_title("efficiency")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=8)


def _bias_panel(ax, rows, steps, diverged) -> None:
    zs = np.array([np.nan if r.diverged else r.max_abs_z for r in rows], dtype=np.float64)
    shown = np.isfinite(zs)
    for s, zv, r in zip(steps[shown], zs[shown], [r for r, ok in zip(rows, shown) if ok]):
        ax.scatter([s], [max(zv, 1e-2)], color=_colour(r), s=60, zorder=2)
    ax.set_yscale("log")
    z_lo = min(0.5, 0.7 * float(np.nanmin(np.maximum(zs[shown], 1e-2)))) if shown.any() else 0.5
    z_hi = max(2.0 * Z_MAX, 1.5 * float(np.nanmax(zs[shown]))) if shown.any() else 2.0 * Z_MAX
    # Leave the top 2·band of the axes free for the diverged markers.
    span = math.log10(z_hi) - math.log10(z_lo)
    ax.set_ylim(z_lo, 10 ** (math.log10(z_hi) + span * 2 * _DIVERGED_BAND / (1 - 2 * _DIVERGED_BAND)))
    ax.axhline(Z_MAX, color="k", ls="--", lw=1)
    # x in axes fraction, y in data: the label stays inside the axes at the line's height.
    # A white box keeps it readable over a point that sits at the same place.
    ax.text(0.01, Z_MAX * 1.05, f"|z| = {Z_MAX:g}", transform=ax.get_yaxis_transform(), ha="left", va="bottom",
            fontsize=8, zorder=4, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0})
    _diverged_band(ax, steps, diverged, 1.0 - _DIVERGED_BAND)
    ax.set_xlabel("step size")
    ax.set_ylabel("largest |bias z| (weights, mean, variance)")
    ax.set_title("bias against the exact answer")


def _step_axis(ax, steps: np.ndarray) -> None:
    """Log step-size axis with at least one whole decade in view and only decades labelled."""
    from matplotlib.ticker import LogLocator, NullFormatter

    lo, hi = steps.min() / 1.6, steps.max() * 1.6
    if math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:  # fewer than two decade ticks
        lo, hi = min(lo, 10 ** math.floor(math.log10(lo))), max(hi, 10 ** math.ceil(math.log10(hi)))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _histogram_panel(ax, sweep, rows, system) -> None:
    live = [r for r in rows if not r.diverged and r.samples.size]
    picks = []
    if live:
        picks.append(("too small", live[0]))
        good = [r for r in live if r.verdict == "ok"]
        # With no unbiased step the most efficient one is not "about right": say so, and
        # prefer one that did not collapse.
        pool = good or [r for r in live if r.verdict != "collapsed"] or live
        best = max(pool, key=lambda r: r.ess_per_1000_evaluations if np.isfinite(r.ess_per_1000_evaluations) else -1)
        picks.append(("about right" if good else "most efficient (none ok)", best))
    picks.append(("too large", rows[-1]))
    # The x range follows the runs that sampled something like the law: a collapsed or
    # exploding run's samples (e.g. 1e100) would squash the others into one bin.
    sane = [r for _, r in picks if r.samples.size and r.verdict not in ("collapsed", "diverged")]
    ranged = sane or [r for _, r in picks if r.samples.size]
    lo = min((np.percentile(r.samples, 0.5) for r in ranged), default=-3.0)
    hi = max((np.percentile(r.samples, 99.5) for r in ranged), default=3.0)
    if not hi > lo:
        lo, hi = lo - 1.0, hi + 1.0
    edges = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 61)
    peak = 0.0  # the y range follows the exact law and the good run, not a stuck run's spike
    if system is not None and len(system.event_shape) == 1 and sweep.observable == "x[0]":
        exact = system.exact_marginal(0, edges)
        if exact is not None:
            ax.plot(exact.grid, exact.density, "k-", lw=1.5, label="exact")
            peak = float(np.max(exact.density))
    colours = ["#8d99ae", "#2a9d8f", "#e63946"]
    seen = set()
    for (label, r), c in zip(picks, colours):
        if id(r) in seen:
            continue
        seen.add(id(r))
        text = f"{label}: {r.step_size:g} ({r.verdict})"
        if r.samples.size:
            inside = np.mean((r.samples >= edges[0]) & (r.samples <= edges[-1]))
            if inside < 0.5:
                text += ", mostly off scale"
            counts, _, _ = ax.hist(r.samples, bins=edges, density=False, weights=np.full(r.samples.size, 1.0 / (
                r.samples.size * (edges[1] - edges[0]))), histtype="step", lw=1.8, color=c, label=text)
            if label == "about right" or (label.startswith("most efficient") and peak == 0):
                peak = max(peak, float(np.max(counts)))
        else:
            ax.plot([], [], color=c, label=text)
    if peak > 0:
        ax.set_ylim(0, 1.6 * peak)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(sweep.observable)
    ax.set_ylabel("density")
    ax.set_title("what the walkers sampled")
    ax.legend(fontsize=8)
