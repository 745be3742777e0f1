"""Report sections for free energies and kinetics: Markdown text plus PNGs, from a SampleResult.

* :func:`mbar_section` (replica-exchange results): MBAR free energies of the rungs and ⟨U⟩
  reweighted across the ladder's range.
* :func:`surface_section` (molecules): the φ/ψ free-energy surface with its bootstrap error,
  from every rung reweighted to the coldest for replica exchange.
* :func:`kinetics_section` (molecules at one temperature): core-state transition counts,
  mean first-passage times and implied timescales of a Markov state model, with a plain
  reading of the slowest timescale against the run length.

:func:`free_energy_sections` picks those that apply. None of these opens a run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from .free_energy_surface import free_energy_surface, plot_free_energy_surface
from .kinetics import implied_timescales, mean_first_passage_times, plot_implied_timescales, timescale_reading
from .mbar import mbar_tempering
from .molecular import ALANINE_DIPEPTIDE_STATES, assign_states, phi_psi_if_molecule, transition_counts
from .plots import new_figure, save_figure
from ..safe_paths import make_dirs

__all__ = ["mbar_section", "surface_section", "kinetics_section", "free_energy_sections"]


def _is_tempering(result) -> bool:
    return "temperature_index" in (result.fields or {}) and "kT" in (result.fields or {})


def _frame_time(result) -> tuple[float, str]:
    """Time between frames and its unit: ps with a physical timestep, else steps."""
    steps = np.asarray(result.steps)
    every = float(steps[1] - steps[0]) if steps.size >= 2 else 1.0
    dt = (result.metadata or {}).get("timestep")
    return (every * float(dt), "ps") if dt else (every, "steps")


def mbar_section(result, folder, unit: str = "", mbar=None) -> str:
    """MBAR section of a replica-exchange result: rung free energies and ⟨U⟩(kT).

    Parameters
    ----------
    result : SampleResult
        A replica-exchange result (:func:`~langevin_md.analysis.mbar.mbar_tempering`).
    folder : str or PathLike
        Receives ``mbar_energy.png``.
    unit : str
        Energy unit of U and kT ("kJ/mol" for molecules; "" for reduced units).
    mbar : TemperatureMBAR, optional
        A solution already computed for ``result``.

    Returns
    -------
    str
        Markdown.
    """

    folder = Path(folder)
    make_dirs(folder)  # a real folder: never a link that would put the plots elsewhere
    m = mbar_tempering(result) if mbar is None else mbar
    grid = np.geomspace(m.kT_states[0], m.kT_states[-1], 25)
    u = m.expectation(result.energies, grid)
    at_rungs = m.expectation(result.energies, m.kT_states)
    fig, (ax,) = new_figure(1, panel=(6.0, 3.6))
    ax.plot(grid, u.mean, color="C0", label="MBAR, all rungs")
    ax.fill_between(grid, u.mean - 2 * u.standard_error, u.mean + 2 * u.standard_error, color="C0", alpha=0.3,
                    label="±2 s.e.")
    ax.plot(m.kT_states, at_rungs.mean, "o", color="C1", label="rungs")
    ax.set_xscale("log")
    u_txt = f" [{unit}]" if unit else ""
    ax.set_xlabel(f"kT{u_txt}")
    ax.set_ylabel(f"⟨U⟩{u_txt}")
    ax.set_title("Mean potential energy reweighted across the ladder")
    ax.legend(fontsize=8)
    save_figure(fig, folder / "mbar_energy.png")
    how = ("bootstrap over ladders" if m.error == "bootstrap" else "pymbar's analytic estimate")
    lines = ["## Free energies across the ladder (MBAR)", "",
             f"MBAR (pymbar) pools {m.n_samples} samples of all {m.kT_states.size} rungs (frame stride "
             f"{m.stride}-th frame, the statistical inefficiency of U). Reduced free energies f_k − f_0 "
             f"(units of each rung's kT), errors by {how}. Any observable can be reweighted to any "
             "temperature in the ladder's range (`lmd.analysis.mbar_tempering(result).expectation`).", "",
             f"| rung | kT{u_txt} | samples | f_k − f_0 | ⟨U⟩{u_txt} |", "|---|---|---|---|---|"]
    for k, kt in enumerate(m.kT_states):
        lines.append(f"| {k} | {kt:.4g} | {m.n_per_state[k]} | {m.free_energies[k]:.3f} ± "
                     f"{m.free_energy_errors[k]:.3f} | {at_rungs.mean[k]:.4g} ± {at_rungs.standard_error[k]:.2g} |")
    lines += ["", "![mean energy against temperature](mbar_energy.png)", ""]
    return "\n".join(lines)


def surface_section(result, folder, unit: str = "kJ/mol", mbar=None, bins: int = 36) -> str:
    """φ/ψ free-energy surface with bootstrap errors (molecules).

    For replica exchange every rung is reweighted to the coldest with MBAR (errors: MBAR's
    bootstrap over ladders); otherwise errors are a bootstrap over walkers. Writes
    ``free_energy_surface.png``.

    Parameters
    ----------
    result : SampleResult
        Molecular (φ/ψ defined).
    folder : str or PathLike
    unit : str
        Unit of ``result.kT`` (kJ/mol for molecules).
    mbar : TemperatureMBAR, optional
        For a replica-exchange result, a solution already computed.
    bins : int
        Bins per angle (36: 10° bins).

    Returns
    -------
    str
        Markdown.
    """

    angles = phi_psi_if_molecule(result)
    if angles is None:
        raise ValueError("the result has no backbone φ/ψ: a free-energy surface on φ/ψ needs a molecule")
    folder = Path(folder)
    make_dirs(folder)  # a real folder: never a link that would put the plots elsewhere
    phi, psi = (np.degrees(a) for a in angles)
    kw = dict(bins=bins, extent=[(-180, 180), (-180, 180)], periodic=True, labels=("φ [deg]", "ψ [deg]"))
    alpha_l = (assign_states(*angles, cores=False) == 2).astype(float)
    if _is_tempering(result):

        m = mbar_tempering(result) if mbar is None else mbar
        kT = float(m.kT_states[0])
        fes = free_energy_surface(np.stack([m.select(phi), m.select(psi)], -1), weights=m.weights(kT),
                                  replicate_weights=m.bootstrap_weights(kT), kT=kT, unit=unit, **kw)
        pop = m.expectation(alpha_l, kT)
        source = (f"all {m.kT_states.size} rungs reweighted to the coldest (kT = {kT:.4g} {unit}) by MBAR; "
                  "errors by bootstrap over ladders")
        pop_txt = f"αL core population at the coldest rung, MBAR over all rungs: {pop.mean[0]:.4f} ± {pop.standard_error[0]:.4f}"
    else:
        kT = float(result.kT)
        chains = np.broadcast_to(np.arange(result.n_walkers), phi.shape).ravel()
        fes = free_energy_surface(np.stack([phi.ravel(), psi.ravel()], -1), chains=chains, kT=kT, unit=unit, **kw)
        per = alpha_l.mean(0)
        se = per.std(ddof=1) / np.sqrt(per.size) if per.size > 1 else float("nan")
        source = f"{result.n_walkers} walkers at kT = {kT:.4g} {unit}; errors by bootstrap over walkers"
        pop_txt = f"αL core population: {per.mean():.4f} ± {se:.4f}"
    # Bins more than 12 kT up hold a handful of (reweighted) samples: masked, so the colour
    # scale shows the basins rather than noise.
    plot_free_energy_surface(fes, folder / "free_energy_surface.png", title=f"F(φ, ψ) [{unit}]",
                             max_free_energy=12 * kT)
    return "\n".join(["## Free-energy surface (φ, ψ)", "",
                      f"F = −kT ln p on {bins}×{bins} bins from {source}. {pop_txt}. Right panel: the "
                      "standard error of F in each bin (large where a basin was rarely visited).", "",
                      "![free-energy surface](free_energy_surface.png)", ""])


def kinetics_section(result, folder, n_lags: int = 6) -> str:
    """Markov-state-model kinetics of the core states of φ/ψ (molecules at one temperature).

    Core states are those of alanine dipeptide (C7eq/β, αR, αL; transition-based assignment).
    Writes ``implied_timescales.png``; reports transition counts, mean first-passage times at
    the longest lag and a plain reading of the slowest implied timescale.

    Parameters
    ----------
    result : SampleResult
        Molecular, not replica exchange (walkers must be trajectories at one temperature).
    folder : str or PathLike
    n_lags : int
        Lags, geometric from 1 frame to a quarter of the run.

    Returns
    -------
    str
        Markdown.
    """

    if _is_tempering(result):
        raise ValueError("replica-exchange walkers change temperature along their paths: they have no "
                         "kinetics; use a run at one temperature")
    angles = phi_psi_if_molecule(result)
    if angles is None:
        raise ValueError("the result has no backbone φ/ψ: core-state kinetics need a molecule")
    if result.n_frames < 16:
        raise ValueError(f"the result has {result.n_frames} frames; a Markov model needs at least 16")
    folder = Path(folder)
    make_dirs(folder)  # a real folder: never a link that would put the plots elsewhere
    states = assign_states(*angles)
    names = [s.name for s in ALANINE_DIPEPTIDE_STATES]
    dt, tunit = _frame_time(result)
    lags = np.unique(np.geomspace(1, max(2, result.n_frames // 4), n_lags).astype(np.int64))
    its = implied_timescales(states, lags, dt=dt, unit=tunit, n_timescales=2)
    plot_implied_timescales(its, folder / "implied_timescales.png", title="Implied timescales, φ/ψ core states")
    counts = transition_counts(states, n_states=len(names))
    visited = np.unique(states[states >= 0])
    missing = [names[k] for k in range(len(names)) if k not in visited]
    reading = timescale_reading(its)
    if its.n_states < len(names):
        reading += (f" The model's connected set holds {its.n_states} of the {len(names)} core states"
                    + (f"; never visited: {', '.join(missing)}" if missing else "")
                    + ": transitions to and from the others were not both seen, so their kinetics are unknown.")
    lines = ["## Kinetics (Markov state model on φ/ψ core states)", "", reading, "",
             "Transitions between consecutive frames (rows: from, columns: to):", "",
             "| from \\ to | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(int(c)) for c in counts[i]) + " |")
    if visited.size >= 2:
        fp = mean_first_passage_times(states, int(lags[-1]), dt=dt, unit=tunit, n_states=len(names))
        lines += ["", f"Mean first-passage times [{tunit}] from a reversible MSM at lag {lags[-1] * dt:.3g} "
                  f"{tunit} (± bootstrap over walkers):", "",
                  "| from \\ to | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for i, n in enumerate(names):
            cells = ["—" if i == j or not np.isfinite(fp.mfpt[i, j]) else
                     f"{fp.mfpt[i, j]:.3g} ± {fp.standard_error[i, j]:.2g}" for j in range(len(names))]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "![implied timescales](implied_timescales.png)", ""]
    return "\n".join(lines)


def free_energy_sections(result, folder, unit: str = "") -> list[str]:
    """The free-energy and kinetics sections that apply to ``result``.

    Replica exchange → :func:`mbar_section` (and :func:`surface_section` for molecules);
    a molecule at one temperature → :func:`surface_section` and :func:`kinetics_section`.
    A section that cannot be built (too few frames, a single walker) becomes a one-line note.

    Returns
    -------
    list of str
        Markdown sections, possibly empty.
    """
    molecular = phi_psi_if_molecule(result) is not None
    unit = unit or ("kJ/mol" if molecular else "")
    builders = []
    mbar = None
    if _is_tempering(result):

        try:
            mbar = mbar_tempering(result)
        except Exception as exc:  # noqa: BLE001 - pymbar's own errors too; the report must still be written
            return [f"## Free energies across the ladder (MBAR)\n\nNot computed: {exc}\n"]
        builders.append(("MBAR", lambda: mbar_section(result, folder, unit, mbar)))
        if molecular:
            builders.append(("free-energy surface", lambda: surface_section(result, folder, unit, mbar)))
    elif molecular:
        builders.append(("free-energy surface", lambda: surface_section(result, folder, unit)))
        builders.append(("kinetics", lambda: kinetics_section(result, folder)))
    out = []
    for name, build in builders:
        try:
            out.append(build())
        except Exception as exc:  # noqa: BLE001 - e.g. one walker (no bootstrap), deeptime's errors: the rest stands
            out.append(f"## {name}\n\nNot computed: {exc}\n")
    return out
