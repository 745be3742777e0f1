"""Several samplers on one target with one budget of force evaluations, side by side.

:func:`compare` runs each sampler on the same system, from the same starting positions, with
the same number of force evaluations per walker (HMC spends L per step, so it gets 1/L of the
steps), and tabulates what a user needs to choose between them:

* **bias against the exact answer** where the system knows one: mode weights (Gaussian
  mixtures: :meth:`~langevin_md.systems.mixture.GaussianMixture.assignment_probabilities`;
  double wells: :attr:`~langevin_md.systems.double_well.DoubleWell.mode_weights`) and the
  mean and variance of coordinate 0 (systems with ``mean``/``variance`` whose
  ``exact_marginal`` exists), each as a z-score with the standard error taken across
  independent walkers;
* **acceptance** (Metropolis-adjusted schemes);
* **τ** of the observable in force evaluations, **ESS**, **ESS per second** and **ESS per
  1000 force evaluations** (all walkers, burn-in included in the cost);
* **R-hat** across walkers, and whether the run **diverged** (a non-finite state).

A verdict sums the row up: ``diverged``; ``collapsed`` (a mode of exact weight ≥ 5 % holds
less than a fifth of it); ``stuck`` (R-hat > 1.1, or fewer than 2 effective samples per
walker); ``biased`` (some |z| > 5); else ``ok``. Bias z-scores assume the walkers mixed: a
stuck row's small z means nothing, which is why walkers that start in one place (not at exact
draws) make the fairest comparison.

:func:`step_size_sweep` runs one sampler at several step sizes and
:func:`~langevin_md.compare.plots.plot_step_size_sweep` draws the classic picture: too small a step is stuck, about the
right step mixes, too large a step diverges (unadjusted schemes) or collapses onto one mode
(Metropolis schemes whose acceptance vanishes).

Annealed Langevin is a one-pass schedule, not a Markov chain: it is run once over its
``n_steps`` and judged by the law of its final positions (ESS = walkers, τ and R-hat undefined).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from .. import integrators
from ..analysis import ShortChainWarning, effective_sample_size, integrated_autocorrelation_time, rhat
from ..errors import NonFiniteStateError
from ..safe_paths import open_for_write
from ..executors import sample
from ..integrators import Integrator
from ..units import parse_quantity

__all__ = ["SamplerReport", "Comparison", "compare", "step_size_sweep", "force_evaluations_per_step",
           "build_samplers"]

#: Frames kept per walker at most (the series is thinned to this).
MAX_FRAMES = 1000
#: |z| above which a bias is reported.
Z_MAX = 5.0
_STEP_FIELDS = ("step_size", "timestep", "scale")


def force_evaluations_per_step(integrator) -> int:
    """Force (energy) evaluations one step of ``integrator`` costs: L for HMC, else 1."""
    return int(getattr(integrator, "n_leapfrog", 1))


def _is_annealed(integrator) -> bool:
    return hasattr(integrator, "sigmas") and hasattr(integrator, "n_steps")


@dataclass
class SamplerReport:
    """One row of a comparison.

    Attributes
    ----------
    name : str
    step_size : float or None
        The integrator's step parameter (``step_size``, ``timestep`` or ``scale``).
    steps : int
        Integrator steps per walker, burn-in included.
    force_evaluations : int
        Per walker, burn-in included.
    acceptance : float or None
    tau : float
        Integrated autocorrelation time of the observable, in force evaluations (nan when
        undefined).
    ess : float
        Effective sample size of the observable, all walkers.
    ess_per_second : float
    ess_per_1000_evaluations : float
        ESS per 1000 force evaluations summed over walkers.
    rhat : float
    mode_weights : numpy.ndarray or None
        Estimated weight of each mode.
    exact_mode_weights : numpy.ndarray or None
    weight_error : float or None
        max_j |ŵ_j − w_j|.
    z : dict of str to float
        Bias z-scores: ``"weight j"``, ``"mean"``, ``"variance"`` where known.
    estimates : dict of str to (float, float)
        The estimate and its standard error (across walkers) behind each z-score.
    diverged : bool
    verdict : str
    wall_time : float
        Seconds.
    samples : numpy.ndarray
        Observable values of the production frames (thinned), for plots.
    message : str
        The error message when the run diverged.
    """

    name: str
    step_size: Optional[float]
    steps: int
    force_evaluations: int
    acceptance: Optional[float]
    tau: float
    ess: float
    ess_per_second: float
    ess_per_1000_evaluations: float
    rhat: float
    mode_weights: Optional[np.ndarray]
    exact_mode_weights: Optional[np.ndarray]
    weight_error: Optional[float]
    z: dict
    diverged: bool
    verdict: str
    wall_time: float
    estimates: dict = field(default_factory=dict)
    samples: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    message: str = ""

    @property
    def max_abs_z(self) -> float:
        vals = [abs(v) for v in self.z.values() if np.isfinite(v)]
        return max(vals) if vals else math.nan


COLUMNS = ("sampler", "step", "steps", "force_evals", "acceptance", "tau_evals", "ess", "ess_per_s",
           "ess_per_1k_evals", "rhat", "weight_error", "max_abs_z", "diverged", "verdict")


def _cell(v, spec=".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "-" if not np.isfinite(v) else format(float(v), spec)


@dataclass
class Comparison:
    """The rows of :func:`compare` (or :func:`step_size_sweep`) plus how they were run.

    Attributes
    ----------
    rows : list of SamplerReport
    n_force_evals : int
        Budget per walker.
    n_walkers : int
    seed : int
    observable : str
        What τ, ESS and R-hat were computed on.
    exact : dict
        The exact answers used (``"mode_weights"``, ``"mean"``, ``"variance"``).
    """

    rows: list
    n_force_evals: int
    n_walkers: int
    seed: int
    observable: str
    exact: dict

    def records(self) -> list[dict]:
        """One dict per row with the :data:`COLUMNS` as keys (strings formatted for tables)."""
        out = []
        for r in self.rows:
            out.append({
                "sampler": r.name, "step": _cell(r.step_size), "steps": _cell(r.steps),
                "force_evals": _cell(r.force_evaluations), "acceptance": _cell(r.acceptance),
                "tau_evals": _cell(r.tau), "ess": _cell(r.ess, ".4g"), "ess_per_s": _cell(r.ess_per_second, ".4g"),
                "ess_per_1k_evals": _cell(r.ess_per_1000_evaluations), "rhat": _cell(r.rhat, ".4g"),
                "weight_error": _cell(r.weight_error), "max_abs_z": _cell(r.max_abs_z), "diverged": _cell(r.diverged),
                "verdict": r.verdict,
            })
        return out

    def table(self) -> str:
        """A fixed-width text table of every row."""
        recs = self.records()
        widths = {c: max(len(c), *(len(r[c]) for r in recs)) if recs else len(c) for c in COLUMNS}
        lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in recs]
        exact = ", ".join(f"{k} = {np.array2string(np.asarray(v), precision=4)}" for k, v in self.exact.items())
        lines.append(f"budget: {self.n_force_evals} force evaluations per walker, {self.n_walkers} walkers, "
                     f"seed {self.seed}; tau/ESS/R-hat of {self.observable}" + (f"; exact: {exact}" if exact else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def save(self, path) -> str:
        """Write the rows as CSV (``.csv``) or the text table (any other suffix); return the path."""
        path = os.fspath(path)
        if path.endswith(".csv"):
            with open_for_write(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(COLUMNS))
                w.writeheader()
                w.writerows(self.records())
        else:
            with open_for_write(path, "w") as f:
                f.write(self.table() + "\n")
        return path

    def row(self, name: str) -> SamplerReport:
        """The row called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no sampler called {name!r}; rows are {[r.name for r in self.rows]}")


# --------------------------------------------------------------------------- exact answers
def _mode_rule(system):
    """(assign(x (..., dim) array) -> int array, exact weights) or None."""
    if hasattr(system, "mode_assignment") and hasattr(system, "assignment_probabilities"):
        p, _ = system.assignment_probabilities()
        return (lambda x: np.asarray(system.mode_assignment(np.asarray(x))), np.asarray(p))
    if hasattr(system, "barrier_top") and hasattr(system, "mode_weights"):
        top = float(system.barrier_top)
        return (lambda x: (np.asarray(x)[..., 0] > top).astype(np.int64), np.asarray(system.mode_weights))
    return None


def _moments(system):
    """(exact mean, exact variance) of coordinate 0, or None."""
    if len(system.event_shape) != 1:
        return None
    try:
        if system.exact_marginal(0, np.array([-1.0, 1.0])) is None:
            return None
    except (NotImplementedError, ValueError):
        return None
    mean = getattr(system, "mean", None)
    var = getattr(system, "variance", None)
    if var is None and getattr(system, "covariance", None) is not None:
        var = np.diagonal(np.asarray(system.covariance))
    if mean is None or var is None:
        return None
    mean, var = np.atleast_1d(np.asarray(mean, dtype=np.float64)), np.atleast_1d(np.asarray(var, dtype=np.float64))
    if mean.shape[0] < 1 or var.shape[0] < 1:
        return None
    return float(mean[0]), float(var[0])


def _observable(system, observable):
    if observable is not None:
        if not callable(observable):
            raise TypeError(f"observable must be a callable positions -> (n_frames, n_walkers) array, got {observable!r}")
        return observable, getattr(observable, "__name__", "observable")
    if len(system.event_shape) == 1:
        return (lambda pos, energies: pos[..., 0]), "x[0]"
    return (lambda pos, energies: energies), "potential energy"


# --------------------------------------------------------------------------- one run
def _step_value(integrator) -> Optional[float]:
    for f in _STEP_FIELDS:
        v = getattr(integrator, f, None)
        if v is not None:
            return float(v)
    return None


def _across_walkers(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error) of per-walker values (n_walkers,)."""
    n = values.shape[0]
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(values.mean()), se


def _run_one(name, system, integrator, n_force_evals, n_walkers, seed, initial_positions, burn_in_fraction,
             obs_fn, modes, moments, device, dtype) -> SamplerReport:
    cost = force_evaluations_per_step(integrator)
    annealed = _is_annealed(integrator)
    if annealed:
        steps = int(integrator.n_steps)
        if steps * cost > n_force_evals:
            raise ValueError(f"{name}: the annealing schedule takes {steps} force evaluations per walker, more than "
                             f"the budget n_force_evals={n_force_evals}; shorten the schedule or raise the budget")
        burn_in, n_prod, record_every = 0, steps, steps
    else:
        steps = n_force_evals // cost
        if steps < 10:
            raise ValueError(f"{name}: a budget of {n_force_evals} force evaluations gives only {steps} steps at "
                             f"{cost} evaluations per step; raise n_force_evals")
        burn_in = int(burn_in_fraction * steps)
        n_prod = steps - burn_in
        record_every = max(1, n_prod // MAX_FRAMES)
        n_prod -= n_prod % record_every
        steps = burn_in + n_prod
    acceptance = None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # The table itself reports stuck samplers (a sweep makes some on purpose), so the
            # end-of-run warnings of sample() would only repeat it once per row.
            warnings.filterwarnings("ignore", message=r"(mean acceptance .* is below|\d+ of \d+ walkers never moved)",
                                    category=RuntimeWarning)
            # One executor for every row: times and budgets compare schemes, not engines.
            result = sample(system, integrator, n_steps=n_prod, n_walkers=n_walkers,
                                record_every=record_every, burn_in=burn_in, seed=seed, device=device,
                                dtype=dtype, initial_positions=initial_positions, progress=False,
                                backend="torch")
    except NonFiniteStateError as exc:
        return SamplerReport(name, _step_value(integrator), steps, steps * cost, None, math.nan, 0.0, 0.0, 0.0,
                             math.nan, None, None if modes is None else modes[1], None, {}, True, "diverged",
                             time.perf_counter() - t0, {}, np.empty(0), str(exc).splitlines()[0])
    wall = result.wall_time if result.wall_time > 0 else time.perf_counter() - t0
    if result.acceptance_rate is not None:
        acceptance = float(np.mean(result.acceptance_rate))
    positions = np.asarray(result.positions)
    series = np.asarray(obs_fn(positions, np.asarray(result.energies)), dtype=np.float64)
    if not np.all(np.isfinite(series)):
        return SamplerReport(name, _step_value(integrator), steps, steps * cost, acceptance, math.nan, 0.0, 0.0, 0.0,
                             math.nan, None, None if modes is None else modes[1], None, {}, True, "diverged", wall,
                             {}, np.empty(0), "non-finite observable")
    n_frames = series.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):  # far-flung but finite walkers: inf z, no warning
        return _summarise(name, integrator, system, steps, cost, annealed, acceptance, positions, series, n_frames,
                          n_walkers, record_every, wall, modes, moments)


def _summarise(name, integrator, system, steps, cost, annealed, acceptance, positions, series, n_frames, n_walkers,
               record_every, wall, modes, moments) -> SamplerReport:

    if annealed or n_frames < 4:
        tau = math.nan
        ess = float(n_walkers) if annealed else math.nan
        r_hat = math.nan
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortChainWarning)
            if np.all(np.ptp(series, axis=0) == 0.0):  # no walker moved: nothing mixes
                tau, ess, r_hat = math.inf, 0.0, math.inf
            else:
                tau = float(integrated_autocorrelation_time(series)) * record_every * cost
                ess = float(effective_sample_size(series))
                try:
                    r_hat = float(rhat(series))
                except ValueError:
                    r_hat = math.inf
    total_evals = n_walkers * steps * cost
    z, estimates = {}, {}
    weights = weight_error = None
    verdict_collapsed = False
    if modes is not None:
        assign, exact_w = modes
        labels = assign(positions)  # (n_frames, n_walkers)
        k = exact_w.shape[0]
        per_walker = np.stack([(labels == j).mean(axis=0) for j in range(k)], axis=1)  # (n_walkers, k)
        weights = per_walker.mean(axis=0)
        weight_error = float(np.max(np.abs(weights - exact_w)))
        for j in range(k):
            m, se = _across_walkers(per_walker[:, j])
            estimates[f"weight {j}"] = (m, se)
            z[f"weight {j}"] = (m - exact_w[j]) / se if se > 0 else (0.0 if m == exact_w[j] else math.inf)
        verdict_collapsed = bool(np.any((exact_w >= 0.05) & (weights < 0.2 * exact_w)))
    if moments is not None:
        mu, var = moments
        x0 = positions[..., 0].reshape(n_frames, n_walkers)
        m, se = _across_walkers(x0.mean(axis=0))
        estimates["mean"] = (m, se)
        z["mean"] = (m - mu) / se if se > 0 else math.inf
        m2, se2 = _across_walkers(((x0 - mu) ** 2).mean(axis=0))
        estimates["variance"] = (m2, se2)
        z["variance"] = (m2 - var) / se2 if se2 > 0 else math.inf
    row = SamplerReport(
        name=name, step_size=_step_value(integrator), steps=steps, force_evaluations=steps * cost,
        acceptance=acceptance, tau=tau, ess=ess, ess_per_second=ess / wall if wall > 0 and np.isfinite(ess) else math.nan,
        ess_per_1000_evaluations=1000.0 * ess / total_evals if np.isfinite(ess) else math.nan, rhat=r_hat,
        mode_weights=weights, exact_mode_weights=None if modes is None else modes[1], weight_error=weight_error, z=z,
        diverged=False, verdict="ok", wall_time=wall, estimates=estimates,
        samples=series[-min(n_frames, 200):].ravel())
    if r_hat == math.inf and ess == 0.0:
        row.verdict = "stuck"  # no walker moved at all: whatever it "collapsed" onto is its start
    elif verdict_collapsed:
        row.verdict = "collapsed"
    elif not annealed and ((np.isfinite(r_hat) and r_hat > 1.1) or r_hat == math.inf
                           or (np.isfinite(ess) and ess < 2 * n_walkers)):
        row.verdict = "stuck"
    elif np.isfinite(row.max_abs_z) and row.max_abs_z > Z_MAX or (z and not np.isfinite(row.max_abs_z)):
        row.verdict = "biased"
    return row


def _check_common(n_force_evals, n_walkers, seed, burn_in_fraction):
    for nm, v, lo in (("n_force_evals", n_force_evals, 1), ("n_walkers", n_walkers, 2), ("seed", seed, 0)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{nm} must be an integer >= {lo}, got {v!r}")
    f = float(burn_in_fraction)
    if not 0.0 <= f < 1.0:
        raise ValueError(f"burn_in_fraction must be in [0, 1), got {burn_in_fraction!r}")
    return f


def _exact(system):
    modes, moments = _mode_rule(system), _moments(system)
    exact = {}
    if modes is not None:
        exact["mode_weights"] = modes[1]
    if moments is not None:
        exact["mean"], exact["variance"] = moments
    return modes, moments, exact


def build_samplers(spec: Mapping) -> dict:
    """Integrators from a config table: ``{name: {"type": "MALA", "step_size": 0.3}, ...}``.

    ``type`` names a class of :mod:`langevin_md.integrators` (``ULA``, ``MALA``, ``HMC``,
    ``RandomWalkMetropolis``, ``BAOAB``, ``OBABO``, ``Brownian``, ``AnnealedLangevin``, ...);
    the other keys are its constructor's fields. This is the ``[samplers]`` table of a
    ``langevin-md compare`` config, e.g.::

        [samplers.MALA]
        type = "MALA"
        step_size = 0.3          # or text with a unit, e.g. "0.01 nm**2"

    Returns
    -------
    dict of str to Integrator, in the order given.
    """

    if not isinstance(spec, Mapping) or not spec:
        raise TypeError(f"samplers must be a non-empty table of name -> settings, got {spec!r}")
    out = {}
    for name, settings in spec.items():
        if not isinstance(settings, Mapping) or "type" not in settings:
            raise ValueError(f"sampler {name!r} must be a table with a 'type' key (e.g. type = \"MALA\"), got {settings!r}")
        kind = settings["type"]
        cls = getattr(integrators, str(kind), None)
        if not (isinstance(cls, type) and issubclass(cls, integrators.Integrator)) or cls is integrators.Integrator:
            known = sorted(n for n in integrators.__all__ if isinstance(getattr(integrators, n), type)
                           and issubclass(getattr(integrators, n), integrators.Integrator) and n != "Integrator")
            raise ValueError(f"sampler {name!r}: unknown type {kind!r}; known integrators are {known}")
        if cls is integrators.ReplicaExchange:
            # It wraps another integrator (its `inner`), which a flat TOML table cannot hold.
            raise ValueError(
                f"sampler {name!r}: type = \"ReplicaExchange\" wraps another sampler and cannot be a "
                "[samplers] table of its own. Compare the scheme it would wrap here (e.g. type = \"MALA\"), "
                "and run replica exchange with `langevin-md run` and a [tempering] table in the run "
                "config (n_temperatures, max_temperature, swap_every)")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in settings.items() if k != "type"}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ValueError(f"sampler {name!r}: {cls.__name__} has no setting(s) {unknown}; its settings are "
                             f"{sorted(fields)}")
        for key in getattr(cls, "physical_units", {}):
            # "2 fs", "0.01 nm**2": text with a unit, as in a run config's [integrator] table
            if key in kwargs:
                kwargs[key] = _with_units(name, key, kwargs[key])
        if "sigmas" in kwargs:
            kwargs["sigmas"] = tuple(kwargs["sigmas"])
        out[str(name)] = cls(**kwargs)
    return out


def _with_units(sampler: str, key: str, value):
    """``value`` with any ``"<number> <unit>"`` text read as an ``openmm.unit`` Quantity."""

    if isinstance(value, (list, tuple)):
        return [_with_units(sampler, key, v) for v in value]
    if not isinstance(value, str):
        return value
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise ValueError(f"sampler {sampler!r}: {key} = {value!r}: {exc}") from None


def compare(system, samplers: Mapping, n_force_evals: int, n_walkers: int = 64, seed: int = 0,
            initial_positions=None, burn_in_fraction: float = 0.2, observable: Optional[Callable] = None,
            device=None, dtype=None) -> Comparison:
    """Run every sampler on ``system`` with the same force-evaluation budget and tabulate them.

    Parameters
    ----------
    system : System
    samplers : mapping of str to Integrator
        e.g. ``{"ULA": ULA(step_size=0.05), "MALA": MALA(step_size=0.3), "HMC": HMC(0.2, 10)}``.
    n_force_evals : int
        Force evaluations per walker, burn-in included; HMC with L leapfrog steps gets
        ``n_force_evals // L`` steps.
    n_walkers : int
        Independent walkers (≥ 2: the standard errors come from their spread).
    seed : int
        The same seed for every sampler.
    initial_positions : array_like, optional
        ``(n_walkers, *event_shape)`` or ``event_shape``: where every sampler starts. Default:
        the system's own starting positions.
    burn_in_fraction : float
        Share of each chain's steps discarded (0 ≤ f < 1).
    observable : callable, optional
        ``observable(positions (n_frames, n_walkers, *event_shape), energies (n_frames,
        n_walkers)) -> (n_frames, n_walkers)`` for τ, ESS and R-hat. Default: coordinate 0 of
        ``(dim,)`` systems, else the potential energy.
    device, dtype
        Passed to :func:`langevin_md.sample`.

    Returns
    -------
    Comparison
        ``print(comparison)`` shows the table; ``comparison.save("table.csv")`` writes it.
    """

    if not isinstance(samplers, Mapping) or not samplers:
        raise TypeError(f"samplers must be a non-empty mapping of name to Integrator, got {samplers!r}")
    for nm, integ in samplers.items():
        if not isinstance(nm, str) or not isinstance(integ, Integrator):
            raise TypeError(f"samplers must map names (str) to langevin_md Integrators, got {nm!r}: {integ!r}")
    burn_in_fraction = _check_common(n_force_evals, n_walkers, seed, burn_in_fraction)
    obs_fn, obs_name = _observable(system, observable)
    modes, moments, exact = _exact(system)
    rows = [_run_one(nm, system, integ, int(n_force_evals), int(n_walkers), int(seed), initial_positions,
                     burn_in_fraction, obs_fn, modes, moments, device, dtype) for nm, integ in samplers.items()]
    return Comparison(rows, int(n_force_evals), int(n_walkers), int(seed), obs_name, exact)


def step_size_sweep(system, integrator, step_sizes: Sequence[float], n_force_evals: int, n_walkers: int = 64,
                    seed: int = 0, initial_positions=None, burn_in_fraction: float = 0.2,
                    observable: Optional[Callable] = None, device=None, dtype=None) -> Comparison:
    """Run ``integrator`` at each step size (its ``step_size``, ``timestep`` or ``scale``).

    Parameters
    ----------
    integrator : Integrator
        A template; the step parameter is replaced by each value of ``step_sizes``.
    step_sizes : sequence of float
        Positive values, in the integrator's units (length² for ULA/MALA ε, time for HMC's h
        and BAOAB's timestep, length for RWM's scale).
    n_force_evals, n_walkers, seed, initial_positions, burn_in_fraction, observable, device, dtype
        As in :func:`compare`.

    Returns
    -------
    Comparison
        One row per step size, named ``"<Integrator> <field>=<value>"``.
    """

    if not isinstance(integrator, Integrator):
        raise TypeError(f"integrator must be a langevin_md Integrator, got {type(integrator).__name__}")
    fieldname = next((f for f in _STEP_FIELDS if getattr(integrator, f, None) is not None), None)
    if fieldname is None:
        raise ValueError(f"{type(integrator).__name__} has no step_size, timestep or scale to sweep")
    values = [float(v) for v in step_sizes]
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"step_sizes must be a non-empty list of positive numbers, got {step_sizes!r}")
    changes = {}
    if getattr(integrator, "target_accept", None) is not None:
        changes["target_accept"] = None  # a sweep studies fixed steps; adaptation would undo it
    samplers = {f"{type(integrator).__name__} {fieldname}={v:g}": dataclasses.replace(integrator, **{fieldname: v},
                                                                                       **changes)
                for v in values}
    return compare(system, samplers, n_force_evals, n_walkers, seed, initial_positions, burn_in_fraction,
                   observable, device, dtype)
