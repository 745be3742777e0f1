"""Analysis of replica-exchange runs: per-temperature samples, swap statistics, round trips,
plots (langevin_md.analysis.tempering)."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import (at_temperature, communication_barrier, plot_replica_traces,
                                  plot_swap_acceptance, swap_acceptance, temperature_round_trips,
                                  tempering_section)
from langevin_md.integrators import BAOAB, ReplicaExchange, geometric_ladder
from langevin_md.systems import Harmonic


@pytest.fixture(scope="module")
def result():
    system = Harmonic(dim=2, k=1.0, kT=1.0)
    integ = ReplicaExchange(BAOAB(0.4, 1.0), ladder=geometric_ladder(4, 4.0), swap_every=2)
    return lmd.sample(system, integ, n_steps=400, n_walkers=4 * 6, burn_in=50, seed=2)


def test_at_temperature_picks_the_walker_holding_each_rung():
    idx = np.array([[0, 1, 2, 2, 0, 1], [2, 0, 1, 0, 1, 2]])
    values = np.arange(12.0).reshape(2, 6)
    assert at_temperature(idx, 0, values).tolist() == [[0.0, 4.0], [7.0, 9.0]]
    assert at_temperature(idx, -1, values).tolist() == [[2.0, 3.0], [6.0, 11.0]]
    with pytest.raises(ValueError, match="rung"):
        at_temperature(idx, 3, values)
    with pytest.raises(ValueError, match="once per"):
        at_temperature(np.array([[0, 0, 1, 2, 0, 1]]), 0, values[:1])
    with pytest.raises(ValueError, match="values are required"):
        at_temperature(idx, 0)


def test_at_temperature_on_a_result(result):
    cold = at_temperature(result, 0)
    assert cold.shape == (result.n_frames, 6, 2)
    kT = at_temperature(result, 0, result.fields["kT"])
    assert np.allclose(kT, 1.0)
    hot = at_temperature(result, 3, result.fields["kT"])
    assert np.allclose(hot, 4.0)
    # The hot rung is wider: <x²> about 4 kT vs 1 kT (BAOAB is exact on a harmonic well).
    ratio = (at_temperature(result, 3) ** 2).mean() / (cold ** 2).mean()
    assert 2.5 < ratio < 6.0


def test_round_trips_from_traces():
    # One ladder of 3: walker 0 goes 0 -> 2 -> 0 (one trip); walker 2 goes 2 -> 0 -> 2.
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [1, 2, 0], [0, 1, 2], [0, 2, 1]])
    trips = temperature_round_trips(idx, steps=np.arange(6) * 10)
    assert trips.per_ladder.tolist() == [1]
    assert trips.rate.tolist() == [1 / 50]


def test_swap_statistics_and_barrier(result):
    summ = result.integrator_summary
    acc = swap_acceptance(summ)
    assert acc.per_ladder.shape == (6, 3) and acc.mean.shape == (3,)
    assert np.all((acc.mean > 0) & (acc.mean <= 1))
    lam = communication_barrier(acc.per_ladder)
    assert lam.shape == (6,) and np.allclose(lam, summ["communication_barrier"])
    assert temperature_round_trips(result).per_ladder.sum() <= summ["round_trips"].sum()


def test_plots_and_report_section(result, tmp_path):
    p1 = plot_replica_traces(result, tmp_path / "traces.png", ladder=1)
    p2 = plot_swap_acceptance(result.integrator_summary, tmp_path / "acc.png")
    for p in (p1, p2):
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    text = tempering_section(result, tmp_path / "report")
    assert "## Replica exchange" in text and "| 0–1 |" in text
    assert (tmp_path / "report" / "replica_traces.png").stat().st_size > 0
    with pytest.raises(ValueError, match="not a replica-exchange run"):
        at_temperature(lmd.sample(Harmonic(dim=1), BAOAB(), n_steps=5), 0)


def test_swap_and_round_trip_summaries_read_with_units(result):
    acc = swap_acceptance(result.integrator_summary)
    for text in (str(acc), repr(acc)):
        assert "array(" not in text and "SwapAcceptance(" not in text
        assert "probability per swap attempt" in text and "6 ladders of 4 temperatures" in text
        assert "0-1" in text and "2-3" in text and f"{acc.mean[0]:.3f} ± {acc.standard_error[0]:.3f}" in text
        assert "communication barrier" in text
    trips = temperature_round_trips(result)
    for text in (str(trips), repr(trips)):
        assert "array(" not in text and f"{trips.mean_rate:.3g}" in text
        assert "trips per step per ladder" in text
    per_frame = temperature_round_trips(result.fields["temperature_index"])
    assert per_frame.rate_unit == "trips per frame" and "trips per frame per ladder" in str(per_frame)
