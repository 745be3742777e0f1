"""StateReporter: CSV rows of the live state from both executors."""

import csv
import io
import math

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.integrators import BAOAB, MALA
from langevin_md.state_reporter import StateReporter
from langevin_md.systems.harmonic import Harmonic


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_baoab_rows_have_time_kinetic_temperature_speed_and_eta(tmp_path):
    system = Harmonic(dim=1, k=1.0, kT=1.0)
    h = 1.0
    integ = BAOAB(timestep=h, friction=1.0)
    path = tmp_path / "state.csv"
    reporter = StateReporter(path, report_interval=50, total_steps=1000)
    sampler = lmd.Sampler(system, integ, n_walkers=4000, seed=0)
    sampler.run(1000, record_every=100, reporters=[reporter])
    rows = _rows(path)
    assert [int(r["step"]) for r in rows] == list(range(50, 1001, 50))
    assert list(rows[0]) == ["step", "time_ps", "potential_energy", "kinetic_energy", "kinetic_kT",
                             "acceptance", "walker_steps_per_second", "eta_s"]
    assert [float(r["time_ps"]) for r in rows] == pytest.approx([h * int(r["step"]) for r in rows])
    assert all(r["acceptance"] == "" for r in rows)  # not a Metropolis scheme
    assert all(float(r["walker_steps_per_second"]) > 0 for r in rows)
    assert float(rows[-1]["eta_s"]) == 0.0 and float(rows[0]["eta_s"]) > 0.0
    # BAOAB's step-end kinetic energy on a harmonic well is (kT/2)(1 − h²ω²/4) exactly
    # (EXACT_RESULTS row 4): the rows after burn-in must show it, and reject kT/2.
    kin = np.array([float(r["kinetic_energy"]) for r in rows[4:]])
    exact = 0.5 * (1.0 - h * h / 4.0)
    # rows 50 time units apart at friction 1 are independent: their spread gives the error
    se = kin.std(ddof=1) / math.sqrt(len(kin))
    assert abs(kin.mean() - exact) / se < 5
    assert abs(kin.mean() - 0.5) / se > 10
    np.testing.assert_allclose([float(r["kinetic_kT"]) for r in rows], [2 * float(r["kinetic_energy"]) for r in rows],
                               rtol=1e-5)


def test_acceptance_column_matches_the_results_acceptance(tmp_path):
    system = Harmonic(dim=3)
    buf = io.StringIO()
    reporter = StateReporter(buf, report_interval=20)
    result = lmd.Sampler(system, MALA(step_size=1.0), n_walkers=64, seed=1).run(200, reporters=[reporter])
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    acc = np.array([float(r["acceptance"]) for r in rows])
    # equal windows that tile the production run: their mean is the run's acceptance
    assert acc.mean() == pytest.approx(float(result.acceptance_rate.mean()), abs=1e-6)
    assert rows[0]["time_ps"] == "" and rows[0]["kinetic_energy"] == ""


def test_terminal_output_and_burn_in_rows(tmp_path, capsys):
    reporter = StateReporter(None, report_interval=10, terminal=True)
    lmd.Sampler(Harmonic(dim=1), MALA(step_size=0.5), n_walkers=8, seed=2).run(20, burn_in=20,
                                                                                reporters=[reporter])
    lines = [ln.split() for ln in capsys.readouterr().out.strip().splitlines()]
    assert lines[0][0] == "step" and [ln[0] for ln in lines[1:]] == ["10", "20", "30", "40"]


def test_openmm_executor_reports_kelvin_with_constraints(tmp_path):
    pytest.importorskip("openmm")
    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(engine="openmm", platform="Reference", constraints="HBonds")
    path = tmp_path / "ala.csv"
    from langevin_md.executors import executor_class  # the facade's public lookup

    sampler = executor_class("openmm")(system, BAOAB(timestep=0.002, friction=5.0), n_walkers=2, seed=0)
    sampler.run(40, record_every=20, reporters=[StateReporter(path, 20, total_steps=40)])
    rows = _rows(path)
    assert [int(r["step"]) for r in rows] == [20, 40]
    assert "kinetic_temperature" in rows[0]
    assert float(rows[-1]["time_ps"]) == pytest.approx(0.08)
    assert 50.0 < float(rows[-1]["kinetic_temperature"]) < 1000.0


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="report_interval"):
        StateReporter(tmp_path / "x.csv", 0)
    with pytest.raises(ValueError, match="total_steps"):
        StateReporter(tmp_path / "x.csv", 5, total_steps=-3)
    with pytest.raises(ValueError, match="somewhere to write"):
        StateReporter(None, 5)
    with pytest.raises(TypeError, match="file"):
        StateReporter(3.5, 5)
    with pytest.raises(TypeError, match="terminal"):
        StateReporter(None, 5, terminal="yes")
