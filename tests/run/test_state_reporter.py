"""StateReporter: CSV rows of the live state from both executors."""

import csv
import io
import math

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators import BAOAB, MALA
from langevin_md.integrators.tempering import ReplicaExchange
from langevin_md.run.state_reporter import StateReporter
from langevin_md.systems.harmonic import Harmonic
from langevin_md.units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K

#: The columns of a run at one temperature, in order (unchanged by the tempering columns).
PLAIN_COLUMNS = ["step", "time_ps", "potential_energy", "kinetic_energy", "kinetic_kT", "acceptance",
                 "walker_steps_per_second", "eta_s"]


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
    assert list(rows[0]) == PLAIN_COLUMNS
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


def _z(values, expected):
    """z-score of the mean of independent rows against ``expected`` (error from their spread)."""
    values = np.asarray(values, dtype=np.float64)
    return (values.mean() - expected) / (values.std(ddof=1) / math.sqrt(len(values)))


def test_replica_exchange_reports_each_rung_at_its_own_temperature(tmp_path):
    # 250 ladders of 4 rungs on a 2-D harmonic well. BAOAB's step-end kinetic energy is
    # (kT/2)(1 − h²ω²/4) per degree of freedom at every rung (EXACT_RESULTS row 4) and its
    # positions are exact, so ⟨U⟩ = kT at each rung (2 dimensions).
    system = Harmonic(dim=2, k=1.0, kT=1.0)
    ladder = (1.0, 2.0, 4.0, 8.0)
    h = 0.1
    integ = ReplicaExchange(BAOAB(timestep=h, friction=1.0), ladder=ladder, swap_every=10)
    path = tmp_path / "state.csv"
    sampler = lmd.Sampler(system, integ, n_walkers=len(ladder) * 250, seed=3)
    sampler.run(3000, burn_in=200, record_every=1000, reporters=[StateReporter(path, 100, total_steps=3200)])
    rows = _rows(path)
    per_rung = [f"rung{k}_{name}" for k in range(len(ladder))
                for name in ("target_kT", "potential_energy", "kinetic_kT")]
    assert list(rows[0]) == PLAIN_COLUMNS + per_rung
    # Swaps really moved temperatures between walkers: grouping by walker index would be wrong.
    moved = (sampler.state.rung != torch.arange(sampler.n_walkers) % len(ladder)).float().mean()
    assert moved > 0.5
    rows = rows[2:]  # burn-in; rows 10 time units apart at friction 1 are independent
    for k, ratio in enumerate(ladder):
        assert all(float(r[f"rung{k}_target_kT"]) == pytest.approx(ratio) for r in rows)
        kin_kT = [float(r[f"rung{k}_kinetic_kT"]) for r in rows]
        assert abs(_z(kin_kT, ratio * (1.0 - h * h / 4.0))) <= 5, (k, np.mean(kin_kT))
        assert abs(_z([float(r[f"rung{k}_potential_energy"]) for r in rows], ratio)) <= 5
    # The main columns are the coldest rung's ...
    for r in rows:
        assert r["kinetic_kT"] == r["rung0_kinetic_kT"] and r["potential_energy"] == r["rung0_potential_energy"]
    # ... and the old average over all walkers (equal walkers per rung: the mean of the rung
    # columns) mixes temperatures: it is rejected against the coldest rung's target.
    pooled_kT = [np.mean([float(r[f"rung{k}_kinetic_kT"]) for k in range(len(ladder))]) for r in rows]
    pooled_u = [np.mean([float(r[f"rung{k}_potential_energy"]) for k in range(len(ladder))]) for r in rows]
    assert _z(pooled_kT, 1.0 - h * h / 4.0) > 50
    assert _z(pooled_u, 1.0) > 50


@pytest.mark.slow
def test_replica_exchange_kelvin_per_rung_counts_constraints():
    # Alanine dipeptide with bonds to hydrogen constrained (the torch executor's RATTLE):
    # N_dof = 66 − 12 = 54 at every rung. Not subtracting the constraints (N_dof = 66) would
    # read 18 % cold, far outside the error (about 1.5 % per rung).
    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(engine="torch", constraints="HBonds")
    ladder = (1.0, 1.5, 2.0)
    integ = ReplicaExchange(BAOAB(timestep=0.001, friction=10.0), ladder=ladder, swap_every=10)
    buf = io.StringIO()
    reporter = StateReporter(buf, 100)
    lmd.Sampler(system, integ, n_walkers=len(ladder) * 16, seed=0, compile=False).run(
        1500, burn_in=500, record_every=500, reporters=[reporter])
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))[5:]  # burn-in
    assert "rung2_kinetic_temperature" in rows[0] and "kinetic_kT" not in rows[0]
    for k, ratio in enumerate(ladder):
        target = 300.0 * ratio
        assert all(float(r[f"rung{k}_target_temperature"]) == pytest.approx(target) for r in rows)
        assert abs(_z([float(r[f"rung{k}_kinetic_temperature"]) for r in rows], target)) <= 5
    wrong = [float(r["kinetic_temperature"]) * 54 / 66 for r in rows]  # 66 unconstrained dof
    assert abs(_z(wrong, 300.0)) > 5


def test_torch_executor_keeps_the_degrees_of_freedom_a_cm_motion_remover_would_take():
    pytest.importorskip("openmm")
    from langevin_md.analysis.thermo import degrees_of_freedom
    from langevin_md.executors import executor_class
    from langevin_md.systems.molecules import alanine_dipeptide

    # The OpenMM-backed System holds a CMMotionRemover (66 − 12 constraints − 3 = 51). The
    # OpenMM executor applies it; the torch executor ignores it, so its velocities keep 54.
    system = alanine_dipeptide(engine="openmm", platform="Reference", constraints="HBonds")
    assert degrees_of_freedom(system) == 51
    for backend, n_dof in (("torch", 54), ("openmm", 51)):
        buf = io.StringIO()
        sampler = executor_class(backend)(system, BAOAB(timestep=0.001, friction=5.0), n_walkers=2, seed=0)
        sampler.run(20, record_every=20, reporters=[StateReporter(buf, 10)])
        rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
        assert list(rows[0]) == [c if c != "kinetic_kT" else "kinetic_temperature" for c in PLAIN_COLUMNS]
        for r in rows:
            expected = 2 * float(r["kinetic_energy"]) / (n_dof * MOLAR_GAS_CONSTANT_KJ_PER_MOL_K)
            assert float(r["kinetic_temperature"]) == pytest.approx(expected, rel=1e-5), backend


def test_per_walker_temperatures_without_rung_labels_are_grouped_by_kT():
    # A state given per-walker temperatures directly (no replica exchange, so no rung labels):
    # walkers alternate kT 3, 1; the rungs are the distinct kT values, coldest first.
    from langevin_md.integrators import with_temperature

    system = Harmonic(dim=1, k=1.0, kT=1.0)
    h = 0.1
    sampler = lmd.Sampler(system, BAOAB(timestep=h, friction=1.0), n_walkers=2000, seed=4)
    sampler.state = with_temperature(system, sampler.state, torch.tensor([3.0, 1.0], dtype=torch.float64).repeat(1000))
    buf = io.StringIO()
    sampler.run(2000, burn_in=100, record_every=1000, reporters=[StateReporter(buf, 100)])
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))[1:]
    assert list(rows[0])[len(PLAIN_COLUMNS):] == ["rung0_target_kT", "rung0_potential_energy", "rung0_kinetic_kT",
                                                  "rung1_target_kT", "rung1_potential_energy", "rung1_kinetic_kT"]
    for k, kT in enumerate((1.0, 3.0)):
        assert all(float(r[f"rung{k}_target_kT"]) == kT for r in rows)
        assert abs(_z([float(r[f"rung{k}_kinetic_kT"]) for r in rows], kT * (1.0 - h * h / 4.0))) <= 5
        assert abs(_z([float(r[f"rung{k}_potential_energy"]) for r in rows], kT / 2.0)) <= 5
    assert _z([float(r["kinetic_kT"]) for r in rows], 2.0 * (1.0 - h * h / 4.0)) < -50  # not the pooled mean
