"""lmd.compare on a mixture with known weights: the table, its verdicts and the sweep picture."""

import csv

import numpy as np
import pytest

from langevin_md.compare import compare, force_evaluations_per_step, plot_step_size_sweep, step_size_sweep
from langevin_md.integrators import HMC, MALA, ULA, AnnealedLangevin, RandomWalkMetropolis
from langevin_md.systems.mixture import GaussianMixture

N_WALKERS = 128


@pytest.fixture(scope="module")
def mixture():
    # two peaks 2 sd apart on each side: walkers can cross, so good samplers mix in the budget
    return GaussianMixture([[-1.5], [1.5]], covariances=0.5, weights=[0.3, 0.7])


@pytest.mark.slow
def test_table_recovers_known_weights_and_flags_bad_samplers(mixture, tmp_path):
    start = np.zeros(1)  # every walker between the peaks: who gets the weights right must mix
    samplers = {
        "MALA": MALA(step_size=1.0),
        "RWM": RandomWalkMetropolis(scale=1.5),
        "HMC stuck": HMC(timestep=40.0, n_leapfrog=4),       # acceptance ~0: never moves
        "ULA too large": ULA(step_size=5.0),                   # unstable: ε/σ² > 2 in each peak
    }
    table = compare(mixture, samplers, n_force_evals=1200, n_walkers=N_WALKERS, seed=0, initial_positions=start)
    exact = table.exact["mode_weights"]
    assert exact == pytest.approx([0.3, 0.7], abs=0.02)

    for name in ("MALA", "RWM"):
        row = table.row(name)
        assert row.verdict == "ok" and not row.diverged, table.table()
        assert row.max_abs_z <= 5
        # the same estimates reject a known-wrong answer (equal weights) by a wide margin
        w, se = row.estimates["weight 1"]
        assert abs(w - 0.5) / se > 10, (w, se)
        assert 0.0 < row.acceptance < 1.0 and row.ess > 2 * N_WALKERS and np.isfinite(row.tau)

    stuck = table.row("HMC stuck")
    assert stuck.acceptance < 0.01 and stuck.verdict in ("stuck", "collapsed")
    assert stuck.force_evaluations == 4 * stuck.steps  # HMC pays L per step: 1/4 of the steps
    assert table.row("ULA too large").diverged and table.row("ULA too large").verdict == "diverged"

    text = str(table)
    assert "MALA" in text and "diverged" in text and "mode_weights" in text
    path = table.save(tmp_path / "table.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["sampler"] for r in rows] == list(samplers) and rows[0]["verdict"] == "ok"


def test_stuck_sampler_at_exact_draws_is_not_hidden(mixture):
    """The issue's trap: HMC at acceptance 0 started at exact draws reproduces the weights;
    the table must still call it stuck (its walkers never move: R-hat is infinite)."""
    draws = mixture.sample(N_WALKERS, __import__("langevin_md").WalkerRNG(5, range(N_WALKERS))).numpy()
    table = compare(mixture, {"HMC": HMC(timestep=40.0, n_leapfrog=2)}, n_force_evals=200,
                    n_walkers=N_WALKERS, seed=1, initial_positions=draws)
    row = table.row("HMC")
    assert row.acceptance < 0.01
    assert row.verdict == "stuck" and row.rhat == np.inf and row.ess == 0.0


def test_annealed_runs_its_schedule_once(mixture):
    integ = AnnealedLangevin(sigmas=(2.0, 1.0, 0.5), steps_per_sigma=50, step_size=0.05)
    table = compare(mixture, {"annealed": integ}, n_force_evals=400, n_walkers=64, seed=0)
    row = table.row("annealed")
    assert row.steps == 150 and row.force_evaluations == 150 and row.ess == 64 and np.isnan(row.tau)


def test_step_size_sweep_draws_the_picture(mixture, tmp_path):
    sweep = step_size_sweep(mixture, ULA(step_size=0.1), [0.01, 0.3, 5.0], n_force_evals=300, n_walkers=32,
                            seed=0, initial_positions=np.zeros(1))
    assert [r.step_size for r in sweep.rows] == [0.01, 0.3, 5.0]
    assert sweep.rows[-1].verdict == "diverged"
    path = plot_step_size_sweep(sweep, tmp_path / "sweep.png", system=mixture)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_named(mixture):
    with pytest.raises(TypeError, match="samplers"):
        compare(mixture, {}, n_force_evals=100)
    with pytest.raises(TypeError, match="Integrator"):
        compare(mixture, {"x": "MALA"}, n_force_evals=100)
    with pytest.raises(ValueError, match="n_force_evals"):
        compare(mixture, {"m": MALA()}, n_force_evals=0)
    with pytest.raises(ValueError, match="n_walkers"):
        compare(mixture, {"m": MALA()}, n_force_evals=100, n_walkers=1)
    with pytest.raises(ValueError, match="burn_in_fraction"):
        compare(mixture, {"m": MALA()}, n_force_evals=100, burn_in_fraction=1.0)
    with pytest.raises(ValueError, match="raise n_force_evals"):
        compare(mixture, {"h": HMC(n_leapfrog=20)}, n_force_evals=100)
    with pytest.raises(ValueError, match="annealing schedule"):
        compare(mixture, {"a": AnnealedLangevin(steps_per_sigma=100)}, n_force_evals=100)
    with pytest.raises(ValueError, match="step_sizes"):
        step_size_sweep(mixture, MALA(), [0.1, -1.0], n_force_evals=100)
    assert force_evaluations_per_step(HMC(n_leapfrog=7)) == 7 and force_evaluations_per_step(MALA()) == 1


def test_build_samplers_from_a_config_table():
    from langevin_md.compare import build_samplers

    built = build_samplers({"MALA": {"type": "MALA", "step_size": 0.3},
                            "HMC": {"type": "HMC", "timestep": 0.2, "n_leapfrog": 5},
                            "annealed": {"type": "AnnealedLangevin", "sigmas": [2.0, 1.0], "steps_per_sigma": 10}})
    assert list(built) == ["MALA", "HMC", "annealed"]
    assert built["HMC"] == HMC(timestep=0.2, n_leapfrog=5) and built["annealed"].sigmas == (2.0, 1.0)
    with pytest.raises(ValueError, match="unknown type 'LMC'.*MALA"):
        build_samplers({"x": {"type": "LMC"}})
    with pytest.raises(ValueError, match=r"no setting\(s\) \['stepsize'\]"):
        build_samplers({"x": {"type": "MALA", "stepsize": 0.1}})
    with pytest.raises(ValueError, match="'type' key"):
        build_samplers({"x": {"step_size": 0.1}})


def test_build_samplers_reads_settings_with_units():
    from langevin_md.compare import build_samplers

    built = build_samplers({"B": {"type": "BAOAB", "timestep": "2 fs", "friction": "1/ps"},
                            "M": {"type": "MALA", "step_size": "0.01 nm**2"}})
    from langevin_md.integrators import BAOAB

    assert built["B"] == BAOAB(0.002, 1.0)
    assert built["M"] == MALA(0.01)
    with pytest.raises(ValueError, match="sampler 'B': timestep = '2 blorps'"):
        build_samplers({"B": {"type": "BAOAB", "timestep": "2 blorps"}})
    with pytest.raises(ValueError, match="timestep must be in picosecond"):
        build_samplers({"B": {"type": "BAOAB", "timestep": "2 nm"}})
