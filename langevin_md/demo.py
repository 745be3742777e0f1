"""`langevin-md demo`: the main job, end to end in under a minute.

1. Müller–Brown sampled by MALA (step size adapted during burn-in) and BAOAB side by side: a
   table of acceptance, mean energy against the exact value and walker-steps/s, and a PNG of
   the samples over the exact density.
2. A few seconds of alanine dipeptide (Amber ff14SB, OBC2 implicit solvent) on the batched torch
   force field, many walkers, and its Ramachandran scatter.
3. A sampling-quality report folder for the Müller–Brown MALA run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import langevin_md as lmd  # the package's lazy public API, as a user writes it
from .safe_paths import make_dirs, write_via_temp
from .analysis import ALANINE_DIPEPTIDE_STATES, assign_states, phi_psi, report, state_populations


def _table(rows, header) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def muller_brown_section(out: Path, n_walkers: int = 256, n_steps: int = 12000):
    import matplotlib  # lazy: matplotlib is heavy and only drawing needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    # kT = 25 puts the barriers at about 4 kT, so walkers cross between basins in a few
    # thousand steps and the exact mean energy is reachable in a demo-length run.
    system = lmd.systems.MullerBrown(kT=25.0)
    extent = ((-3.3, 1.9), (-1.2, 3.2))
    runs = {
        "MALA": lmd.integrators.MALA(step_size=1e-3, target_accept=0.574),
        "BAOAB": lmd.integrators.BAOAB(timestep=0.01, friction=20.0),
    }
    xs, ys, density = system.density_grid(bins=300, extent=extent)
    exact_energy = float((density * system.potential(*np.meshgrid(xs, ys, indexing="ij"))).sum()
                         / density.sum())
    results, rows = {}, []
    for name, integ in runs.items():
        r = lmd.sample(system, integ, n_steps=n_steps, n_walkers=n_walkers, record_every=20,
                       burn_in=2000, seed=0)
        results[name] = r
        acc = "-" if r.acceptance_rate is None else f"{r.acceptance_rate.mean():.3f}"
        rows.append([name, acc, f"{r.energies.mean():.2f}", f"{exact_energy:.2f}",
                     f"{r.walker_steps_per_second:,.0f}"])
    print(f"Müller–Brown at kT = {system.kT:g}, {n_walkers} walkers, {n_steps} production steps")
    print(_table(rows, ["integrator", "acceptance", "<U>", "<U> exact", "walker-steps/s"]))

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.6), sharey=True)
    for ax, (name, r) in zip(np.atleast_1d(axes), results.items()):
        log_density = np.log(np.maximum(density, density.max() * 1e-5))
        ax.contourf(xs, ys, log_density.T, levels=30, cmap="Blues")
        pts = r.positions.reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=1, c="crimson", alpha=0.15, rasterized=True)
        ax.set_title(f"{name}: samples over the exact log-density")
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].set_ylabel("y")
    fig.tight_layout()
    path = out / "muller_brown_samples.png"
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    print(f"wrote {path}")
    return results


def alanine_section(out: Path, seconds: float = 6.0, n_walkers: int = 128):
    """A few seconds of alanine dipeptide (OBC2 implicit solvent) with BAOAB and its
    Ramachandran scatter.

    The batched torch force field runs all walkers as one tensor computation, so many short
    walkers are cheap. Implicit solvent because there the walkers, all started from the
    shipped C7eq structure, reach αR within about a picosecond, so both basins show up in a
    few seconds of wall time (in vacuum under 1% of the frames of the first 6 ps are αR).
    """
    import matplotlib  # lazy: matplotlib is heavy and only drawing needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    system = lmd.systems.alanine_dipeptide(solvent="implicit", temperature=300.0, engine="torch")
    h = 0.002  # ps
    integ = lmd.integrators.BAOAB(timestep=h, friction=5.0)
    # Time a short run, then size the main run to about `seconds` of wall time. Eager float32:
    # compiling would cost more than the whole run (benchmarks/bench_forcefield.py).
    probe = lmd.sample(system, integ, n_steps=50, n_walkers=n_walkers, record_every=50, seed=0,
                       dtype="float32", compile=False)
    n_steps = max(500, int(seconds * probe.walker_steps_per_second / n_walkers) // 50 * 50)
    r = lmd.sample(system, integ, n_steps=n_steps, n_walkers=n_walkers, record_every=10,
                   burn_in=100, seed=1, dtype="float32", compile=False)
    phi_r, psi_r = phi_psi(r)
    pops = state_populations(assign_states(phi_r, psi_r), n_states=len(ALANINE_DIPEPTIDE_STATES))
    ps_each = n_steps * h
    print(f"alanine dipeptide (Amber ff14SB + OBC2, 300 K, batched torch force field): "
          f"{n_walkers} walkers x {n_steps} steps of {h * 1e3:g} fs = {ps_each:.1f} ps each, "
          f"<U> = {r.energies.mean():.1f} kJ/mol, {r.walker_steps_per_second:,.0f} walker-steps/s; "
          + population_line(pops.populations, ps_each))
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    draw_ramachandran_scatter(ax, np.degrees(phi_r).ravel(), np.degrees(psi_r).ravel())
    ax.set_title(f"Alanine dipeptide (OBC2), {n_walkers} walkers x {ps_each:.1f} ps\n"
                 "(all started in C7eq: not equilibrium populations)", fontsize=10)
    fig.tight_layout()
    path = out / "alanine_ramachandran.png"
    write_via_temp(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    print(f"wrote {path}")
    return r


def population_line(populations, ps_each: float) -> str:
    """The demo's population shares, said to be what they are: where walkers that all started
    in C7eq are after ``ps_each`` ps, not the equilibrium populations (the αR ⇄ C7eq/β
    exchange takes tens of ps; run longer, or replica exchange, for those)."""
    shares = ", ".join(f"{s.name} {p:.0%}" for s, p in zip(ALANINE_DIPEPTIDE_STATES, populations))
    return (f"populations after {ps_each:.2g} ps from C7eq {shares} (not equilibrium populations: "
            "the walkers have not had time to forget their start)")


def draw_ramachandran_scatter(ax, phi, psi) -> dict:
    """Scatter φ, ψ (degrees, any shape) on ``ax`` and label the C7eq/β and αR clouds.

    Each label sits at the median of the points in its state's core (the cloud the eye sees),
    not at the middle of the core's box, which lies away from the cloud (αR's box spans
    φ from −180° to −45°, its cloud sits near φ = −70°). A state no point reached is not
    labelled.

    Returns
    -------
    dict
        State name -> the label's ``matplotlib.text.Text``.
    """
    phi, psi = np.ravel(phi), np.ravel(psi)
    ax.scatter(phi, psi, s=2, alpha=0.3, color="tab:blue", rasterized=True)
    labels = {}
    for state in ALANINE_DIPEPTIDE_STATES[:2]:
        inside = state.contains(phi, psi)
        if not inside.any():
            continue
        # Median on the circle: rotate so that the core's own middle is at 0, then back
        # (C7eq/β's ψ core wraps through ±180°).
        centre = {}
        for name, values, (lo, hi) in (("phi", phi, state.phi), ("psi", psi, state.psi)):
            mid = (lo + hi) / 2 if lo <= hi else (lo + hi + 360) / 2
            centre[name] = (np.median((values[inside] - mid + 180) % 360 - 180) + mid + 180) % 360 - 180
        labels[state.name] = ax.text(centre["phi"], centre["psi"], state.name, fontsize=10, weight="bold",
                                     ha="center", va="center", color="white",
                                     bbox={"facecolor": "black", "alpha": 0.55, "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-180, 181, 60))
    ax.set_xlabel("φ (degrees)")
    ax.set_ylabel("ψ (degrees)")
    ax.grid(alpha=0.3)
    return labels


def main(output_dir: str | Path = "demo_output") -> Path:
    """Run the demo and write its pictures into ``output_dir``; returns the folder."""

    out = Path(output_dir).resolve()
    make_dirs(out)
    t0 = time.perf_counter()
    results = muller_brown_section(out)
    alanine_section(out)
    rep = report(results["MALA"], out / "report_muller_brown_mala",
                 title="Müller–Brown, MALA with adapted step size")
    for w in rep.warnings:
        print(f"report warning: {w}")
    print(f"wrote the sampling-quality report {rep.output_dir / 'report.html'}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; output in {out}")
    return out


if __name__ == "__main__":
    main()
