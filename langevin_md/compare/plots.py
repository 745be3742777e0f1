"""Plots of a step-size sweep (:func:`~langevin_md.compare.core.step_size_sweep`)."""

from __future__ import annotations


import os

import numpy as np

from ..safe_paths import write_via_temp
from .core import Z_MAX, Comparison

_VERDICT_COLOURS = {"ok": "#2a9d8f", "biased": "#e9c46a", "stuck": "#8d99ae", "collapsed": "#f4a261",
                    "diverged": "#e63946"}


def plot_step_size_sweep(sweep: Comparison, path, system=None) -> str:
    """Draw a step-size sweep: efficiency, bias and the sampled law at three step sizes.

    Panels: (1) ESS per 1000 force evaluations against step size; (2) the largest |bias z|
    against step size with the |z| = 5 line; (3) histograms of the observable at the
    smallest step, the most efficient unbiased step and the largest step, over the exact
    marginal density when ``system`` knows it. Points are coloured by verdict.

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
    import matplotlib  # lazy: matplotlib is heavy and only drawing needs it

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = sweep.rows
    if not rows or any(r.step_size is None for r in rows):
        raise ValueError("plot_step_size_sweep needs the rows of step_size_sweep (each with a step size)")
    steps = np.array([r.step_size for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    eff = np.array([r.ess_per_1000_evaluations if not r.diverged else np.nan for r in rows])
    ax.plot(steps, np.where(np.isfinite(eff), eff, np.nan), "-", color="0.6", zorder=1)
    top = np.nanmax(eff) if np.any(np.isfinite(eff)) else 1.0
    for s, e, r in zip(steps, eff, rows):
        y = top if r.diverged else (e if np.isfinite(e) else 0.0)  # diverged: an x at the top
        ax.scatter([s], [y], color=_VERDICT_COLOURS.get(r.verdict, "k"), marker="x" if r.diverged else "o", s=60,
                   zorder=2, label=r.verdict)
    ax.set_xscale("log")
    ax.set_xlabel("step size")
    ax.set_ylabel("ESS per 1000 force evaluations")
    ax.set_title("efficiency (x: diverged)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="best", fontsize=8)

    ax = axes[1]
    zs = np.array([r.max_abs_z if not r.diverged else np.nan for r in rows])
    for s, zv, r in zip(steps, zs, rows):
        if np.isfinite(zv):
            ax.scatter([s], [max(zv, 1e-2)], color=_VERDICT_COLOURS.get(r.verdict, "k"), s=60)
    ax.axhline(Z_MAX, color="k", ls="--", lw=1)
    ax.text(steps.min(), Z_MAX * 1.15, "|z| = 5", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size")
    ax.set_ylabel("largest |bias z| (weights, mean, variance)")
    ax.set_title("bias against the exact answer")

    ax = axes[2]
    live = [r for r in rows if not r.diverged and r.samples.size]
    picks = []
    if live:
        picks.append(("too small", live[0]))
        good = [r for r in live if r.verdict == "ok"] or live
        best = max(good, key=lambda r: r.ess_per_1000_evaluations if np.isfinite(r.ess_per_1000_evaluations) else -1)
        picks.append(("about right", best))
    last = rows[-1]
    picks.append(("too large", last))
    lo = min((np.percentile(r.samples, 0.5) for _, r in picks if r.samples.size), default=-3.0)
    hi = max((np.percentile(r.samples, 99.5) for _, r in picks if r.samples.size), default=3.0)
    edges = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 61)
    if system is not None and len(system.event_shape) == 1 and sweep.observable == "x[0]":
        exact = system.exact_marginal(0, edges)
        if exact is not None:
            ax.plot(exact.grid, exact.density, "k-", lw=1.5, label="exact")
    colours = ["#8d99ae", "#2a9d8f", "#e63946"]
    seen = set()
    peak = 0.0  # the y range follows the exact law and the good run, not a stuck run's spike
    if ax.lines:
        peak = float(np.max(ax.lines[0].get_ydata()))
    for (label, r), c in zip(picks, colours):
        if id(r) in seen:
            continue
        seen.add(id(r))
        if r.samples.size:
            counts, _, _ = ax.hist(r.samples, bins=edges, density=True, histtype="step", lw=1.8, color=c,
                                   label=f"{label}: {r.step_size:g} ({r.verdict})")
            if label == "about right":
                peak = max(peak, float(np.max(counts)))
        else:
            ax.plot([], [], color=c, label=f"{label}: {r.step_size:g} (diverged)")
    if peak > 0:
        ax.set_ylim(0, 1.6 * peak)
    ax.set_xlabel(sweep.observable)
    ax.set_ylabel("density")
    ax.set_title("what the walkers sampled")
    ax.legend(fontsize=8)
    fig.suptitle(rows[0].name.split(" ")[0] + f": {sweep.n_force_evals} force evaluations per walker, "
                 f"{sweep.n_walkers} walkers")
    fig.tight_layout()
    path = os.fspath(path)
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
