"""MBAR over temperature ladders: free energies of the rungs and reweighting to any temperature.

Every sample of a replica-exchange run (or of several runs of one system at different
temperatures) is a draw from the Boltzmann law of the rung it was at. MBAR (Shirts & Chodera,
J. Chem. Phys. 129, 124105 (2008)) pools all of them: it solves for the reduced free energies
f_k of the K rungs, and any observable can then be averaged at any temperature inside the
ladder's range with the weights

.. math:: w_n(\\beta) \\propto \\frac{e^{-\\beta U(x_n)}}{\\sum_k N_k e^{f_k - \\beta_k U(x_n)}}.

The solve is pymbar's (:class:`pymbar.MBAR`, version 4). For a temperature ladder the reduced
energy of sample n at rung k is u_k(x_n) = U(x_n)/kT_k, so the potential energy of each
sample is all that is needed (no re-evaluation of forces or energies at other rungs).

Correlated samples. Frames are first thinned to a stride of the statistical inefficiency
g = τ of the potential energy (:func:`~langevin_md.analysis.integrated_autocorrelation_time`,
pooled over chains; for replica exchange the largest over the rungs, each rung's series
taken one chain per ladder; for plain runs along each walker), which keeps N small. Errors are then either

* ``"bootstrap"`` (default): MBAR solved again on resamples, with replacement, of whole
  independent chains (ladders of a replica-exchange run, walkers of plain runs). It needs no
  assumption about how long an observable stays correlated, only that chains are
  independent; or
* ``"analytic"``: pymbar's asymptotic covariance, which treats the thinned samples as
  independent. It is too small for an observable slower than the energy (a well population,
  say); use it only when chains are too few to bootstrap.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.special import logsumexp
from .autocorrelation import integrated_autocorrelation_time
from .tempering import at_temperature

__all__ = ["TemperatureMBAR", "Reweighted", "reduced_energies", "temperature_mbar", "mbar_tempering",
           "mbar_runs"]

ERRORS = ("bootstrap", "analytic")
#: Relative difference up to which a sample's recorded kT is its rung's: float32 rounding of
#: a run's recorded kT (6e-8) with room to spare, far below any ladder's spacing.
KT_MATCH_RTOL = 1e-6


def _pymbar():
    # pymbar prints a banner about JAX on import; it says nothing about our results.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pymbar
    return pymbar


def reduced_energies(energies, kT) -> np.ndarray:
    """Reduced energies u_k(x_n) = U(x_n)/kT_k of every sample at every rung.

    Parameters
    ----------
    energies : array_like, shape ``(n_samples,)``
        Potential energies U (energy units, e.g. kJ/mol).
    kT : array_like, shape ``(n_states,)``
        Thermal energy of each rung (same units as ``energies``).

    Returns
    -------
    numpy.ndarray, shape ``(n_states, n_samples)``
        Dimensionless.
    """
    u = np.asarray(energies, dtype=np.float64)
    t = np.asarray(kT, dtype=np.float64)
    if u.ndim != 1 or t.ndim != 1 or t.size < 1:
        raise ValueError(f"energies must have shape (n_samples,) and kT shape (n_states,), got {u.shape} "
                         f"and {t.shape}")
    if not np.all(np.isfinite(u)):
        bad = int(np.flatnonzero(~np.isfinite(u))[0])
        raise ValueError(f"energies must be finite; sample {bad} has U = {u[bad]}")
    if not np.all(np.isfinite(t) & (t > 0)):
        raise ValueError(f"kT must be positive and finite, got {t.tolist()}")
    return u[None, :] / t[:, None]


@dataclass(frozen=True)
class Reweighted:
    """An MBAR estimate at one or more temperatures.

    Attributes
    ----------
    kT : numpy.ndarray, shape ``(n,)``
        Target thermal energies (energy units).
    mean : numpy.ndarray, shape ``(n,)``
        Estimate of ⟨A⟩ at each kT (units of A).
    standard_error : numpy.ndarray, shape ``(n,)``
        Its standard error (bootstrap over chains, or pymbar's analytic one).
    """

    kT: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray


class TemperatureMBAR:
    """MBAR solution for samples of one system drawn at several temperatures.

    Build it with :func:`temperature_mbar` (arrays), :func:`mbar_tempering` (a
    replica-exchange result) or :func:`mbar_runs` (several results). Samples are held
    flattened, ``(n_samples,)``; :meth:`select` maps arrays laid out like the source
    (``(n_frames, n_walkers, ...)``) onto them.

    Attributes
    ----------
    kT_states : numpy.ndarray, shape ``(K,)``
        Thermal energy of each rung, coldest first (energy units).
    free_energies, free_energy_errors : numpy.ndarray, shape ``(K,)``
        Reduced free energies f_k − f_0 (dimensionless: units of kT_k) and their standard
        errors (by ``error``).
    n_per_state : numpy.ndarray of int, shape ``(K,)``
        Samples used at each rung, after thinning.
    stride : int
        Frames kept: every ``stride``-th (≈ the statistical inefficiency of U).
    error : str
        ``"bootstrap"`` or ``"analytic"``.
    """

    def __init__(self, energies, state, chain, kT_states, stride: int = 1, error: str = "bootstrap",
                 n_bootstrap: int = 100, seed: int = 0, layout: Optional[list] = None):
        if error not in ERRORS:
            raise ValueError(f"error must be one of {ERRORS}, got {error!r}")
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}")
        self.energies = np.asarray(energies, dtype=np.float64)
        self.state = np.asarray(state, dtype=np.int64)
        self.chain = np.asarray(chain, dtype=np.int64)
        self.kT_states = np.asarray(kT_states, dtype=np.float64)
        K, N = self.kT_states.size, self.energies.size
        if self.state.shape != (N,) or self.chain.shape != (N,):
            raise ValueError(f"state and chain must have shape ({N},) like energies, got {self.state.shape} "
                             f"and {self.chain.shape}")
        if K < 2 or np.any(np.diff(self.kT_states) <= 0):
            raise ValueError(f"kT_states must hold >= 2 strictly increasing temperatures, got "
                             f"{self.kT_states.tolist()}")
        if N == 0 or self.state.min() < 0 or self.state.max() >= K:
            raise ValueError(f"state must index kT_states (0..{K - 1}) for each of >= 1 samples")
        self.n_per_state = np.bincount(self.state, minlength=K)
        if np.any(self.n_per_state == 0):
            raise ValueError(f"every rung needs samples; counts per rung {self.n_per_state.tolist()}")
        self.stride = int(stride)
        self.error = error
        self._layout = layout
        self._u_kn = reduced_energies(self.energies, self.kT_states)
        self._mbar, self._logden = self._solve(np.arange(N), None)
        f = np.asarray(self._mbar.f_k)
        self.free_energies = f - f[0]
        chains = np.unique(self.chain)
        if error == "bootstrap":
            if chains.size < 2:
                raise ValueError("a bootstrap needs >= 2 independent chains (ladders or walkers); "
                                 "use error='analytic'")
            rng = np.random.default_rng(seed)
            members = [np.flatnonzero(self.chain == c) for c in chains]
            self._replicates = []
            for _ in range(int(n_bootstrap)):
                pick = rng.integers(chains.size, size=chains.size)
                idx = np.concatenate([members[i] for i in pick])
                if np.any(np.bincount(self.state[idx], minlength=K) == 0):
                    continue  # a resample without some rung cannot be solved; rare with whole ladders
                m, logden = self._solve(idx, f)
                self._replicates.append((idx, np.asarray(m.f_k) - m.f_k[0], logden))
            if len(self._replicates) < 2:
                raise ValueError("too few bootstrap resamples held every rung; use error='analytic'")
            self.free_energy_errors = np.stack([r[1] for r in self._replicates]).std(0, ddof=1)
        else:
            self._replicates = []
            d = self._mbar.compute_free_energy_differences()
            self.free_energy_errors = np.asarray(d["dDelta_f"])[0]

    def _solve(self, idx: np.ndarray, initial):
        """pymbar on the samples ``idx``; also log Σ_k N_k exp(f_k − u_k(x_n)) per sample."""
        K = self.kT_states.size
        u = self._u_kn[:, idx]
        n_k = np.bincount(self.state[idx], minlength=K)
        # Samples are passed in their own order; x_kindices tells pymbar where each came from.
        m = _pymbar().MBAR(u, n_k, initial_f_k=initial, x_kindices=self.state[idx])
        f = np.asarray(m.f_k)
        logden = logsumexp(np.log(n_k)[:, None] + f[:, None] - u, axis=0)
        return m, logden

    # ------------------------------------------------------------------ layout
    @property
    def n_samples(self) -> int:
        return int(self.energies.size)

    def select(self, values) -> np.ndarray:
        """Map per-frame values onto the MBAR samples.

        Parameters
        ----------
        values : array_like or sequence of array_like
            ``(n_samples, ...)`` already flattened; or laid out like the source:
            ``(n_frames, n_walkers, ...)`` for a replica-exchange result, one such array per
            result for :func:`mbar_runs`.

        Returns
        -------
        numpy.ndarray, shape ``(n_samples, ...)``
        """
        flat = self._layout is None or (
            not isinstance(values, (list, tuple)) and len(self._layout) == 1
            and np.shape(values)[:2] != self._layout[0][1])
        if flat:
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape[:1] != (self.n_samples,):
                raise ValueError(f"values must have {self.n_samples} samples first, or be laid out like the "
                                 f"source ({self._layout[0][1] if self._layout else ''} + event shape); "
                                 f"got shape {arr.shape}")
            return arr
        parts = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(parts) != len(self._layout):
            raise ValueError(f"expected {len(self._layout)} arrays (one per source), got {len(parts)}")
        out = []
        for v, (frames, shape) in zip(parts, self._layout):
            a = np.asarray(v, dtype=np.float64)
            if a.shape[:2] != shape:
                raise ValueError(f"values have shape {a.shape}; expected {shape} + event shape, like the "
                                 "source's energies")
            out.append(a[frames].reshape((-1,) + a.shape[2:]))
        return np.concatenate(out)

    # ------------------------------------------------------------------ reweighting
    def _check_kT(self, kT) -> np.ndarray:
        t = np.atleast_1d(np.asarray(kT, dtype=np.float64))
        lo, hi = self.kT_states[0], self.kT_states[-1]
        bad = t[~((t >= lo * (1 - 1e-12)) & (t <= hi * (1 + 1e-12)))]
        if bad.size:
            raise ValueError(f"kT = {float(bad[0]):g} lies outside the ladder's range [{lo:.6g}, {hi:.6g}]: MBAR "
                             "cannot extrapolate beyond the sampled temperatures")
        return t

    @staticmethod
    def _weights(energies, logden, kT) -> np.ndarray:
        logw = -energies / kT - logden
        return np.exp(logw - logsumexp(logw))

    def weights(self, kT: float) -> np.ndarray:
        """Normalised MBAR weights of the samples at ``kT``, shape ``(n_samples,)``."""
        t = float(self._check_kT(kT)[0])
        return self._weights(self.energies, self._logden, t)

    def bootstrap_weights(self, kT: float) -> np.ndarray:
        """Weights at ``kT`` of every bootstrap resample, shape ``(n_bootstrap, n_samples)``.

        Row b is the MBAR weight of each sample under resample b's solution, summed over the
        sample's copies (0 for samples not drawn). Empty with ``error='analytic'``.
        """
        t = float(self._check_kT(kT)[0])
        out = np.zeros((len(self._replicates), self.n_samples))
        for b, (idx, _, logden) in enumerate(self._replicates):
            np.add.at(out[b], idx, self._weights(self.energies[idx], logden, t))
        return out

    def expectation(self, values, kT) -> Reweighted:
        """⟨A⟩ at one or more temperatures inside the ladder, with standard errors.

        Parameters
        ----------
        values : array_like
            A per sample (see :meth:`select` for the accepted layouts), scalar per sample.
        kT : float or array_like, shape ``(n,)``
            Target thermal energies, inside ``[kT_states[0], kT_states[-1]]``.
        """
        a = self.select(values)
        if a.ndim != 1:
            raise ValueError(f"values must be one scalar per sample, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("values must be finite")
        t = self._check_kT(kT)
        mean, se = np.empty(t.size), np.empty(t.size)
        for i, kt in enumerate(t):
            if self.error == "analytic":
                r = self._mbar.compute_expectations(a, u_kn=(self.energies / kt)[None, :])
                mean[i], se[i] = float(np.asarray(r["mu"])[0]), float(np.asarray(r["sigma"])[0])
            else:
                mean[i] = self.weights(kt) @ a
                se[i] = (self.bootstrap_weights(kt) @ a).std(ddof=1)
        return Reweighted(t, mean, se)


def temperature_mbar(energies, sample_kT, chain, kT_states=None, stride: int = 1, error: str = "bootstrap",
                     n_bootstrap: int = 100, seed: int = 0) -> TemperatureMBAR:
    """MBAR over samples drawn at several temperatures, from flat arrays.

    Parameters
    ----------
    energies : array_like, shape ``(n_samples,)``
        Potential energy of each sample (energy units).
    sample_kT : array_like, shape ``(n_samples,)``
        kT of the rung each sample was drawn at (same units).
    chain : array_like of int, shape ``(n_samples,)``
        Independent unit of each sample (ladder or walker), resampled whole by the bootstrap.
    kT_states : array_like, shape ``(K,)``, optional
        The rungs; default the distinct values of ``sample_kT``.
    stride : int
        Recorded for information only: thinning already applied by the caller.
    error : {"bootstrap", "analytic"}
    n_bootstrap : int
    seed : int
        Seed of the bootstrap resampling.
    """
    kt = np.asarray(sample_kT, dtype=np.float64).ravel()
    states = np.unique(kt) if kT_states is None else np.asarray(kT_states, dtype=np.float64)
    if states.size == 0:
        raise ValueError("kT_states must hold the rungs' temperatures, got none")
    # The nearest rung, from either side: a run in float32 records kT rounded to float32 (a
    # relative 6e-8), which may fall just above or below the float64 ladder's value.
    right = np.searchsorted(states, kt).clip(0, states.size - 1)
    left = (right - 1).clip(0, states.size - 1)
    pos = np.where(np.abs(states[left] - kt) <= np.abs(states[right] - kt), left, right)
    close = np.isclose(states[pos], kt, rtol=KT_MATCH_RTOL, atol=0)
    if not np.all(close):
        bad = kt[~close][0]
        raise ValueError(f"sample kT {float(bad):g} is not one of kT_states {states.tolist()}")
    return TemperatureMBAR(energies, pos, chain, states, stride, error, n_bootstrap, seed)


def _check_stride(stride) -> int:
    """A given stride: a positive integer (0 or a fraction would keep no frames or crash)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer (keep every stride-th frame), got {stride!r}")
    return int(stride)


def _stride(energies: np.ndarray) -> int:
    """Statistical inefficiency of U along each walker (frames), pooled, rounded up."""

    if energies.shape[0] < 8:
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs: τ is a rough stride, not a verdict
        try:
            tau = float(integrated_autocorrelation_time(energies))
        except ValueError:  # constant energies
            return 1
    return max(1, int(np.ceil(tau)))


def mbar_tempering(result, error: str = "bootstrap", n_bootstrap: int = 100, seed: int = 0,
                   stride: Optional[int] = None) -> TemperatureMBAR:
    """MBAR over every sample of a replica-exchange result.

    Parameters
    ----------
    result : SampleResult
        From :class:`~langevin_md.integrators.ReplicaExchange`: ``fields`` holds
        ``temperature_index`` and ``kT`` ``(n_frames, n_walkers)`` and
        ``integrator_summary['ladder_kT']`` ``(n_ladders, n_T)`` the rungs.
    error : {"bootstrap", "analytic"}
        Bootstrap over ladders (independent chains), or pymbar's analytic error.
    n_bootstrap : int
    seed : int
    stride : int, optional
        Keep every ``stride``-th frame; default the largest statistical inefficiency of U
        over the rungs (each rung's samples, one chain per ladder).

    Returns
    -------
    TemperatureMBAR
        Rungs are the distinct kT of all ladders (ladders adapted apart give more rungs).
        :meth:`~TemperatureMBAR.select` takes arrays ``(n_frames, n_walkers, ...)``.
    """
    fields = getattr(result, "fields", None) or {}
    if "temperature_index" not in fields or "kT" not in fields:
        raise ValueError("this result has no recorded 'temperature_index' and 'kT': it is not a "
                         "replica-exchange run (ReplicaExchange integrator)")
    energies = np.asarray(result.energies, dtype=np.float64)
    kT = np.asarray(fields["kT"], dtype=np.float64)
    n_T = int(np.asarray(fields["temperature_index"])[0].max()) + 1
    F, W = energies.shape
    if stride is None:

        # U at a fixed rung is stationary (along a walker it follows the walker's temperature,
        # whose slow wandering would inflate τ): the largest inefficiency over the rungs.
        idx = fields["temperature_index"]
        stride = max(_stride(at_temperature(idx, k, energies)) for k in range(n_T))
    stride = _check_stride(stride)
    frames = np.arange(0, F, stride)
    chain = np.broadcast_to(np.arange(W) // n_T, (frames.size, W))
    ladder = np.asarray(result.integrator_summary.get("ladder_kT", np.unique(kT)), dtype=np.float64)
    m = temperature_mbar(energies[frames].ravel(), kT[frames].ravel(), chain.ravel(),
                         np.unique(ladder) if ladder.size else None,
                         stride, error, n_bootstrap, seed)
    m._layout = [(frames, (F, W))]
    return m


def mbar_runs(results: Sequence, error: str = "bootstrap", n_bootstrap: int = 100, seed: int = 0,
              stride: Optional[int] = None) -> TemperatureMBAR:
    """MBAR over several plain runs of one system at different temperatures.

    Parameters
    ----------
    results : sequence of SampleResult
        One per temperature (``result.kT`` differ; energies in the same units). Walkers are
        the independent chains of the bootstrap.
    error, n_bootstrap, seed, stride
        As :func:`mbar_tempering` (stride: per run, from its own U by default).

    Returns
    -------
    TemperatureMBAR
        :meth:`~TemperatureMBAR.select` takes a list of arrays ``(n_frames, n_walkers, ...)``,
        one per result, in this order.
    """
    if len(results) < 2:
        raise ValueError(f"mbar_runs needs >= 2 results at different temperatures, got {len(results)}")
    if stride is not None:
        stride = _check_stride(stride)
    e, kt, ch, layout = [], [], [], []
    offset = 0
    for r in results:
        u = np.asarray(r.energies, dtype=np.float64)
        F, W = u.shape
        s = _stride(u) if stride is None else int(stride)
        frames = np.arange(0, F, s)
        e.append(u[frames].ravel())
        kt.append(np.full(frames.size * W, float(r.kT)))
        ch.append(np.broadcast_to(offset + np.arange(W), (frames.size, W)).ravel())
        layout.append((frames, (F, W)))
        offset += W
    if np.unique(np.concatenate(kt)).size != len(results):
        raise ValueError(f"the results must be at distinct temperatures, got kT {[r.kT for r in results]}")
    m = temperature_mbar(np.concatenate(e), np.concatenate(kt), np.concatenate(ch), None,
                         stride or 1, error, n_bootstrap, seed)
    m._layout = layout
    return m
