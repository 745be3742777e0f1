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
