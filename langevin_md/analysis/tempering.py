"""Analysis of replica-exchange runs: samples per temperature, swap statistics, round trips,
the communication barrier, and plots.

A replica-exchange run (:class:`~langevin_md.integrators.ReplicaExchange`) records each
walker's temperature index per frame, ``temperature_index`` of shape
``(n_frames, n_walkers)`` (``SampleResult.fields``), and summarises its swaps once
(``SampleResult.integrator_summary``). Walkers form ladders of ``n_temperatures``
consecutive walkers; at every frame each ladder holds each temperature index exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..safe_paths import make_dirs

__all__ = [
    "at_temperature", "swap_acceptance", "SwapAcceptance", "temperature_round_trips",
    "TemperatureRoundTrips", "communication_barrier", "plot_replica_traces",
    "plot_swap_acceptance", "tempering_section",
]


def _index(temperature_index) -> tuple[np.ndarray, int, int]:
    """Validate ``(n_frames, n_walkers)`` indices; return them, n_temperatures and n_ladders."""
    idx = np.asarray(temperature_index)
    if idx.ndim != 2 or idx.shape[0] < 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"temperature_index must be an integer array of shape (n_frames, n_walkers), "
                         f"got {idx.dtype} of shape {idx.shape}")
    n_T = int(idx[0].max()) + 1
    n = idx.shape[1]
    if n_T < 2 or n % n_T:
        raise ValueError(f"temperature_index does not describe whole ladders: {n} walkers with "
                         f"indices 0..{n_T - 1}")
    ladders = np.sort(idx.reshape(idx.shape[0], n // n_T, n_T), axis=-1)
    if not (ladders == np.arange(n_T)).all():
        raise ValueError("temperature_index must hold each index 0..n_temperatures-1 once per "
                         "ladder (consecutive groups of n_temperatures walkers) in every frame")
    return idx, n_T, n // n_T


def _source(source, values):
    """(temperature_index, values, steps) from a SampleResult or from arrays."""
    fields = getattr(source, "fields", None)
    if fields is not None:
        if "temperature_index" not in fields:
            raise ValueError("this result has no recorded 'temperature_index': it is not a "
                             "replica-exchange run (ReplicaExchange integrator)")
        return fields["temperature_index"], (source.positions if values is None else values), source.steps
    if values is None:
        raise ValueError("values are required when the first argument is a temperature_index array")
    return source, values, None


def _indices_and_steps(source):
    """(temperature_index, steps or None) from a SampleResult or an index array."""
    if getattr(source, "fields", None) is not None:
        idx, _, steps = _source(source, source.positions)
        return idx, steps
    return source, None


def at_temperature(source, rung: int, values=None) -> np.ndarray:
    """The samples of every ladder at one temperature.

    Parameters
    ----------
    source : SampleResult or numpy.ndarray
        A replica-exchange result, or its ``temperature_index`` array of shape
        ``(n_frames, n_walkers)``.
    rung : int
        Temperature index: 0 is the coldest (the system's own kT), −1 the hottest.
    values : numpy.ndarray, optional
        Shape ``(n_frames, n_walkers, ...)``: what to select, e.g. ``result.energies`` or an
        observable. Default for a result: its positions. Required with an index array.

    Returns
    -------
    numpy.ndarray, shape ``(n_frames, n_ladders, ...)``
        Frame f, column ℓ is the value of the walker of ladder ℓ that held temperature
        ``rung`` at frame f. Columns are independent chains (the ladders), so per-chain
        statistics (R-hat, ESS) apply column-wise.
    """
    idx, values, _ = _source(source, values)
    idx, n_T, L = _index(idx)
    values = np.asarray(values)
    if values.shape[:2] != idx.shape:
        raise ValueError(f"values have shape {values.shape}; expected ({idx.shape[0]}, {idx.shape[1]}, ...) "
                         "like temperature_index")
    if isinstance(rung, bool) or not isinstance(rung, (int, np.integer)) or not -n_T <= rung < n_T:
        raise ValueError(f"rung must be an integer in [-{n_T}, {n_T - 1}], got {rung!r}")
    rung = int(rung) % n_T
    F = idx.shape[0]
    # Position within its ladder of the walker at `rung`, per frame and ladder.
    within = np.argmax(idx.reshape(F, L, n_T) == rung, axis=-1)
    walker = within + n_T * np.arange(L)
    return values[np.arange(F)[:, None], walker]


@dataclass(frozen=True, repr=False)
class SwapAcceptance:
    """Swap acceptance per neighbour pair.

    Attributes
    ----------
    per_ladder : numpy.ndarray, shape ``(n_ladders, n_temperatures − 1)``
        Mean Metropolis probability of the swaps of pair (k, k + 1) in each ladder.
    mean, standard_error : numpy.ndarray, shape ``(n_temperatures − 1,)``
        Mean over ladders and its standard error (spread over ladders / sqrt(n_ladders);
        NaN with one ladder).
    pair_kT : numpy.ndarray, shape ``(n_temperatures − 1,)``
        Geometric mean kT of each pair's two rungs (mean over ladders), for plotting.
    """

    per_ladder: np.ndarray
    mean: np.ndarray
    standard_error: np.ndarray
    pair_kT: np.ndarray

    def __str__(self) -> str:
        """A table: one line per neighbour pair, acceptance as a probability per swap attempt."""
        n_ladders, n_pairs = self.per_ladder.shape
        lines = [f"swap acceptance (probability per swap attempt, mean ± standard error over {n_ladders} "
                 f"ladder{'s' if n_ladders != 1 else ''} of {n_pairs + 1} temperatures)",
                 f"  {'pair':>5}  {'kT of pair':>10}  acceptance"]
        for k, (t, a, e) in enumerate(zip(self.pair_kT, self.mean, self.standard_error)):
            err = "n/a (one ladder)" if not np.isfinite(e) else f"{e:.3f}"
            lines.append(f"  {f'{k}-{k + 1}':>5}  {t:>10.4g}  {a:.3f} ± {err}")
        lines.append(f"communication barrier Λ̂ = Σ(1 − acceptance) = {communication_barrier(self.mean):.3f}")
        return "\n".join(lines)

    __repr__ = __str__  # what an interactive session shows: the table, not the raw arrays


def swap_acceptance(summary: dict) -> SwapAcceptance:
    """Swap acceptance per neighbour pair from a replica-exchange summary.

    Parameters
    ----------
    summary : dict
        ``SampleResult.integrator_summary`` (or ``ReplicaExchange.summary``), with
        ``swap_acceptance`` ``(n_ladders, n_T − 1)`` and ``ladder_kT`` ``(n_ladders, n_T)``.
    """
    acc = np.asarray(summary["swap_acceptance"], dtype=np.float64)
    kT = np.asarray(summary["ladder_kT"], dtype=np.float64)
    if acc.ndim != 2 or kT.shape != (acc.shape[0], acc.shape[1] + 1):
        raise ValueError(f"summary holds swap_acceptance {acc.shape} and ladder_kT {kT.shape}; expected "
                         "(n_ladders, n_T - 1) and (n_ladders, n_T)")
    L = acc.shape[0]
    se = acc.std(0, ddof=1) / np.sqrt(L) if L > 1 else np.full(acc.shape[1], np.nan)
    pair = np.sqrt(kT[:, :-1] * kT[:, 1:]).mean(0)
    return SwapAcceptance(acc, acc.mean(0), se, pair)


def communication_barrier(acceptance) -> np.ndarray:
    """Λ̂ = Σ_k (1 − α_k), the communication barrier of each ladder.

    Syed et al. (JRSS-B 2022, §3–4) show that the rejection rate of a pair approaches
    ∫ λ(β) dβ over its interval as rungs get close, so the sum over pairs estimates
    Λ = ∫ λ(β) dβ, a property of the target and the temperature range alone. The optimal
    non-reversible round-trip rate is 1/(2 + 2Λ). With widely spaced rungs (acceptances
    near 0) the estimate is biased low: refine the ladder.

    Parameters
    ----------
    acceptance : array_like, shape ``(..., n_temperatures − 1)``
        Mean swap acceptance per pair (e.g. ``summary['swap_acceptance']``).

    Returns
    -------
    numpy.ndarray, shape ``(...)``
    """
    acc = np.asarray(acceptance, dtype=np.float64)
    return (1.0 - acc).sum(-1)


@dataclass(frozen=True, repr=False)
class TemperatureRoundTrips:
    """Round trips coldest → hottest → coldest, per ladder.

    Attributes
    ----------
    per_ladder : numpy.ndarray of int, shape ``(n_ladders,)``
        Completed trips of all the ladder's walkers.
    rate : numpy.ndarray, shape ``(n_ladders,)``
        Trips per ladder per step (per frame when no steps are known): see ``rate_unit``.
    mean_rate, standard_error : float
        Mean rate over ladders and its standard error, in ``rate_unit``.
    rate_unit : str
        "trips per step" or "trips per frame".
    """

    per_ladder: np.ndarray
    rate: np.ndarray
    mean_rate: float
    standard_error: float
    rate_unit: str = "trips per step"

    def __str__(self) -> str:
        """Trips per ladder and the rate with its unit."""
        L = self.per_ladder.size
        err = "n/a (one ladder)" if not np.isfinite(self.standard_error) else f"{self.standard_error:.2g}"
        return (f"temperature round trips (coldest → hottest → coldest, counted at recorded frames: a lower "
                f"bound): {int(self.per_ladder.sum())} in {L} ladder{'s' if L != 1 else ''}, "
                f"{self.per_ladder.mean():.3g} per ladder (from {int(self.per_ladder.min())} to "
                f"{int(self.per_ladder.max())}); rate {self.mean_rate:.3g} ± {err} {self.rate_unit} per ladder")

    __repr__ = __str__  # what an interactive session shows: the numbers with their unit


def temperature_round_trips(source, steps=None) -> TemperatureRoundTrips:
    """Count each walker's round trips through temperature space from recorded indices.

    A trip starts when a walker is at the coldest rung (0), needs a visit to the hottest
    (n_T − 1), and ends at the next visit to rung 0. Frames recorded less often than swaps
    can miss visits, so this undercounts; ``integrator_summary['round_trips']`` counts at
    every swap.

    Parameters
    ----------
    source : SampleResult or numpy.ndarray
        A replica-exchange result, or ``temperature_index`` ``(n_frames, n_walkers)``.
    steps : numpy.ndarray, optional
        Step of each frame ``(n_frames,)``; taken from a result. Rates are per step over
        ``steps[-1] − steps[0]`` (per frame when unknown).
    """
    idx, res_steps = _indices_and_steps(source)
    idx, n_T, L = _index(idx)
    steps = res_steps if steps is None else np.asarray(steps)
    phase = np.zeros(idx.shape[1], dtype=np.int64)  # 0: no start yet, 1: after cold, 2: after hot
    trips = np.zeros(idx.shape[1], dtype=np.int64)
    for row in idx:
        cold, hot = row == 0, row == n_T - 1
        trips += cold & (phase == 2)
        phase = np.where(cold, 1, np.where(hot & (phase == 1), 2, phase))
    per_ladder = trips.reshape(L, n_T).sum(1)
    per_step = steps is not None and len(steps) > 1
    span = float(steps[-1] - steps[0]) if per_step else float(idx.shape[0])
    rate = per_ladder / max(span, 1.0)
    se = float(rate.std(ddof=1) / np.sqrt(L)) if L > 1 else float("nan")
    return TemperatureRoundTrips(per_ladder, rate, float(rate.mean()), se,
                                 "trips per step" if per_step else "trips per frame")


# --------------------------------------------------------------------------- plots
def plot_replica_traces(source, path, ladder: int = 0, steps=None, max_frames: int = 400) -> str:
    """Temperature index against step for every walker of one ladder (PNG).

    Parameters
    ----------
    source : SampleResult or numpy.ndarray
        A replica-exchange result, or ``temperature_index`` ``(n_frames, n_walkers)``.
    path : str or PathLike
        Where the PNG goes.
    ladder : int
        Which ladder to draw.
    steps : numpy.ndarray, optional
        x axis ``(n_frames,)`` (a result's own steps by default).
    max_frames : int
        Only the first ``max_frames`` frames are drawn: over longer spans the traces of a
        well-mixed ladder fill the plot.
    """
    from .plots import new_figure, save_figure

    idx, res_steps = _indices_and_steps(source)
    idx, n_T, L = _index(idx)
    if not 0 <= ladder < L:
        raise ValueError(f"ladder must be in [0, {L - 1}], got {ladder!r}")
    steps = res_steps if steps is None else np.asarray(steps)
    x = np.arange(idx.shape[0]) if steps is None else steps
    shown = min(idx.shape[0], max_frames)
    fig, (ax,) = new_figure(1, panel=(8.0, 3.4))
    for j in range(n_T):
        w = ladder * n_T + j
        ax.step(x[:shown], idx[:shown, w], where="post", lw=0.9, alpha=0.85, label=f"walker {w}")
    ax.set_xlabel("step" if steps is not None else "frame")
    ax.set_ylabel("temperature index (0 = coldest)")
    ax.set_yticks(range(n_T))
    part = f", first {shown} of {idx.shape[0]} frames" if shown < idx.shape[0] else ""
    ax.set_title(f"Replica-index traces, ladder {ladder}{part}")
    if n_T <= 8:
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return save_figure(fig, path)


def plot_swap_acceptance(summary: dict, path, unit: str = "") -> str:
    """Swap acceptance of each neighbour pair against its temperature (PNG).

    Each ladder is a faint line; the mean over ladders carries ±2 standard errors. The
    x axis is the geometric mean kT of the pair (log scale).
    """
    from .plots import new_figure, save_figure

    acc = swap_acceptance(summary)
    kT = np.asarray(summary["ladder_kT"], dtype=np.float64)
    pair = np.sqrt(kT[:, :-1] * kT[:, 1:])
    fig, (ax,) = new_figure(1, panel=(6.0, 3.6))
    for row, xs in zip(acc.per_ladder[:32], pair[:32]):
        ax.plot(xs, row, color="0.7", lw=0.6)
    err = None if np.isnan(acc.standard_error).all() else 2 * acc.standard_error
    ax.errorbar(acc.pair_kT, acc.mean, yerr=err, color="C0", marker="o", lw=1.5, capsize=3,
                label="mean over ladders (±2 s.e.)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(acc.pair_kT)
    ax.set_xticklabels([f"{t:.3g}" for t in acc.pair_kT], fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"pair temperature, √(kT_k kT_k+1){' [' + unit + ']' if unit else ''}")
    ax.set_ylabel("swap acceptance")
    ax.set_title(f"Swap acceptance per neighbour pair (Λ̂ = {communication_barrier(acc.mean):.2f})")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def tempering_section(result, folder, unit: str = "") -> str:
    """A Markdown report section for a replica-exchange result, with its two plots.

    Writes ``replica_traces.png`` and ``swap_acceptance.png`` into ``folder`` and returns
    Markdown that links them (relative paths), with a table of swap acceptance per pair,
    the communication barrier and the round-trip rate.
    """
    folder = Path(folder)
    make_dirs(folder)
    summary = result.integrator_summary
    plot_replica_traces(result, folder / "replica_traces.png")
    plot_swap_acceptance(summary, folder / "swap_acceptance.png", unit=unit)
    acc = swap_acceptance(summary)
    lam = communication_barrier(acc.per_ladder)
    trips = np.asarray(summary["round_trips"], dtype=np.float64)
    n_steps = np.asarray(summary["steps"], dtype=np.float64)
    rounds = np.asarray(summary["swap_rounds"], dtype=np.float64)
    rate = trips / np.maximum(n_steps, 1.0)
    per_round = trips / np.maximum(rounds, 1.0)
    L = trips.size
    se = (lambda a: a.std(ddof=1) / np.sqrt(L) if L > 1 else float("nan"))
    lines = ["## Replica exchange", "",
             f"{L} ladders of {acc.mean.size + 1} temperatures, {int(rounds.max())} swap rounds in "
             f"{int(n_steps.max())} steps. Communication barrier Λ̂ = {lam.mean():.3f} ± {se(lam):.3f}. "
             f"Round trips (coldest → hottest → coldest, all walkers of a ladder): "
             f"{trips.mean():.2f} ± {se(trips):.2f} per ladder, {rate.mean():.3g} ± {se(rate):.2g} per "
             f"step, {per_round.mean():.3g} per swap round, against 1/(2 + 2Λ̂) = "
             f"{1 / (2 + 2 * lam.mean()):.3g} for the non-reversible scheme with perfect mixing "
             "at each rung between swaps (Syed et al. 2022).", "",
             "| pair | kT (pair) | acceptance (probability per swap attempt) |", "|---|---|---|"]
    for k, (t, a, e) in enumerate(zip(acc.pair_kT, acc.mean, acc.standard_error)):
        lines.append(f"| {k}–{k + 1} | {t:.4g} | {a:.3f} ± {e:.3f} |")
    lines += ["", "![replica-index traces](replica_traces.png)", "",
              "![swap acceptance](swap_acceptance.png)", ""]
    return "\n".join(lines)
