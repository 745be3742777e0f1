"""MBAR over temperature ladders (pymbar): reweighting against exact quadrature.

Each statistical test runs many independent ladders with a fixed seed, compares with the exact
value by a z-score from the bootstrap standard error (over ladders), and shows that a named
wrong answer is rejected.
"""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import at_temperature, mbar_tempering, mbar_runs, reduced_energies, temperature_mbar
from langevin_md.integrators import MALA, ReplicaExchange, geometric_ladder
from langevin_md.systems import DoubleWell, MullerBrown

BARRIER, TILT = 12.0, 1.0
N_LADDERS, N_T = 16, 8


@pytest.fixture(scope="module")
def double_well_run():
    """Tilted double well, barrier 12 kT at the coldest rung, 16 ladders of 8 rungs (kT 1 → 8).

    Swaps every 50 steps: between swaps the hot rungs cross the barrier (1.5 kT at kT = 8),
    the cold ones do not, so the cold rung alone sees each ladder's walkers only as they
    arrive; MBAR adds the neighbouring rungs, whose samples overlap the coldest rung's law.
    """
    system = DoubleWell(dim=1, barrier=BARRIER, kT=1.0, tilt=TILT)
    ladder = geometric_ladder(N_T, 8.0)
    rex = ReplicaExchange(MALA(step_size=0.1, target_accept=0.6), ladder=ladder, swap_every=50)
    result = lmd.sample(system, rex, n_steps=3000, n_walkers=N_LADDERS * N_T, burn_in=3000, record_every=10, seed=1)
    left = (result.positions[..., 0] < system.barrier_top).astype(float)
    return system, ladder, result, left, mbar_tempering(result, n_bootstrap=60)


def _left_weight(kT):
    return DoubleWell(dim=1, barrier=BARRIER, kT=kT, tilt=TILT).mode_weights[0]


def test_left_well_weight_between_rungs_matches_quadrature(double_well_run):
    _, ladder, result, left, m = double_well_run
    kT = float(np.sqrt(ladder[2] * ladder[3]))  # between rungs 2 and 3
    est = m.expectation(left, kT)
    exact = _left_weight(kT)
    z = (est.mean[0] - exact) / est.standard_error[0]
    print(f"left-well weight at kT = {kT:.4f}: MBAR {est.mean[0]:.4f} ± {est.standard_error[0]:.4f}, "
          f"quadrature {exact:.4f}, z = {z:+.2f}")
    assert abs(z) <= 3
    # Named wrong answer: the coldest rung's weight, i.e. not reweighting to the new temperature.
    assert abs(_left_weight(1.0) - est.mean[0]) / est.standard_error[0] > 5
    # Free energies are relative to the coldest rung.
    assert m.free_energies[0] == 0 and np.all(m.free_energy_errors[1:] > 0)


def test_all_rungs_beat_the_coldest_rung_alone(double_well_run):
    _, _, result, left, m = double_well_run
    est = m.expectation(left, 1.0)
    cold = at_temperature(result, 0, left).mean(0)  # one mean per ladder, the cold rung only
    se_cold = cold.std(ddof=1) / np.sqrt(cold.size)
    exact = _left_weight(1.0)
    print(f"left-well weight at the coldest rung (exact {exact:.4f}): MBAR over all rungs "
          f"{est.mean[0]:.4f} ± {est.standard_error[0]:.4f}; coldest rung alone {cold.mean():.4f} ± "
          f"{se_cold:.4f}; ratio of errors {se_cold / est.standard_error[0]:.2f}")
    assert abs(est.mean[0] - exact) <= 3 * est.standard_error[0]
    assert se_cold >= 2 * est.standard_error[0]
    # Named wrong answer: pooling every rung's samples without weights ("use all the data").
    assert abs(left.mean() - est.mean[0]) > 5 * est.standard_error[0]


def test_reweighting_refuses_temperatures_outside_the_ladder(double_well_run):
    _, _, result, left, _ = double_well_run
    m = mbar_tempering(result, error="analytic")
    with pytest.raises(ValueError, match=r"kT = 9\.5.*outside the ladder's range \[1, 8\]"):
        m.expectation(left, 9.5)
    with pytest.raises(ValueError, match="laid out like the source"):
        m.expectation(left[:5], 1.0)


def test_muller_brown_mean_energy_at_three_temperatures():
    system = MullerBrown(kT=1.0, energy_scale=0.1)
    ladder = geometric_ladder(N_T, 3.0)
    rex = ReplicaExchange(MALA(step_size=0.001, target_accept=0.6), ladder=ladder, swap_every=10)
    result = lmd.sample(system, rex, n_steps=3000, n_walkers=N_LADDERS * N_T, burn_in=2000, record_every=10, seed=2)
    m = mbar_tempering(result, n_bootstrap=50)
    targets = [float(np.sqrt(ladder[k] * ladder[k + 1])) for k in (0, 3, 6)]
    est = m.expectation(result.energies, targets)
    x = np.linspace(-3.0, 2.5, 1101)
    y = np.linspace(-1.5, 3.5, 1001)
    u = system.potential(*np.meshgrid(x, y, indexing="ij"))

    def exact(kT):  # <U> by quadrature on a grid wide enough for kT = 3 (mass outside < 1e-12)
        w = np.exp(-(u - u.min()) / kT)
        return float((u * w).sum() / w.sum())

    u_min = system.minimum_energies[0]
    for kT, mu, se in zip(targets, est.mean, est.standard_error):
        q = exact(kT)
        print(f"<U> at kT = {kT:.3f}: MBAR {mu:.4f} ± {se:.4f}, quadrature {q:.4f}, z = {(mu - q) / se:+.2f}")
        assert abs(mu - q) <= 3 * se
        # Named wrong answer: the harmonic approximation of the deepest well, U_min + kT
        # (equipartition in 2-D), which ignores anharmonicity and the other two wells.
        assert abs(u_min + kT - mu) > 5 * se


def test_several_runs_at_different_temperatures():
    """mbar_runs pools plain runs; the harmonic well's <U> = kT/2 per coordinate is exact."""
    from langevin_md.systems import Harmonic

    runs = [lmd.sample(Harmonic(dim=2, kT=kT), MALA(step_size=0.3), n_steps=400, n_walkers=16, record_every=4,
                       seed=k) for k, kT in enumerate((1.0, 1.5, 2.25))]
    m = mbar_runs(runs, n_bootstrap=40)
    est = m.expectation([r.energies for r in runs], [1.2, 2.0])
    z = (est.mean - est.kT) / est.standard_error  # <U> = (d/2) kT with d = 2
    assert np.all(np.abs(z) <= 3), z
    assert np.all(np.abs(est.mean - 0.5 * est.kT) > 3 * est.standard_error)  # <U> = kT/2 is wrong
    assert np.allclose(m.free_energies, -np.log(np.array([1.0, 1.5, 2.25])), atol=5 * m.free_energy_errors.max())


def test_reduced_energies_and_bad_input():
    u = reduced_energies([1.0, 2.0], [1.0, 2.0])
    assert np.allclose(u, [[1.0, 2.0], [0.5, 1.0]])
    with pytest.raises(ValueError, match="sample 1 has U = nan"):
        reduced_energies([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="not one of kT_states"):
        temperature_mbar([1.0, 2.0], [1.0, 3.0], [0, 1], kT_states=[1.0, 2.0])
    with pytest.raises(ValueError, match="not a replica-exchange run"):
        mbar_tempering(lmd.sample(DoubleWell(), MALA(), n_steps=10, n_walkers=2))


def test_report_adds_the_mbar_section(double_well_run, tmp_path):
    from langevin_md.analysis import report

    _, _, result, _, _ = double_well_run
    rep = report(result, tmp_path / "rex")
    md = (tmp_path / "rex" / "report.md").read_text()
    assert "## Free energies across the ladder (MBAR)" in md and "mbar_energy.png" in md
    assert (tmp_path / "rex" / "mbar_energy.png").stat().st_size > 0 and "mbar energy" in rep.files


def test_a_float32_ladder_run_is_matched_to_its_rungs():
    """A float32 run records kT rounded to float32 while the ladder stays float64: a rung
    rounded by more than the old relative 1e-9 (1.3459001780 for 1.3459001926), or rounded up
    past its rung, was refused as 'not one of kT_states', so MBAR (and the report's
    free-energy sections) failed for float32 replica-exchange runs."""
    ladder = geometric_ladder(N_T, 8.0)
    kt32 = np.asarray(ladder, dtype=np.float32).astype(np.float64)
    assert np.any(kt32 > ladder) and np.any(kt32 < ladder)  # rounded both ways
    n = 40
    g = np.random.default_rng(0)
    sample_kT = np.tile(kt32, n)
    energies = g.gamma(0.5, sample_kT)  # 1-D harmonic: U/kT ~ Gamma(1/2)
    chain = np.repeat(np.arange(n), N_T)
    m = temperature_mbar(energies, sample_kT, chain, kT_states=ladder, n_bootstrap=10)
    np.testing.assert_array_equal(m.state, np.tile(np.arange(N_T), n))
    # a kT off every rung is still refused, by name
    with pytest.raises(ValueError, match="is not one of kT_states"):
        temperature_mbar(energies, sample_kT * (1 + 1e-4), chain, kT_states=ladder, n_bootstrap=10)


@pytest.mark.parametrize("stride", [0, -2, 1.5])
def test_mbar_runs_refuses_a_stride_that_keeps_no_frames(stride):
    """stride = 0 raised a bare ZeroDivisionError from numpy; a negative one kept no frames."""
    from langevin_md.result import SampleResult

    runs = [SampleResult(positions=np.zeros((20, 2, 1)), energies=np.random.default_rng(k).gamma(0.5, kT, (20, 2)),
                         steps=np.arange(20), kT=kT) for k, kT in enumerate((1.0, 2.0))]
    with pytest.raises(ValueError, match=rf"stride must be a positive integer.*got {stride!r}"):
        mbar_runs(runs, stride=stride)


def test_the_mbar_section_never_writes_through_a_linked_folder(double_well_run, tmp_path):
    """mbar_section (and the φ/ψ and kinetics sections) made their folder with mkdir, which
    accepts a link to a folder elsewhere and drew the plots there."""
    from langevin_md.analysis.free_energy_report import mbar_section
    from langevin_md.safe_paths import UnsafePathError

    _, _, result, _, m = double_well_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "report").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        mbar_section(result, tmp_path / "report", mbar=m)
    assert list(elsewhere.iterdir()) == []
