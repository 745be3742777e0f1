"""Sampling-quality reports: a folder of PNG plots plus ``report.md``, ``report.html`` and
``report.json``.

:func:`report` analyses a :class:`~langevin_md.result.SampleResult`; :func:`main` is what
``langevin-md analyze RUN_DIR`` runs (it writes ``RUN_DIR/report``).

The table has one row per observable — the potential energy, each coordinate of a low-
dimensional system, or the backbone φ/ψ of a molecule (treated circularly) — with the mean ±
its Monte Carlo standard error, the integrated autocorrelation time τ (in sampler steps), the
effective sample size, ESS per second of wall time and the split rank-normalised R-hat. Where
the system knows its exact law (``exact="auto"``), histograms are compared with it, and the
configurational (and kinetic) temperature with kT. Problems are spelled out as plain-language
warnings.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..safe_paths import atomic_write, make_dirs
from .plots import (Observable, plot_acceptance, plot_autocorrelations, plot_histograms, plot_ramachandran,
                    plot_running_means, plot_traces)

__all__ = ["report", "Report", "ObservableRow", "Check"]

#: R-hat above this means the walkers have not converged to one law (Vehtari et al. 2021).
RHAT_WARN = 1.01
#: A chain shorter than this many τ gives unreliable τ, ESS and MCSE (emcee's rule).
MIN_TAUS = 50
#: Metropolis acceptance below this means the proposals are too bold.
LOW_ACCEPTANCE = 0.2
#: |z| above this fails an exact comparison (the testing rule of docs/exact_results.md).
Z_FAIL = 5.0
#: Coordinates of analytic systems up to this dimension get their own rows and plots.
MAX_COORDINATES = 6
#: Configurations used for the configurational temperature (evenly strided subsample); fewer
#: for OpenMM systems, whose Laplacian costs four force evaluations per configuration.
MAX_CONFIGURATIONS = 4000
MAX_OPENMM_CONFIGURATIONS = 1000
#: Name of the exact check on the positions alone (the kinetic-temperature warning points to it).
CONFIGURATIONAL_CHECK = "configurational temperature ⟨|∇U|²⟩/⟨∇²U⟩"


@dataclass
class ObservableRow:
    """One row of the report table. τ is in sampler steps; angles are in degrees."""

    name: str
    unit: str
    mean: float
    mcse: float
    tau_steps: float
    ess: float
    ess_per_second: float
    rhat: float
    circular: bool


@dataclass
class Check:
    """A comparison with an exact answer: measured value against exact, as a z-score.

    ``rule`` states the pass condition that ``passed`` applies (e.g. "|z| ≤ 5", or
    "z ≤ 5, one-sided" for a distance, where a negative z is good news), so that the verdict
    and the z it rests on are printed together and cannot read as a contradiction.
    """

    name: str
    measured: str
    exact: str
    z: float
    passed: bool
    note: str = ""
    rule: str = f"|z| ≤ {Z_FAIL:g}"


@dataclass
class Report:
    """What :func:`report` wrote and found."""

    output_dir: Path
    rows: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    states: Optional[dict] = None
    #: Extra Markdown sections (e.g. replica exchange), placed before the plots.
    sections: list = field(default_factory=list)

    def row(self, name: str) -> ObservableRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no observable {name!r}; have {[r.name for r in self.rows]}")


# --------------------------------------------------------------------------- observables
def _record_every(result) -> float:
    steps = np.asarray(result.steps)
    if steps.size >= 2:
        return float(max(1, steps[1] - steps[0]))
    return 1.0


def _observables(result, angles) -> tuple[list, list[str]]:
    steps = np.asarray(result.steps)
    unit = "kJ/mol" if len(result.event_shape) == 2 else ""
    obs = [Observable("energy", result.energies, unit, None, steps)]
    # A force field with a prior records its two energies apart (ForceFieldWithPrior).
    for name in PRIOR_ENERGIES:
        if name in result.fields:
            obs.append(Observable(name, np.asarray(result.fields[name], dtype=np.float64), unit, None, steps))
    notes = []
    if angles is not None:
        phi, psi = angles
        obs.append(Observable("φ", np.degrees(phi), "deg", 360.0, steps))
        obs.append(Observable("ψ", np.degrees(psi), "deg", 360.0, steps))
    elif len(result.event_shape) == 1:
        d = result.event_shape[0]
        for i in range(min(d, MAX_COORDINATES)):
            obs.append(Observable(f"x[{i}]", result.positions[..., i], "", None, steps))
        if d > MAX_COORDINATES:
            notes.append(f"only the first {MAX_COORDINATES} of {d} coordinates are tabulated")
    return obs, notes


def _row(obs: Observable, record_every: float, wall_time: float, warn: list) -> ObservableRow:
    from .autocorrelation import ShortChainWarning, integrated_autocorrelation_time
    from .circular import circular_mean
    from .convergence import mcse, rhat

    v = obs.values
    n, w = v.shape
    nan = float("nan")
    if np.all(v.max(0) == v.min(0)):
        warn.append(f"{obs.name} never changes in any walker: the walkers are stuck (step size too "
                    "large, or every proposal rejected)")
        return ObservableRow(obs.name, obs.unit, float(v.mean()), nan, nan, nan, nan, nan, obs.period is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        try:
            tau = float(integrated_autocorrelation_time(v, period=obs.period))
        except ValueError:
            tau = nan
        try:
            err = float(mcse(v, period=obs.period))
        except ValueError:
            err = nan
    mean = float(circular_mean(v, obs.period)) if obs.period else float(v.mean())
    try:
        r = rhat(v, period=obs.period)
    except ValueError:
        r = nan
    ess = n * w / tau if np.isfinite(tau) else nan
    eps = ess / wall_time if wall_time > 0 else nan
    if np.isfinite(tau) and n < MIN_TAUS * tau:
        # In sampler steps, the unit of the table's τ column (one frame is record_every steps).
        warn.append(f"chain shorter than {MIN_TAUS} τ for {obs.name}: {n} frames per walker = "
                    f"{n * record_every:.6g} steps, τ = {tau * record_every:.3g} steps; τ, ESS and the "
                    "error bars are unreliable (usually too optimistic): run longer")
    if np.isfinite(r) and r > RHAT_WARN:
        verdict = "not mixed" if r > 1.1 else "not yet converged; run longer"
        what = "the walkers disagree" if w > 1 else "the two halves of the chain disagree"
        warn.append(f"R-hat {r:.2f} for {obs.name}: {what}; {verdict}")
    return ObservableRow(obs.name, obs.unit, mean, err, tau * record_every, ess, eps, r, obs.period is not None)


# --------------------------------------------------------------------------- exact laws
def _exact_marginals(system, obs_names: list[str], positions: np.ndarray) -> dict:
    """Exact 1-d law of each coordinate observable the system knows: name -> ExactMarginal."""
    out = {}
    for name in obs_names:
        if not name.startswith("x["):
            continue
        i = int(name[2:-1])
        v = positions[..., i]
        lo, hi = np.quantile(v, [0.0005, 0.9995])
        pad = 0.1 * (hi - lo)
        marginal = system.exact_marginal(i, np.linspace(lo - pad, hi + pad, 61))
        if marginal is not None:
            out[name] = marginal
    return out


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or not np.isfinite(x):
        return "n/a" if x is None or np.isnan(x) else ("∞" if x > 0 else "−∞")
    return f"{x:.{digits}g}"


def _exact_checks(result, system, obs: list, rows: dict, warn: list, checks: list) -> dict:
    """Distribution distances, energy law and configurational temperature; returns the
    exact densities for the histogram plot."""
    from .distributions import configurational_temperature, distance_to_probabilities, ks_test

    plot_exact = {}
    marginals = _exact_marginals(system, [o.name for o in obs], result.positions)
    for o in obs:
        if o.name not in marginals:
            continue
        edges, p, grid, dens = marginals[o.name]
        plot_exact[o.name] = (grid, dens)
        ess = rows[o.name].ess
        d = distance_to_probabilities(o.values, edges, p, "tv",
                                      n_effective=min(ess, o.values.size) if np.isfinite(ess) else None)
        # One-sided: z = (distance − noise level) / noise SD, so only a distance above the noise
        # fails; a negative z (however large) means closer to exact than noise predicts.
        ok = d.z <= Z_FAIL
        checks.append(Check(f"histogram of {o.name} vs exact (total variation)", _fmt(d.distance, 3),
                            f"noise level {_fmt(d.noise_floor, 3)}", d.z, ok,
                            f"z = (distance − noise level) / noise SD; z < 0: closer to exact than sampling "
                            f"noise predicts; {len(edges) - 1} bins, ESS {_fmt(ess, 3)}",
                            f"z ≤ {Z_FAIL:g}, one-sided"))
        if not ok:
            warn.append(f"the distribution of {o.name} differs from the exact one: total variation "
                        f"{d.distance:.3f}, where sampling noise alone gives about {d.noise_floor:.3f} "
                        f"(z = {d.z:.1f}): biased or not converged")
    energy_law = system.exact_energy_law()
    if energy_law is not None:
        ks = ks_test(result.energies, energy_law)
        ok = ks.pvalue > 1e-6
        checks.append(Check("energy law (KS test against the system's exact law)", f"D = {ks.statistic:.4f}",
                            f"p-value {ks.pvalue:.2g}", float("nan"), ok,
                            f"{ks.n_used} samples, every {ks.thin}th frame", "p-value > 1e-6"))
        if not ok:
            warn.append(f"the energy distribution is not the system's exact law (KS p-value {ks.pvalue:.1e})")
    n_dof = int(np.prod(result.event_shape))
    cheap = callable(getattr(system, "laplacian", None)) or n_dof <= 64 or getattr(system, "openmm_system", None) is not None
    if cheap:
        pos = result.positions
        limit = MAX_OPENMM_CONFIGURATIONS if getattr(system, "openmm_system", None) is not None else MAX_CONFIGURATIONS
        stride = max(1, math.ceil(pos.shape[0] * pos.shape[1] / limit))
        sub = pos[::stride] if pos[::stride].shape[0] >= 2 else pos
        try:
            t = configurational_temperature(system, sub, n_probes=2)
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
            warn.append(f"configurational temperature not computed: {exc}")
        else:
            z = t.z(system.kT)
            ok = abs(z) <= Z_FAIL
            checks.append(Check(CONFIGURATIONAL_CHECK, f"{t.kT:.4g} ± {t.standard_error:.2g}",
                                f"kT = {system.kT:.4g}", z, ok, f"Laplacian: {t.method}, {sub.shape[0] * sub.shape[1]} configurations"))
            if not ok:
                warn.append(f"configurational temperature {t.kT:.4g} ± {t.standard_error:.2g} differs "
                            f"from kT = {system.kT:.4g} (z = {z:.1f}): the positions are not "
                            "Boltzmann-distributed (step too large, or not equilibrated)")
    return plot_exact


# --------------------------------------------------------------------------- molecules
def _state_analysis(result, angles, record_every: float) -> dict:
    from .molecular import (ALANINE_DIPEPTIDE_STATES, assign_states, round_trip_times,
                            state_populations, transition_counts)

    phi, psi = angles
    lab = assign_states(phi, psi, ALANINE_DIPEPTIDE_STATES)
    k = len(ALANINE_DIPEPTIDE_STATES)
    names = [s.name for s in ALANINE_DIPEPTIDE_STATES]
    info = {"names": names, "transition_counts": transition_counts(lab, k).tolist()}
    if (lab >= 0).any():
        pops = state_populations(lab, k)
        info["populations"] = pops.populations.tolist()
        info["standard_errors"] = pops.standard_errors.tolist()
    rt = round_trip_times(lab, 0, 1, dt=record_every)
    info["round_trip_C7eq_alphaR_steps"] = (rt.mean, rt.standard_error, rt.n_round_trips)
    return info


# --------------------------------------------------------------------------- writing
def _table_rows(rows: list) -> list[list[str]]:
    out = []
    for r in rows:
        unit = f" {r.unit}" if r.unit else ""
        name = r.name + (" (circular)" if r.circular else "")
        out.append([name, f"{_fmt(r.mean, 5)} ± {_fmt(r.mcse, 2)}{unit}", _fmt(r.tau_steps, 3),
                    _fmt(r.ess, 3), _fmt(r.ess_per_second, 3), _fmt(r.rhat, 4)])
    return out


HEADER = ["observable", "mean ± MCSE", "τ (steps)", "ESS", "ESS per second", "R-hat"]
CHECK_HEADER = ["check", "measured", "exact", "z", "result (rule)", "note"]


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_rows(checks) -> list[list[str]]:
    return [[c.name, c.measured, c.exact, _fmt(c.z, 3), f"{'pass' if c.passed else 'FAIL'} ({c.rule})", c.note]
            for c in checks]



def _positions_pointer(checks) -> str:
    """Where the report shows the test of the positions alone, or that it does not."""
    for c in checks:
        if c.name == CONFIGURATIONAL_CHECK:
            return (f"the configurational temperature row of the exact checks tests them, "
                    f"{c.measured} against {c.exact}, z = {_fmt(c.z, 3)}: "
                    f"{'pass' if c.passed else 'FAIL'}")
    return ("the configurational temperature tests them, and this report did not compute it for "
            "this system; langevin_md.analysis.configurational_temperature(system, positions) does")


def _state_rows(states: dict) -> list[list[str]]:
    rows = []
    pops = states.get("populations")
    for i, name in enumerate(states["names"]):
        p = f"{pops[i]:.4f} ± {states['standard_errors'][i]:.2g}" if pops else "n/a"
        out_ = sum(states["transition_counts"][i])
        rows.append([name, p, str(out_)])
    return rows


#: Energies a run with a ``[prior]`` records apart: the force field's and λ·prior's.
PRIOR_ENERGIES = ("U_ff", "U_prior")


def prior_energy_line(result) -> Optional[str]:
    """A summary line on U_ff and U_prior when the run recorded them, else None.

    The prior's additive constant is arbitrary (a learned energy is known only up to a
    constant), so its mean is not reported as a physical energy: its spread and the
    difference between its largest and smallest walker means are.
    """
    if not all(name in result.fields for name in PRIOR_ENERGIES):
        return None
    u_ff = np.asarray(result.fields["U_ff"], dtype=np.float64)
    u_prior = np.asarray(result.fields["U_prior"], dtype=np.float64)
    walkers = u_prior.mean(0)
    unit = " kJ/mol" if len(result.event_shape) == 2 else ""
    return (f"- force field and prior recorded apart: ⟨U_ff⟩ = {u_ff.mean():.5g}{unit}; λ·U_prior fluctuates "
            f"with standard deviation {u_prior.std():.4g}{unit}, its walker means span "
            f"{walkers.max() - walkers.min():.4g}{unit}. The prior's additive constant is arbitrary, so "
            "⟨U_prior⟩ (and the total ⟨U⟩) is not a physical energy: read its fluctuations and differences")


def _summary_lines(result, record_every) -> list[str]:
    md = result.metadata or {}
    lines = [f"- system: {md.get('system', type(result.system).__name__ if result.system is not None else 'unknown')}",
             f"- integrator: {md.get('integrator', 'unknown')}",
             f"- {result.n_walkers} walkers × {result.n_frames} frames (every {record_every:g} steps), "
             f"{result.n_steps_run} steps per walker, kT = {result.kT:.4g}",
             f"- wall time {result.wall_time:.3g} s, backend {md.get('backend', 'n/a')}"]
    prior = prior_energy_line(result)
    if prior is not None:
        lines.append(prior)
    if result.acceptance_rate is not None:
        acc = np.asarray(result.acceptance_rate)
        lines.append(f"- acceptance rate: mean {acc.mean():.3f}, walkers from {acc.min():.3f} to {acc.max():.3f}")
    return lines


def _write(rep: Report, result, record_every: float, title: str) -> None:
    out = rep.output_dir
    summary = _summary_lines(result, record_every)
    table = _table_rows(rep.rows)
    warn_md = "\n".join(f"- ⚠ {w}" for w in rep.warnings) or "- none: no problem detected"
    md = [f"# {title}", "", *summary, "", "## Sampling quality", "", _md_table(HEADER, table), "",
          "τ: integrated autocorrelation time (Sokal window), in sampler steps. ESS: effective "
          "number of independent samples, all walkers. R-hat: split rank-normalised; above "
          f"{RHAT_WARN} the walkers have not converged to one distribution. Angles are in degrees "
          "and averaged on the circle.", "", "## Warnings", "", warn_md, ""]
    if rep.checks:
        md += ["## Exact checks", "", _md_table(CHECK_HEADER, _check_rows(rep.checks)), ""]
    if rep.states:
        md += ["## Metastable states (core-based assignment)", "",
               _md_table(["state", "population ± SE (across walkers)", "transitions out"], _state_rows(rep.states)), ""]
        mean, se, n = rep.states["round_trip_C7eq_alphaR_steps"]
        md += [f"Mean round trip C7eq/β → αR → C7eq/β: {_fmt(mean, 4)} ± {_fmt(se, 2)} steps ({n} round trips).", ""]
    md += [section for section in rep.sections]
    md += ["## Plots", ""]
    md += [f"![{name}]({Path(p).name})" for name, p in rep.files.items() if p.endswith(".png")]
    atomic_write(out / "report.md", ("\n".join(md) + "\n").encode("utf-8"))

    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}"
             ".warn{color:#a00}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style></head><body>",
             f"<h1>{esc(title)}</h1><ul>" + "".join(f"<li>{esc(s[2:])}</li>" for s in summary) + "</ul>",
             "<h2>Sampling quality</h2>", _html_table(HEADER, table),
             "<h2>Warnings</h2><ul>"
             + ("".join(f"<li class='warn'>⚠ {esc(w)}</li>" for w in rep.warnings) or "<li>none: no problem detected</li>")
             + "</ul>"]
    if rep.checks:
        parts += ["<h2>Exact checks</h2>", _html_table(CHECK_HEADER, _check_rows(rep.checks))]
    if rep.states:
        parts += ["<h2>Metastable states (core-based assignment)</h2>",
                  _html_table(["state", "population ± SE (across walkers)", "transitions out"], _state_rows(rep.states))]
    parts += ["<h2>Plots</h2>"] + [f"<h3>{esc(name)}</h3><img src='{esc(Path(p).name)}' alt='{esc(name)}'>"
                                   for name, p in rep.files.items() if p.endswith(".png")]
    parts.append("</body></html>")
    atomic_write(out / "report.html", "\n".join(parts).encode("utf-8"))

    data = {"rows": [asdict(r) for r in rep.rows], "checks": [asdict(c) for c in rep.checks],
            "warnings": rep.warnings, "states": rep.states}
    atomic_write(out / "report.json", json.dumps(data, indent=1, default=float, allow_nan=True).encode("utf-8"))
    rep.files.update({"report.md": str(out / "report.md"), "report.html": str(out / "report.html"),
                      "report.json": str(out / "report.json")})


# --------------------------------------------------------------------------- entry points
def report(result, output_dir, exact="auto", title: Optional[str] = None) -> Report:
    """Analyse a run and write a report folder.

    Parameters
    ----------
    result : SampleResult
        From :func:`langevin_md.sample` or :func:`langevin_md.load_run`; at least 4 frames.
    output_dir : str or PathLike
        Created if missing. Receives ``trace.png``, ``autocorrelation.png``,
        ``running_mean.png``, ``histograms.png``, ``ramachandran.png`` (molecules),
        ``acceptance.png`` (Metropolis schemes), ``report.md``, ``report.html`` and
        ``report.json``.
    exact : None or "auto"
        "auto": where ``result.system`` knows its exact marginals
        (:meth:`~langevin_md.systems.base.System.exact_marginal`), compare each coordinate's
        histogram with them (total variation against its noise level); where it knows the
        law of its energy (:meth:`~langevin_md.systems.base.System.exact_energy_law`), KS-test
        the energies; and compare the configurational temperature with kT when it is cheap.
        None: no exact comparisons.
    title : str, optional

    Returns
    -------
    Report
        Rows, checks, warnings and file paths.
    """
    if exact not in (None, "auto"):
        raise ValueError(f"exact must be None or 'auto', got {exact!r}")
    if result.n_frames < 4:
        raise ValueError(f"the result has {result.n_frames} frames; a report needs at least 4")
    tempering_md = None
    full_result = result  # every rung, for the free-energy sections (MBAR) below
    if "temperature_index" in result.fields and result.integrator_summary:
        # A replica-exchange run mixes temperatures across walkers; every statistic below is
        # about the target (the coldest rung), so analyse that rung's samples, one chain per
        # ladder, and describe the ladder in its own section.
        from .tempering import tempering_section

        make_dirs(output_dir)
        tempering_md = tempering_section(result, output_dir)
        result = _coldest_rung(result)
    from .equilibration import detect_equilibration

    out = Path(output_dir)
    make_dirs(out)
    rep = Report(out)
    record_every = _record_every(result)
    from .molecular import phi_psi_if_molecule

    angles = phi_psi_if_molecule(result)
    obs, notes = _observables(result, angles)
    rep.warnings.extend(notes)
    wall = float(result.wall_time or 0.0)
    for o in obs:
        rep.rows.append(_row(o, record_every, wall, rep.warnings))
    rows = {r.name: r for r in rep.rows}

    if result.n_walkers == 1:
        rep.warnings.append("one walker only: R-hat can compare only the two halves of the chain "
                            "and cannot see modes the walker never visited; run several walkers")
    if result.acceptance_rate is not None:
        acc = np.asarray(result.acceptance_rate, dtype=np.float64)
        if acc.mean() < LOW_ACCEPTANCE:
            rep.warnings.append(f"acceptance below {LOW_ACCEPTANCE}: mean {acc.mean():.3f}; the step size is too "
                                "large and the chain moves rarely (reduce it, or set target_accept)")
        elif (acc < LOW_ACCEPTANCE).any():
            rep.warnings.append(f"acceptance below {LOW_ACCEPTANCE} for {(acc < LOW_ACCEPTANCE).sum()} of "
                                f"{acc.size} walkers (lowest {acc.min():.3f}): those walkers are stuck "
                                "in stiff regions")
    energy = np.asarray(result.energies, dtype=np.float64)
    if result.n_frames >= 40 and np.all(energy.max(0) > energy.min(0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = detect_equilibration(energy).t0
        if t0 > 0.2 * result.n_frames:
            rep.warnings.append(f"the energy drifts over the first {t0} of {result.n_frames} frames "
                                f"({100 * t0 / result.n_frames:.0f} %): burn-in was too short; "
                                "discard those frames or run longer")

    system = result.system if exact == "auto" else None
    plot_exact = {}
    if system is not None:
        try:
            plot_exact = _exact_checks(result, system, obs, rows, rep.warnings, rep.checks)
        except (ValueError, RuntimeError) as exc:  # an exact law that does not apply here
            rep.warnings.append(f"exact comparison skipped: {exc}")
    if result.kinetic_energies is not None:
        from .thermo import kinetic_temperature_check

        # The degrees of freedom are the ones really present (constraints and a CMMotionRemover
        # removed), and the verdict is a z-score rather than a fixed relative tolerance.
        t = kinetic_temperature_check(result)
        rep.checks.append(Check(f"kinetic temperature 2⟨K⟩/N_dof (N_dof = {t.n_dof})",
                                f"{t.temperature:.4g} ± {t.standard_error:.2g} {t.unit}".strip(),
                                f"{t.expected:.4g} {t.unit}".strip(), t.z, t.passed,
                                "step-end velocities of BAOAB are biased by O(h²) by design"))
        if not t.passed:
            rep.warnings.append(f"kinetic temperature {t.temperature:.4g} differs from {t.expected:.4g} "
                                f"by z = {t.z:+.1f}: the timestep may be too large for the fastest "
                                f"motions (BAOAB's positions can still be right: {_positions_pointer(rep.checks)})")
    if angles is not None:
        rep.states = _state_analysis(result, angles, record_every)

    title = title or "langevin_md sampling report"
    rep.files["trace"] = plot_traces(obs, out / "trace.png")
    rep.files["autocorrelation"] = plot_autocorrelations(
        obs, [r.tau_steps / record_every for r in rep.rows], out / "autocorrelation.png", frame_spacing=record_every)
    rep.files["running mean"] = plot_running_means(obs, out / "running_mean.png")
    rep.files["histograms"] = plot_histograms(obs, out / "histograms.png", plot_exact)
    if angles is not None:
        from .molecular import ALANINE_DIPEPTIDE_STATES

        rep.files["ramachandran"] = plot_ramachandran(angles[0], angles[1], result.kT, out / "ramachandran.png",
                                                            states=ALANINE_DIPEPTIDE_STATES)
    if result.acceptance_rate is not None:
        rep.files["acceptance"] = plot_acceptance(result.acceptance_rate, out / "acceptance.png", LOW_ACCEPTANCE)
    if tempering_md is not None:
        rep.sections.append(tempering_md)
        rep.files["replica traces"] = str(out / "replica_traces.png")
        rep.files["swap acceptance"] = str(out / "swap_acceptance.png")
    # Free energies (MBAR across rungs, φ/ψ surfaces) and kinetics (Markov models), when they
    # apply: see analysis/free_energy_report.py.
    from .free_energy_report import free_energy_sections

    sections = free_energy_sections(full_result, out)
    rep.sections.extend(sections)
    for name in ("mbar_energy", "free_energy_surface", "implied_timescales"):
        # Only a plot a section drew and shows now: one left by an earlier report in the same
        # folder (a section not computed this time) is not this result's.
        if any(f"({name}.png)" in text for text in sections) and (out / f"{name}.png").exists():
            rep.files[name.replace("_", " ")] = str(out / f"{name}.png")
    _write(rep, result, record_every, title)
    return rep


def _coldest_rung(result):
    """A replica-exchange result reduced to its coldest rung: one chain per ladder."""
    import dataclasses

    cold = lambda values: None if values is None else result.at_temperature(0, values)  # noqa: E731
    walkers = np.arange(result.n_walkers // int(result.fields["temperature_index"][0].max() + 1))
    return dataclasses.replace(result, positions=cold(result.positions), energies=cold(result.energies),
                               kinetic_energies=cold(result.kinetic_energies), acceptance_rate=None, step_sizes=None,
                               fields={}, integrator_summary={}, walker_indices=walkers)
