"""Reports: every file is written, the table is there, and problems become warnings."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import report


def check_files(rep, names):
    for name in names:
        path = rep.output_dir / name
        assert path.is_file() and path.stat().st_size > 0, name


def test_report_of_a_mixed_harmonic_run(tmp_path):
    system = lmd.systems.Harmonic(dim=2, k=[1.0, 4.0], kT=1.0)
    r = lmd.sample(system, lmd.integrators.MALA(step_size=0.3), n_steps=2000, n_walkers=8,
                   record_every=2, burn_in=200, seed=0)
    rep = report(r, tmp_path / "rep")
    check_files(rep, ["trace.png", "autocorrelation.png", "running_mean.png", "histograms.png",
                      "acceptance.png", "report.md", "report.html", "report.json"])
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    for text in (md, html):
        for col in ("mean ± MCSE", "τ (steps)", "ESS", "ESS per second", "R-hat", "energy", "x[0]", "x[1]"):
            assert col in text
    assert rep.row("x[1]").rhat < 1.01
    # Exact comparisons pass for an exact sampler.
    assert rep.checks and all(c.passed for c in rep.checks), rep.checks
    assert not any("R-hat" in w for w in rep.warnings)


def test_report_warns_on_an_unmixed_run(tmp_path):
    # Double well with a high barrier, walkers started in both wells: they never cross.
    system = lmd.systems.DoubleWell(dim=1, barrier=12.0)
    x0 = np.where(np.arange(8) % 2 == 0, -1.0, 1.0)[:, None]
    r = lmd.sample(system, lmd.integrators.MALA(step_size=0.05), n_steps=400, n_walkers=8,
                   record_every=2, seed=0, initial_positions=x0)
    rep = report(r, tmp_path / "unmixed")
    md = (tmp_path / "unmixed" / "report.md").read_text()
    html = (tmp_path / "unmixed" / "report.html").read_text()
    assert any(w.startswith("R-hat") and "x[0]" in w and "not mixed" in w for w in rep.warnings), rep.warnings
    for text in (md, html):
        assert "the walkers disagree; not mixed" in text


def test_report_warns_on_low_acceptance(tmp_path):
    system = lmd.systems.Harmonic(dim=2, kT=1.0)
    r = lmd.sample(system, lmd.integrators.MALA(step_size=6.0), n_steps=400, n_walkers=4, seed=1)
    rep = report(r, tmp_path / "low", exact=None)
    assert any("acceptance below 0.2" in w for w in rep.warnings)
    assert not rep.checks


def test_report_of_a_molecule_has_ramachandran_and_states(tmp_path):
    system = lmd.systems.alanine_dipeptide(platform="Reference")
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=0.002, friction=5.0), n_steps=1000,
                   n_walkers=2, record_every=10, seed=0, backend="openmm")
    rep = report(r, tmp_path / "ala")
    check_files(rep, ["ramachandran.png", "trace.png", "report.md", "report.html"])
    md = (tmp_path / "ala" / "report.md").read_text()
    assert "φ (circular)" in md and "ψ (circular)" in md and "C7eq/β" in md
    assert rep.states["names"][0] == "C7eq/β"
    assert any("kinetic temperature" in c.name for c in rep.checks)


def test_tau_has_one_unit_steps_in_table_and_warnings(tmp_path):
    # 60 frames of a slow MALA chain, recorded every 5 steps: τ is long against the chain.
    system = lmd.systems.Harmonic(dim=1, kT=1.0)
    r = lmd.sample(system, lmd.integrators.MALA(step_size=0.02), n_steps=300, n_walkers=4,
                   record_every=5, seed=0)
    rep = report(r, tmp_path / "short", exact=None)
    (short,) = [w for w in rep.warnings if w.startswith("chain shorter") and "x[0]" in w]
    tau = rep.row("x[0]").tau_steps
    assert f"τ = {tau:.3g} steps" in short, short  # the table's τ, in the table's unit
    assert "60 frames per walker = 300 steps" in short
    assert "frames;" not in short and "τ (steps)" in (tmp_path / "short" / "report.md").read_text()


def test_exact_check_verdict_states_its_rule(tmp_path):
    system = lmd.systems.Harmonic(dim=1, kT=1.0)
    r = lmd.sample(system, lmd.integrators.MALA(step_size=1.0), n_steps=1500, n_walkers=8,
                   record_every=2, burn_in=100, seed=3)
    rep = report(r, tmp_path / "rep")
    (tv,) = [c for c in rep.checks if "total variation" in c.name]
    # A distance is one-sided: z far below 0 is closer to exact than noise predicts, a pass,
    # and the row must say so rather than print "z = −8.6 … pass" alone.
    assert tv.passed and tv.rule == "z ≤ 5, one-sided"
    assert "z < 0: closer to exact than sampling noise predicts" in tv.note
    md = (tmp_path / "rep" / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if "total variation" in ln)
    assert "| pass (z ≤ 5, one-sided) |" in line, line
    conf = next(ln for ln in md.splitlines() if ln.startswith("| configurational temperature"))
    assert "pass (\\|z\\| ≤ 5)" in conf  # the Markdown table escapes the bars
    assert "result (rule)" in md


def test_kinetic_temperature_warning_points_to_a_row_that_is_there(tmp_path):
    # BAOAB on a harmonic well: positions exact at any stable step, step-end velocities hot by
    # 1/(1 − h²ω²/4) = 2.3 at h = 1.5 (Leimkuhler & Matthews 2013): the kinetic check fails.
    system = lmd.systems.Harmonic(dim=2, kT=1.0)
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=1.5, friction=1.0), n_steps=600, n_walkers=8,
                   record_every=2, burn_in=100, seed=0)
    rep = report(r, tmp_path / "with")
    (kin,) = [w for w in rep.warnings if w.startswith("kinetic temperature")]
    conf = [c for c in rep.checks if c.name.startswith("configurational temperature")]
    assert conf and conf[0].passed
    assert "configurational temperature row of the exact checks" in kin and conf[0].measured in kin
    # Without exact checks there is no such row, and the warning must not send the reader to it.
    rep = report(r, tmp_path / "without", exact=None)
    (kin,) = [w for w in rep.warnings if w.startswith("kinetic temperature")]
    assert not any(c.name.startswith("configurational") for c in rep.checks)
    assert "row" not in kin and "did not compute it" in kin
    assert "configurational_temperature(system, positions)" in kin


def test_a_plot_left_by_an_earlier_report_is_not_listed(tmp_path):
    """rep.files listed every free-energy plot present in the folder, so a report of a plain
    harmonic run written where a molecule's report had been claimed its implied timescales."""
    system = lmd.systems.Harmonic(dim=2, kT=1.0)
    r = lmd.sample(system, lmd.integrators.MALA(step_size=0.3), n_steps=200, n_walkers=4, seed=0)
    out = tmp_path / "rep"
    out.mkdir()
    for name in ("mbar_energy", "free_energy_surface", "implied_timescales"):
        (out / f"{name}.png").write_bytes(b"an earlier report's plot")
    rep = report(r, out)
    assert not {"mbar energy", "free energy surface", "implied timescales"} & set(rep.files), rep.files
