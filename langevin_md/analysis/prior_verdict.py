"""Is a prior any good? Two samples of a 2-D feature law compared, with errors and a verdict.

:func:`compare_distributions` puts a model's samples (a CG model, a learned prior, a new
sampler) beside a reference (the all-atom run) in two features, by default the backbone
dihedrals (φ, ψ):

* free-energy surfaces F = −kT ln p side by side and their difference (a PNG);
* the Jensen–Shannon divergence of the two binned laws (natural log, so 0 ≤ JS ≤ ln 2),
  with a bootstrap standard error over walkers (walkers are the independent units: frames
  of one walker are correlated);
* a noise floor and a p-value from a permutation test over walkers: pool the walkers of
  both runs, split them at random into groups of the original sizes, recompute JS. The
  finite-sample JS of two samples of one law is positive (about (bins occupied)/(2N) for N
  frames), so JS alone cannot say "equal"; JS against this null distribution can;
* per-state populations (C7eq/β, αR, αL by default, :func:`~.molecular.assign_states`) with
  bootstrap errors over walkers, and their differences;
* a plain-language verdict.

The permutation test assumes walkers are independent and, under the null, exchangeable
between the runs; walkers of very different lengths in the two runs weaken it (each walker
counts as one unit with its own frames).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np

from .molecular import ALANINE_DIPEPTIDE_STATES, StateCore, assign_states

__all__ = ["DistributionComparison", "compare_distributions", "jensen_shannon"]


class DistributionComparison(NamedTuple):
    """Result of :func:`compare_distributions`.

    Attributes
    ----------
    js : float
        Jensen–Shannon divergence of the binned laws, nats.
    js_error : float
        Its bootstrap standard error over walkers (both runs resampled).
    js_null : float
        Mean JS of random splits of the pooled walkers: the value two samples of one law of
        these sizes give (the noise floor).
    p_value : float
        Share of permutation splits with JS ≥ the observed one ((k + 1)/(n + 1)).
    state_names : tuple of str
    populations, reference_populations : numpy.ndarray, shape ``(n_states,)``
        Fraction of frames assigned to each state (transition-based cores).
    population_errors, reference_population_errors : numpy.ndarray, shape ``(n_states,)``
        Bootstrap standard errors over walkers.
    population_z : numpy.ndarray, shape ``(n_states,)``
        Difference over its combined standard error.
    free_energy, reference_free_energy : numpy.ndarray, shape ``(bins, bins)``
        F = −kT ln p, minimum 0, ``inf`` in empty bins; unit of kT.
    edges : numpy.ndarray, shape ``(bins + 1,)``
        Bin edges (radians) of both features.
    consistent : bool
        True when p_value ≥ alpha and every |population_z| ≤ 3.
    verdict : str
        The plain-language summary.
    figure : str or None
        Path of the PNG, when one was written.
    """

    js: float
    js_error: float
    js_null: float
    p_value: float
    state_names: tuple
    populations: np.ndarray
    population_errors: np.ndarray
    reference_populations: np.ndarray
    reference_population_errors: np.ndarray
    population_z: np.ndarray
    free_energy: np.ndarray
    reference_free_energy: np.ndarray
    edges: np.ndarray
    consistent: bool
    verdict: str
    figure: Optional[str]


def jensen_shannon(p, q) -> np.ndarray:
    """JS divergence (nats) between rows of two histograms (counts or probabilities).

    Parameters
    ----------
    p, q : array_like, shape ``(..., n_bins)``
        Non-negative; each row is normalised here.

    Returns
    -------
    numpy.ndarray, shape ``(...)``, in [0, ln 2].
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / m), 0.0)
        b = np.where(q > 0, q * np.log(q / m), 0.0)
    return 0.5 * (a.sum(-1) + b.sum(-1))


def _features(run, features, what: str) -> np.ndarray:
    if features is None:
        arr = np.asarray(run, dtype=np.float64)
    elif features == "phi_psi":
        from .molecular import phi_psi

        arr = np.stack(phi_psi(run), axis=-1)
    elif callable(features):
        arr = np.asarray(features(run), dtype=np.float64)
    else:
        raise ValueError(f"features must be 'phi_psi', a callable or None (arrays given), got {features!r}")
    if arr.ndim == 2 and arr.shape[-1] == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[-1] != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"the {what}'s features must have shape (n_frames, n_walkers, 2) (radians), "
                         f"got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the {what}'s features contain NaN or infinite values")
    return arr


def _walker_histograms(angles: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-walker 2-D histograms flattened: ``(n_walkers, bins²)``."""
    bins = edges.size - 1
    wrapped = (angles + np.pi) % (2 * np.pi)  # [0, 2π)
    idx = np.minimum((wrapped / (2 * np.pi) * bins).astype(np.int64), bins - 1)
    flat = idx[..., 0] * bins + idx[..., 1]  # (n_frames, n_walkers)
    W = flat.shape[1]
    out = np.zeros((W, bins * bins))
    np.add.at(out, (np.broadcast_to(np.arange(W), flat.shape), flat), 1.0)
    return out


def _state_counts(angles: np.ndarray, states) -> np.ndarray:
    lab = assign_states(angles[..., 0], angles[..., 1], states)
    return np.stack([(lab == s).sum(0) for s in range(len(states))], axis=1).astype(np.float64)  # (W, k)


def _free_energy(counts: np.ndarray, kT: float, bins: int) -> np.ndarray:
    with np.errstate(divide="ignore"):
        f = -kT * np.log(counts / counts.sum())
    f = f.reshape(bins, bins)
    return f - f[np.isfinite(f)].min()


def compare_distributions(result, reference, features: Union[str, Callable, None] = "phi_psi",
                          kT: Optional[float] = None, bins: int = 36,
                          states: Sequence[StateCore] = ALANINE_DIPEPTIDE_STATES,
                          n_bootstrap: int = 200, n_permutations: int = 200, alpha: float = 0.01,
                          path=None, labels: tuple = ("model", "reference"), seed: int = 0
                          ) -> DistributionComparison:
    """Compare a run's law of two angular features with a reference run's.

    Parameters
    ----------
    result, reference : SampleResult, mdtraj.Trajectory or array
        Runs of the same molecule (or its CG beads with a topology). With ``features=None``,
        arrays of shape ``(n_frames, n_walkers, 2)`` of angles in radians.
    features : "phi_psi", callable or None
        ``"phi_psi"``: backbone φ/ψ (:func:`~.molecular.phi_psi`); a callable maps a run to
        ``(n_frames, n_walkers, 2)`` radians; None: the inputs are already features.
    kT : float, optional
        Unit of the free energies (default: ``result.kT``, kJ/mol for molecules; else 1).
    bins : int
        Bins per feature over [−π, π) (default 36, 10°).
    states : sequence of StateCore
        Cores of the states whose populations are compared (default: alanine dipeptide's).
    n_bootstrap, n_permutations : int
        Resamples for the standard errors and for the null distribution; ``n_permutations``
        must let the p-value fall below ``alpha`` (1/(n_permutations + 1) < alpha).
    alpha : float
        The permutation test's level for the verdict.
    path : str or PathLike, optional
        Write the side-by-side free-energy surfaces and their difference there (PNG).
    labels : (str, str)
        Names of the two runs in the verdict and the figure.
    seed : int
        Seed of the resampling.

    Returns
    -------
    DistributionComparison
    """
    for name, v, low in (("bins", bins, 2), ("n_bootstrap", n_bootstrap, 2), ("n_permutations", n_permutations, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    # The smallest p-value n permutations can give is 1/(n + 1): with fewer permutations than
    # that, the test could never reject, and every pair of laws would pass it.
    if 1.0 / (n_permutations + 1) >= float(alpha):
        raise ValueError(f"n_permutations = {n_permutations} cannot reach a p-value below alpha = {alpha:g} "
                         f"(the smallest is 1/(n_permutations + 1)); use n_permutations >= "
                         f"{math.ceil(1.0 / float(alpha))} or a larger alpha")
    if kT is None:
        kT = float(getattr(result, "kT", 1.0))
    if not (isinstance(kT, (int, float)) and math.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be a positive number, got {kT!r}")
    a = _features(result, features, labels[0])
    b = _features(reference, features, labels[1])
    edges = np.linspace(-np.pi, np.pi, int(bins) + 1)
    ha, hb = _walker_histograms(a, edges), _walker_histograms(b, edges)
    sa, sb = _state_counts(a, states), _state_counts(b, states)
    Wa, Wb = ha.shape[0], hb.shape[0]
    rng = np.random.default_rng(seed)

    js = float(jensen_shannon(ha.sum(0), hb.sum(0)))
    # bootstrap over walkers: resampling weights (n_boot, W) times per-walker histograms
    wa = rng.multinomial(Wa, np.full(Wa, 1.0 / Wa), size=n_bootstrap).astype(np.float64)
    wb = rng.multinomial(Wb, np.full(Wb, 1.0 / Wb), size=n_bootstrap).astype(np.float64)
    js_boot = jensen_shannon(wa @ ha, wb @ hb)
    js_err = float(js_boot.std(ddof=1))
    # permutation null: random splits of the pooled walkers into groups of Wa and Wb
    pooled = np.concatenate([ha, hb])
    null = np.empty(n_permutations)
    for k in range(n_permutations):
        perm = rng.permutation(Wa + Wb)
        null[k] = jensen_shannon(pooled[perm[:Wa]].sum(0), pooled[perm[Wa:]].sum(0))
    p_value = float((np.sum(null >= js) + 1) / (n_permutations + 1))

    def pops(counts, weights):
        tot = counts.sum(0)
        p = tot / max(tot.sum(), 1.0)
        boot = weights @ counts
        boot = boot / np.maximum(boot.sum(1, keepdims=True), 1.0)
        return p, boot.std(0, ddof=1)

    pa, ea = pops(sa, wa)
    pb, eb = pops(sb, wb)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(np.hypot(ea, eb) > 0, (pa - pb) / np.hypot(ea, eb), np.where(pa == pb, 0.0, np.inf))
    names = tuple(s.name for s in states)
    consistent = bool(p_value >= alpha and np.all(np.abs(z) <= 3.0))
    fa, fb = _free_energy(ha.sum(0), kT, bins), _free_energy(hb.sum(0), kT, bins)
    verdict = _verdict(js, js_err, float(null.mean()), p_value, alpha, names, pa, ea, pb, eb, z, consistent, labels)
    figure = None
    if path is not None:
        figure = _plot(fa, fb, edges, path, labels, js, js_err, kT)
    return DistributionComparison(js, js_err, float(null.mean()), p_value, names, pa, ea, pb, eb, z, fa, fb,
                                  edges, consistent, verdict, figure)


def _verdict(js, js_err, floor, p, alpha, names, pa, ea, pb, eb, z, consistent, labels) -> str:
    a, b = labels
    pops = "; ".join(f"{n}: {100 * x:.1f} ± {100 * ex:.1f}% vs {100 * y:.1f} ± {100 * ey:.1f}%"
                     for n, x, ex, y, ey in zip(names, pa, ea, pb, eb))
    head = (f"JS divergence {js:.4f} ± {js_err:.4f} nats (noise floor {floor:.4f} for samples of one law "
            f"of these sizes; permutation p = {p:.3g}).")
    if consistent:
        return (f"The {a} and {b} distributions agree within sampling noise. {head} "
                f"Populations ({a} vs {b}): {pops}.")
    worst = int(np.argmax(np.abs(z)))
    why = []
    if p < alpha:
        why.append(f"JS is {js / max(floor, 1e-300):.1f}× the noise floor (p < {alpha:g})")
    if abs(z[worst]) > 3:
        why.append(f"the {names[worst]} population differs by {100 * (pa[worst] - pb[worst]):+.1f} points "
                   f"({z[worst]:+.1f} standard errors)")
    return (f"The {a} distribution differs from the {b}: " + " and ".join(why) + f". {head} "
            f"Populations ({a} vs {b}): {pops}.")


def _plot(fa, fb, edges, path, labels, js, js_err, kT) -> str:
    import os

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    deg = np.degrees(edges)
    both = np.isfinite(fa) & np.isfinite(fb)
    diff = np.full(fa.shape, np.nan)
    diff[both] = fa[both] - fb[both]
    vmax = float(np.nanmax(np.where(np.isfinite(fb), fb, np.nan)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, f, title in ((axes[0], fa, labels[0]), (axes[1], fb, labels[1])):
        im = ax.pcolormesh(deg, deg, np.where(np.isfinite(f), f, np.nan).T, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(f"F({title})")
        fig.colorbar(im, ax=ax, label=f"free energy ({'kJ/mol' if kT != 1.0 else 'kT'})")
    lim = float(np.nanmax(np.abs(diff))) if np.any(both) else 1.0
    im = axes[2].pcolormesh(deg, deg, diff.T, vmin=-lim, vmax=lim, cmap="RdBu_r")
    axes[2].set_title(f"F({labels[0]}) − F({labels[1]})\nJS = {js:.4f} ± {js_err:.4f} nats")
    fig.colorbar(im, ax=axes[2], label="difference")
    for ax in axes:
        ax.set_xlabel("feature 1 (φ, degrees)")
        ax.set_ylabel("feature 2 (ψ, degrees)")
        ax.set_aspect("equal")
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
