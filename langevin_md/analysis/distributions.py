"""Distribution checks: histogram distances, energy-law KS tests and temperature estimators.

* :func:`distance_to_probabilities` / :func:`distance_to_density` /
  :func:`distance_to_reference` — total variation, Jensen–Shannon or Kullback–Leibler distance
  between the histogram of samples and an exact law (bin probabilities or a density on a
  grid, e.g. ``MullerBrown.density_grid``) or a reference sample. Each returns the distance
  *and* the value expected from sampling noise alone (with its spread), because a histogram
  of exact samples is never at distance 0: compare ``distance`` with
  ``noise_floor + 5 · noise_sd`` (that is :attr:`HistogramDistance.z`).
* :func:`energy_ks_test` — Kolmogorov–Smirnov test of ``U/kT ~ Gamma(n_dof/2)``, the law of
  the potential energy of a harmonic well above its minimum and of the kinetic energy
  (``docs/exact_results.md``, energy laws); :func:`ks_test` — the same against any exact
  law, e.g. ``System.exact_energy_law()``.
* :func:`configurational_temperature` — ``kT_conf = ⟨|∇U|²⟩ / ⟨∇²U⟩``, equal to kT for any
  exact sampler (Rugh 1997; Butler, Ayton, Jepps & Evans 1998), no velocities needed.
* :func:`kinetic_temperature` — ``kT_kin = 2⟨K⟩ / N_dof`` for schemes with velocities.

References
----------
H. H. Rugh, "Dynamical approach to temperature", Phys. Rev. Lett. 78, 772 (1997).
B. D. Butler, G. Ayton, O. G. Jepps, D. J. Evans, "Configurational temperature: verification
of Monte Carlo simulations", J. Chem. Phys. 109, 6519 (1998).
M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", Commun. Stat. Simul. Comput. 18, 1059 (1989).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from scipy import stats

from ._validation import check_positive_number

__all__ = [
    "HistogramDistance",
    "distance_to_probabilities",
    "distance_to_density",
    "distance_to_reference",
    "KSResult",
    "energy_ks_test",
    "ks_test",
    "TemperatureEstimate",
    "configurational_temperature",
    "kinetic_temperature",
]

METRICS = ("tv", "js", "kl")


# --------------------------------------------------------------------------- histogram distances
class HistogramDistance(NamedTuple):
    """A histogram distance with the size it would have from sampling noise alone.

    Attributes
    ----------
    distance : float
        Total variation ½Σ|p̂ − p| (in [0, 1]), Jensen–Shannon divergence (nats, ≤ ln 2) or
        KL(p̂ ‖ p) (nats) between the sample histogram p̂ and the reference p.
    noise_floor : float
        Expected distance if the samples came from the reference law, given ``n_effective``
        independent samples (per bin: the exact binomial mean absolute deviation for TV; the
        χ² limit ``(K − 1)/(2n)`` for KL and ``(K − 1)/(8n)`` for JS, K occupied bins).
    noise_sd : float
        Standard deviation of the distance under that null.
    z : float
        ``(distance − noise_floor) / noise_sd``: about N(0, 1) for exact samples (a normal
        approximation, rough for few samples per bin); large for a wrong law.
    metric : str
    n_effective : float
        Effective number of independent samples used for the noise (from the sample side
        and, for two samples, the reference side: ``1/(1/n₁ + 1/n₂)``).
    edges : tuple of numpy.ndarray
        Bin edges (one array per dimension).
    probabilities : numpy.ndarray
        Reference probability of each bin (normalised over the binned range).
    histogram : numpy.ndarray
        Sample fraction in each bin (normalised over the binned range).
    """

    distance: float
    noise_floor: float
    noise_sd: float
    z: float
    metric: str
    n_effective: float
    edges: tuple
    probabilities: np.ndarray
    histogram: np.ndarray


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _divergence(p_hat: np.ndarray, p: np.ndarray, metric: str) -> float:
    if metric == "tv":
        return float(0.5 * np.abs(p_hat - p).sum())
    if metric == "kl":
        nz = p_hat > 0
        with np.errstate(divide="ignore"):
            return float(np.sum(p_hat[nz] * (np.log(p_hat[nz]) - np.log(p[nz]))))
    m = 0.5 * (p_hat + p)

    def kl(a, b):
        nz = a > 0
        return np.sum(a[nz] * (np.log(a[nz]) - np.log(b[nz])))

    return float(0.5 * kl(p_hat, m) + 0.5 * kl(p, m))


def _binomial_mad(n: int, p: np.ndarray) -> np.ndarray:
    """E|X − np| for X ~ Binomial(n, p), elementwise (de Moivre's closed form)."""
    m = np.floor(n * p) + 1.0
    # E|X − np| = 2 m (1 − p) P(X = m)   (m = ⌊np⌋ + 1)
    return 2.0 * m * (1.0 - p) * stats.binom.pmf(m, n, p)


def _noise(p: np.ndarray, n_eff: float, metric: str) -> tuple[float, float]:
    """Mean and sd of the distance between an n_eff-sample histogram and p, under the null."""
    occupied = p[p > 0]
    k = occupied.size
    if metric == "tv":
        n = max(1, int(round(n_eff)))
        mad = _binomial_mad(n, occupied) / n  # E|p̂ − p| per bin
        var = occupied * (1 - occupied) / n - mad**2
        # Bin counts are negatively correlated (they sum to n); treating them as independent
        # slightly overstates the spread, which errs on the side of passing exact samples.
        return float(0.5 * mad.sum()), float(0.5 * math.sqrt(max(var.sum(), 0.0)))
    # 2n·KL(p̂‖p) → χ²_{K−1}; JS ≈ KL/4 to the same order.
    scale = 1.0 / (2.0 * n_eff) if metric == "kl" else 1.0 / (8.0 * n_eff)
    dof = max(k - 1, 1)
    return scale * dof, scale * math.sqrt(2.0 * dof)


def _n_effective(n_samples: int, n_effective) -> float:
    if n_effective is None:
        return float(n_samples)
    return check_positive_number("n_effective", n_effective)


def _as_points(samples, n_dims: int) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if n_dims == 1:
        x = x.reshape(-1)
        return x[:, None]
    if x.shape[-1] != n_dims:
        raise ValueError(
            f"samples for a {n_dims}-d reference must have shape (..., {n_dims}), got {x.shape}"
        )
    return x.reshape(-1, n_dims)


def _histogram(points: np.ndarray, edges: tuple) -> np.ndarray:
    if not np.all(np.isfinite(points)):
        raise ValueError("samples contain NaN or inf")
    counts, _ = np.histogramdd(points, bins=list(edges))
    total = counts.sum()
    if total == 0:
        raise ValueError("no sample falls inside the binned range")
    return counts / total


def _check_edges(edges) -> tuple:
    if isinstance(edges, np.ndarray) and edges.ndim == 1:
        edges = (edges,)
    out = []
    for e in edges:
        e = np.asarray(e, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges must be strictly increasing 1-D arrays of >= 2 values, got shape {e.shape}")
        out.append(e)
    return tuple(out)


def distance_to_probabilities(samples, edges, probabilities, metric: str = "tv",
                              n_effective: Optional[float] = None) -> HistogramDistance:
    """Distance between the histogram of samples and exact bin probabilities.

    Parameters
    ----------
    samples : array_like
        1-d: any shape (all values are pooled). d-dim: shape ``(..., d)``.
    edges : array_like or tuple of array_like
        Bin edges, shape ``(n_bins + 1,)``, or one array per dimension.
    probabilities : array_like, shape ``(n_bins,)`` or ``(n_bins_1, ..., n_bins_d)``
        Exact probability of each bin (e.g. ``DoubleWell.bin_probabilities(edges)``);
        renormalised over the binned range, and samples outside it are dropped.
    metric : {"tv", "js", "kl"}
    n_effective : float, optional
        Effective number of independent samples (for correlated chains, e.g. the
        :func:`~langevin_md.analysis.effective_sample_size` of the observable). Default: the
        number of samples, which is right only for independent samples.

    Returns
    -------
    HistogramDistance
    """
    metric = _check_metric(metric)
    edges = _check_edges(edges)
    p = np.asarray(probabilities, dtype=np.float64)
    shape = tuple(e.size - 1 for e in edges)
    if p.shape != shape or np.any(p < 0) or not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ValueError(
            f"probabilities must be non-negative, finite, not all 0 and of shape {shape} (one per "
            f"bin), got shape {p.shape}"
        )
    p = p / p.sum()
    points = _as_points(samples, len(edges))
    p_hat = _histogram(points, edges)
    n_eff = _n_effective(points.shape[0], n_effective)
    d = _divergence(p_hat.ravel(), p.ravel(), metric)
    floor, sd = _noise(p.ravel(), n_eff, metric)
    return HistogramDistance(d, floor, sd, (d - floor) / sd if sd > 0 else math.inf, metric,
                             n_eff, edges, p, p_hat)


def _edges_from_centres(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 1 or c.size < 2 or not np.all(np.diff(c) > 0):
        raise ValueError(f"grid must be strictly increasing 1-D arrays of >= 2 points, got shape {c.shape}")
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def distance_to_density(samples, grid, density, metric: str = "tv",
                        n_effective: Optional[float] = None) -> HistogramDistance:
    """Distance between the histogram of samples and a density tabulated on a grid.

    Each grid point becomes the centre of a bin (edges halfway between points) with
    probability ∝ density × bin volume. That is exact for cell-averaged densities (e.g.
    ``MullerBrown.density_grid``) and accurate to O(h²) for point values (e.g.
    ``DoubleWell.log_density_grid`` exponentiated) — use a fine grid, or
    :func:`distance_to_probabilities` with exact bin masses where the system has them.

    Parameters
    ----------
    samples : array_like
        1-d: any shape. d-dim: ``(..., d)``.
    grid : array_like or tuple of array_like
        Increasing grid points, ``(n,)`` for 1-d or one array per dimension.
    density : array_like, shape ``(n,)`` or ``(n_1, ..., n_d)``
        Density (need not be normalised) at the grid points.
    metric, n_effective
        As in :func:`distance_to_probabilities`.

    Returns
    -------
    HistogramDistance
    """
    if isinstance(grid, np.ndarray) and grid.ndim == 1:
        grid = (grid,)
    edges = tuple(_edges_from_centres(g) for g in grid)
    dens = np.asarray(density, dtype=np.float64)
    volume = np.ones(())
    for e in edges:
        volume = np.multiply.outer(volume, np.diff(e))
    return distance_to_probabilities(samples, edges, dens * volume, metric, n_effective)


def distance_to_reference(samples, reference, bins: int = 50, range=None, metric: str = "tv",
                          n_dims: int = 1, n_effective: Optional[float] = None,
                          reference_n_effective: Optional[float] = None) -> HistogramDistance:
    """Distance between the histograms of two samples (e.g. a run and a reference trajectory).

    Parameters
    ----------
    samples, reference : array_like
        ``n_dims = 1``: any shape (all values pooled). Otherwise ``(..., n_dims)``.
    bins : int
        Bins per dimension.
    range : sequence of (low, high), optional
        Binned range per dimension (default: the 0.1 %–99.9 % quantiles of the reference,
        widened by 5 %).
    metric : {"tv", "js", "kl"}
        For "kl" the reference must cover every bin the samples visit.
    n_dims : int
        Dimension of the histogram (1 or 2 are practical).
    n_effective, reference_n_effective : float, optional
        Effective sample sizes of each side (default: their sizes).

    Returns
    -------
    HistogramDistance
        ``probabilities`` is the reference histogram. The noise accounts for both samples.
    """
    metric = _check_metric(metric)
    if isinstance(n_dims, bool) or not isinstance(n_dims, (int, np.integer)) or n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer, got {n_dims!r}")
    ref = np.asarray(reference, dtype=np.float64)
    x = np.asarray(samples, dtype=np.float64)
    ref_pts, pts = _as_points(ref, n_dims), _as_points(x, n_dims)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if range is None:
        lo, hi = np.quantile(ref_pts, [0.001, 0.999], axis=0)
        pad = 0.05 * np.maximum(hi - lo, 1e-12)
        range = list(zip(lo - pad, hi + pad))
    edges = tuple(np.linspace(a, b, int(bins) + 1) for a, b in range)
    q = _histogram(ref_pts, edges)
    p_hat = _histogram(pts, edges)
    n1 = _n_effective(pts.shape[0], n_effective)
    n2 = _n_effective(ref_pts.shape[0], reference_n_effective)
    n_eff = 1.0 / (1.0 / n1 + 1.0 / n2)
    d = _divergence(p_hat.ravel(), q.ravel(), metric)
    floor, sd = _noise(q.ravel(), n_eff, metric)
    return HistogramDistance(d, floor, sd, (d - floor) / sd if sd > 0 else math.inf, metric,
                             n_eff, edges, q, p_hat)


# --------------------------------------------------------------------------- energy laws
class KSResult(NamedTuple):
    """Result of :func:`ks_test` and :func:`energy_ks_test`.

    Attributes
    ----------
    statistic : float
        Kolmogorov–Smirnov distance between the empirical and exact CDFs.
    pvalue : float
        Two-sided p-value, valid for independent samples (hence the thinning).
    n_used : int
        Samples used after thinning.
    thin : int
        Every ``thin``-th frame of each walker was used.
    """

    statistic: float
    pvalue: float
    n_used: int
    thin: int


def energy_ks_test(energies, n_dof: float, kT: float, thin="auto") -> KSResult:
    """KS test of ``energies / kT ~ Gamma(n_dof / 2, 1)``.

    This is the exact law of the potential energy ``U − U_min`` of an ``n_dof``-dimensional
    harmonic well, and of the kinetic energy with ``n_dof`` velocity components, under exact
    sampling (``docs/exact_results.md``, energy laws). It tests the whole distribution, not
    only the mean.

    Parameters
    ----------
    energies : array_like, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        Energies above the minimum, in the unit of ``kT``.
    n_dof : float
        Number of quadratic degrees of freedom.
    kT : float
    thin : "auto" or int
        As in :func:`ks_test`.

    Returns
    -------
    KSResult
    """
    n_dof = check_positive_number("n_dof", n_dof)
    kT = check_positive_number("kT", kT)
    return ks_test(energies, stats.gamma(a=0.5 * n_dof, scale=kT), thin)


def ks_test(samples, law, thin="auto") -> KSResult:
    """Kolmogorov–Smirnov test of per-walker time series against an exact law.

    Parameters
    ----------
    samples : array_like, shape ``(n_frames,)`` or ``(n_frames, n_walkers)``
        A scalar observable along frames (first axis) for each walker.
    law : scipy.stats frozen distribution
        Its exact law (anything with a ``cdf``), e.g. ``System.exact_energy_law()``.
    thin : "auto" or int
        Keep every ``thin``-th frame of each walker so that the samples are close to
        independent (the KS p-value assumes so). "auto": ``ceil(2 τ)`` with τ the integrated
        autocorrelation time of ``samples`` (1 when τ < 1.5 or there are fewer than 8 frames).

    Returns
    -------
    KSResult
    """
    from .autocorrelation import integrated_autocorrelation_time

    if not callable(getattr(law, "cdf", None)):
        raise TypeError(f"law must be a scipy.stats distribution with a cdf, got {law!r}")
    e = np.asarray(samples, dtype=np.float64)
    if e.ndim == 1:
        e = e[:, None]
    if e.ndim != 2 or e.size == 0:
        raise ValueError(f"samples must have shape (n_frames,) or (n_frames, n_walkers), got {np.shape(samples)}")
    if thin == "auto":
        if e.shape[0] >= 8:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tau = integrated_autocorrelation_time(e)
            # τ ≈ 1 means already independent; otherwise frames 2τ apart are nearly so.
            thin = 1 if tau < 1.5 else int(math.ceil(2.0 * tau))
        else:
            thin = 1
    elif isinstance(thin, bool) or not isinstance(thin, (int, np.integer)) or thin < 1:
        raise ValueError(f"thin must be 'auto' or a positive integer, got {thin!r}")
    x = e[::thin].ravel()
    res = stats.kstest(x, law.cdf)
    return KSResult(float(res.statistic), float(res.pvalue), int(x.size), int(thin))


# --------------------------------------------------------------------------- temperatures
class TemperatureEstimate(NamedTuple):
    """A temperature estimate in energy units (kT), with its standard error.

    Attributes
    ----------
    kT : float
        The estimate (kJ/mol for molecular systems).
    standard_error : float
        From the spread across independent walkers (delta method for the ratio); with one
        walker, from the MCSE of the time series.
    numerator, denominator : float
        ``⟨|∇U|²⟩`` and ``⟨∇²U⟩`` for the configurational temperature; ``2⟨K⟩`` and
        ``N_dof`` for the kinetic one.
    method : str
        How the Laplacian was obtained ("laplacian", "exact", "hutchinson",
        "finite-difference"), or "kinetic".
    """

    kT: float
    standard_error: float
    numerator: float
    denominator: float
    method: str

    def z(self, kT: float) -> float:
        """(estimate − kT) / standard error."""
        return (self.kT - kT) / self.standard_error


def _ratio_with_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Σa/Σb over (frames, walkers) with a delta-method error across walkers."""
    from .convergence import mcse

    r = a.mean() / b.mean()
    if a.shape[1] >= 2:
        resid = (a - r * b).mean(0)
        se = resid.std(ddof=1) / math.sqrt(a.shape[1]) / abs(b.mean())
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            se = mcse((a - r * b)[:, 0]) / abs(b.mean())
    return float(r), float(se), float(a.mean()), float(b.mean())


def _laplacian(system, x, method: str, n_probes: int, generator):
    """(|∇U|², ∇²U) per walker for one batch x (n, *event_shape), both float64 numpy."""
    import torch

    n = x.shape[0]
    if method == "laplacian":
        _, f = system.energy_and_forces(x)
        lap = system.laplacian(x)
    elif method in ("exact", "hutchinson"):
        xg = x.detach().clone().requires_grad_(True)
        _, f = system.energy_and_forces(xg)
        if not f.requires_grad:
            raise ValueError(
                f"{type(system).__name__}'s forces are not differentiable with torch autograd; "
                "use method='finite-difference'"
            )
        flat = f.reshape(n, -1)
        d = flat.shape[1]
        lap = torch.zeros(n, dtype=x.dtype, device=x.device)
        if method == "exact":
            for i in range(d):
                (g,) = torch.autograd.grad(flat[:, i].sum(), xg, retain_graph=True)
                lap = lap - g.reshape(n, -1)[:, i]
        else:
            for _ in range(n_probes):
                v = (torch.randint(0, 2, xg.shape, generator=generator, dtype=torch.int64) * 2 - 1).to(x)
                (g,) = torch.autograd.grad((f * v).sum(), xg, retain_graph=True)
                lap = lap - (g * v).reshape(n, -1).sum(-1) / n_probes
        f = f.detach()
    else:  # finite-difference Hutchinson: vᵀ ∂F/∂x v ≈ vᵀ (F(x + hv) − F(x − hv)) / 2h
        _, f = system.energy_and_forces(x)
        h = 1e-4 * max(float(x.abs().max()), 1.0) if x.dtype == torch.float64 else 1e-2
        lap = torch.zeros(n, dtype=torch.float64)
        for _ in range(n_probes):
            v = (torch.randint(0, 2, x.shape, generator=generator, dtype=torch.int64) * 2 - 1).to(x)
            _, fp = system.energy_and_forces(x + h * v)
            _, fm = system.energy_and_forces(x - h * v)
            lap = lap - ((fp - fm) * v).reshape(n, -1).sum(-1).double().cpu() / (2 * h * n_probes)
    grad_sq = (f.double() ** 2).reshape(n, -1).sum(-1)
    return grad_sq.detach().cpu().numpy(), lap.detach().double().cpu().numpy()


def configurational_temperature(system, positions, method: str = "auto", n_probes: int = 4,
                                batch_size: int = 4096, seed: int = 0) -> TemperatureEstimate:
    """Configurational temperature ``kT_conf = ⟨|∇U|²⟩ / ⟨∇²U⟩`` from positions alone.

    For any density ∝ exp(−U/kT) whose boundary terms vanish, ``⟨|∇U|²⟩ = kT ⟨∇²U⟩``
    (integration by parts), so ``kT_conf = kT`` for an exact sampler whatever the dynamics
    (``docs/exact_results.md``, configurational temperature). A biased scheme (e.g. ULA at large step) shows a different value.

    Parameters
    ----------
    system : System
        Gives the forces ``−∇U`` and, if it has ``laplacian(x)``, the Laplacian.
    positions : array_like, shape ``(n_frames, n_walkers, *event_shape)``
        Configurations (e.g. ``result.positions``); walkers should be independent.
    method : {"auto", "laplacian", "exact", "hutchinson", "finite-difference"}
        How ∇²U is computed. "laplacian": ``system.laplacian``. "exact": the Hessian trace by
        autograd, one backward pass per coordinate (small systems). "hutchinson": the
        unbiased estimate ``E[vᵀ H v]`` with Rademacher probes ``v`` by autograd.
        "finite-difference": the same estimate with ``vᵀ H v ≈ −vᵀ(F(x+hv) − F(x−hv))/2h``,
        two force evaluations per probe, for systems whose forces are not differentiable
        (OpenMM). "auto": "laplacian" if present, else "exact" for ≤ 32 coordinates and
        "hutchinson" above, falling back to "finite-difference".
    n_probes : int
        Probe vectors per configuration for the stochastic methods.
    batch_size : int
        Configurations per force evaluation.
    seed : int
        Seed of the probe vectors.

    Returns
    -------
    TemperatureEstimate
        In the system's energy unit (kJ/mol for molecules). Compare with ``system.kT`` via
        ``estimate.z(system.kT)``.
    """
    import torch

    methods = ("auto", "laplacian", "exact", "hutchinson", "finite-difference")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    pos = np.asarray(positions)
    event = tuple(system.event_shape)
    if pos.ndim != 2 + len(event) or tuple(pos.shape[2:]) != event:
        raise ValueError(
            f"positions must have shape (n_frames, n_walkers, {', '.join(map(str, event))}), got {pos.shape}"
        )
    if isinstance(n_probes, bool) or not isinstance(n_probes, (int, np.integer)) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    if method == "auto":
        if callable(getattr(system, "laplacian", None)):
            method = "laplacian"
        else:
            probe_x = torch.as_tensor(pos[:1, 0], dtype=torch.float64).requires_grad_(True)
            try:
                differentiable = system.energy_and_forces(probe_x)[1].requires_grad
            except Exception:  # a back end that refuses tensors requiring grad (OpenMM)
                differentiable = False
            if differentiable:
                method = "exact" if int(np.prod(event)) <= 32 else "hutchinson"
            else:
                method = "finite-difference"
    elif method == "laplacian" and not callable(getattr(system, "laplacian", None)):
        raise ValueError(f"{type(system).__name__} has no laplacian(x) method; use method='auto'")
    gen = torch.Generator().manual_seed(int(seed))
    flat = pos.reshape((-1,) + event)
    grad_sq = np.empty(flat.shape[0])
    lap = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], batch_size):
        x = torch.as_tensor(np.asarray(flat[start:start + batch_size], dtype=np.float64))
        grad_sq[start:start + len(x)], lap[start:start + len(x)] = _laplacian(system, x, method, n_probes, gen)
    shape = pos.shape[:2]
    r, se, a, b = _ratio_with_error(grad_sq.reshape(shape), lap.reshape(shape))
    return TemperatureEstimate(r, se, a, b, method)


def kinetic_temperature(result, n_dof: Optional[int] = None) -> TemperatureEstimate:
    """Kinetic temperature ``kT_kin = 2⟨K⟩ / N_dof`` of a run with velocities.

    For exact velocity sampling ``kT_kin = kT``. Note the scheme's own law: BAOAB's
    kinetic energy at step ends is ``(1 − h²ω²/4)`` of it on a harmonic well
    (``docs/exact_results.md``, BAOAB), while its positions are exact.

    Parameters
    ----------
    result : SampleResult
        With ``kinetic_energies`` of shape ``(n_frames, n_walkers)``.
    n_dof : int, optional
        Velocity degrees of freedom; default ``prod(event_shape)`` minus the system's
        constraints when it is an OpenMM system.

    Returns
    -------
    TemperatureEstimate
        ``kT`` in energy units; multiply by 1/k_B (``units.MOLAR_GAS_CONSTANT_KJ_PER_MOL_K``)
        for kelvin.
    """
    kin = getattr(result, "kinetic_energies", None)
    if kin is None:
        raise ValueError("this result has no kinetic energies (an overdamped or Metropolis scheme?)")
    kin = np.asarray(kin, dtype=np.float64)
    if kin.ndim != 2 or kin.shape[0] == 0:
        raise ValueError(f"kinetic_energies must have shape (n_frames, n_walkers), got {kin.shape}")
    if n_dof is None:
        n_dof = int(np.prod(result.positions.shape[2:]))
        omm = getattr(getattr(result, "system", None), "openmm_system", None)
        if omm is not None:
            n_dof -= omm.getNumConstraints()
    n_dof = check_positive_number("n_dof", n_dof)
    r, se, a, b = _ratio_with_error(2.0 * kin, np.full_like(kin, n_dof))
    return TemperatureEstimate(r, se, a, b, "kinetic")
