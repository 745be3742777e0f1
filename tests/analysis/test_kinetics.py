"""Markov-state-model kinetics (deeptime): implied timescales against the Smoluchowski operator."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import (implied_timescales, kmeans_states, mean_first_passage_times,
                                  plot_implied_timescales, timescale_reading)
from langevin_md.integrators import ULA
from langevin_md.systems import DoubleWell

BARRIER = 3.0


def smoluchowski_timescale(system, lo=-2.5, hi=2.5, n=2001):
    """1/|λ₁| of dx = −U'(x) dt + √2 dW (D = 1, kT = 1), discretised as a master equation.

    Neighbouring grid cells exchange at rates exp(∓ΔU/2kT)/h² (detailed balance with
    exp(−U/kT), reflecting ends); its symmetrised generator has off-diagonals 1/h². Its
    eigenvalues converge to those of the Fokker–Planck operator as h → 0 (this grid gives the
    exact minimum-to-minimum MFPT of the package to 1e-5).
    """
    x = np.linspace(lo, hi, n)
    h = x[1] - x[0]
    u = system.potential_1d(x) / system.kT
    up = np.exp(-(u[1:] - u[:-1]) / 2) / h ** 2
    down = np.exp(-(u[:-1] - u[1:]) / 2) / h ** 2
    diag = np.zeros(n)
    diag[:-1] -= up
    diag[1:] -= down
    off = np.full(n - 1, 1 / h ** 2)
    gen = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
    ev = np.sort(np.linalg.eigvalsh(gen))[::-1]
    return -1.0 / ev[1]


@pytest.fixture(scope="module")
def double_well_trajectories():
    """100 ULA walkers on a symmetric 3 kT double well, 40 000 steps of ε = 0.0025 (time 100,
    ~24 relaxation times each), binned into 30 cells along x."""
    system = DoubleWell(dim=1, barrier=BARRIER, kT=1.0)
    eps, every = 0.0025, 20
    result = lmd.sample(system, ULA(step_size=eps), n_steps=40_000, n_walkers=100, record_every=every, seed=3)
    x = result.positions[..., 0]
    edges = np.linspace(-1.6, 1.6, 31)
    cells = np.clip(np.digitize(x, edges) - 1, 0, 29)
    return system, cells, eps * every


@pytest.mark.slow
def test_implied_timescale_matches_fokker_planck(double_well_trajectories):
    system, cells, dt = double_well_trajectories
    t1 = smoluchowski_timescale(system)
    lag = int(round(0.1 * t1 / dt))  # τ ≈ t1/10: the 30-cell model is Markovian there
    its = implied_timescales(cells, [1, lag], dt=dt, unit="time", n_timescales=2, n_bootstrap=20)
    est, se = its.slowest()
    z = (est - t1) / se
    print(f"slowest implied timescale at lag {lag * dt:.3g}: {est:.3f} ± {se:.3f}; Smoluchowski 1/|λ1| = "
          f"{t1:.3f}, z = {z:+.2f}")
    assert abs(z) <= 5
    # Named wrong answer: 1/k with k the one-way hopping rate (forgetting that relaxation
    # between two wells goes at k_AB + k_BA = 2k), i.e. twice the timescale.
    assert abs(est - 2 * t1) > 5 * se
    # Timescales rise with lag towards the plateau (the variational principle for reversible
    # dynamics); at one frame the model is not yet Markovian.
    assert its.timescales[0, 0] < est
    assert "each walker's run is" in timescale_reading(its)


@pytest.mark.slow
def test_first_passage_times_and_plot(double_well_trajectories, tmp_path):
    system, cells, dt = double_well_trajectories
    # Two core states at the minima (|x| > 0.8); frames between keep their last core.
    from langevin_md.analysis import core_assignment

    x = np.linspace(-1.6, 1.6, 31)[:-1] + 0.05  # ≈ cell centres
    core = np.where(x[cells] < -0.8, 0, np.where(x[cells] > 0.8, 1, -1))
    states = core_assignment(core)
    lag = int(round(0.5 / dt))
    fp = mean_first_passage_times(states, lag, dt=dt, unit="time", n_bootstrap=10)
    exact = system.mean_first_passage_time(D=1.0, start=-1.0, end=0.8)  # left minimum -> right core
    t1 = smoluchowski_timescale(system)
    print(f"MFPT left core -> right core: {fp.mfpt[0, 1]:.3f} ± {fp.standard_error[0, 1]:.3f}; right -> left "
          f"{fp.mfpt[1, 0]:.3f} ± {fp.standard_error[1, 0]:.3f}; exact (x = -1 -> 0.8) {exact:.3f}")
    # A two-core MSM's MFPT is 1/k_AB of the lumped model, not exactly the trajectory passage
    # time from the minimum (it starts from every frame labelled A): a loose check, 15 %.
    assert abs(fp.mfpt[0, 1] / exact - 1) < 0.15
    # The symmetric well gives equal times both ways, within the bootstrap errors.
    assert abs(fp.mfpt[0, 1] - fp.mfpt[1, 0]) <= 5 * np.hypot(fp.standard_error[0, 1], fp.standard_error[1, 0])
    # Named wrong answer: the relaxation time t1 = 1/(k_AB + k_BA) taken as the passage time.
    assert abs(fp.mfpt[0, 1] - t1) > 5 * fp.standard_error[0, 1]
    its = implied_timescales(states, [1, 5, lag], dt=dt, unit="time", n_bootstrap=5)
    path = plot_implied_timescales(its, tmp_path / "its.png")
    assert (tmp_path / "its.png").stat().st_size > 0 and path.endswith("its.png")


def test_kmeans_and_bad_input():
    rng = np.random.default_rng(0)
    # Angles near ±179° (one basin across the periodic boundary) and near 0° (another).
    ang = np.where(rng.random((60, 4)) < 0.5, np.where(rng.random((60, 4)) < 0.5, 179.0, -179.0), 0.0)
    ang = ang + rng.normal(0, 1, ang.shape)
    near_edge = np.abs(ang) > 90
    labels = kmeans_states(ang, 2, period=360.0)
    assert labels.shape == (60, 4)
    assert len(set(labels[near_edge])) == 1 and set(labels[~near_edge]).isdisjoint(labels[near_edge])
    # Named wrong answer: clustering the raw numbers splits the ±179° basin in two.
    raw = kmeans_states(ang, 2)
    assert len(set(raw[near_edge])) == 2
    with pytest.raises(ValueError, match="lagtimes must be positive integers"):
        implied_timescales(np.zeros((10, 3), dtype=int), [0])
    with pytest.raises(ValueError, match=r"walker 1 has unassigned frames \(-1\)"):
        implied_timescales(np.array([[0, 0], [1, 1], [0, -1], [1, 0]]), [1])
    with pytest.raises(ValueError, match="integer state labels"):
        implied_timescales(np.zeros((10, 3)), [1])


def test_molecular_sections(tmp_path):
    """A short alanine-dipeptide run gets the φ/ψ surface and kinetics sections in its report."""
    from langevin_md.analysis import report

    system = lmd.systems.alanine_dipeptide(solvent="vacuum", engine="torch")
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=0.002, friction=5.0), n_steps=600, n_walkers=4,
                   record_every=5, seed=0)
    report(r, tmp_path / "ala")
    md = (tmp_path / "ala" / "report.md").read_text()
    assert "## Free-energy surface (φ, ψ)" in md and "## Kinetics (Markov state model" in md
    assert "Transitions between consecutive frames" in md
    for png in ("free_energy_surface.png", "implied_timescales.png"):
        assert (tmp_path / "ala" / png).stat().st_size > 0


@pytest.mark.parametrize("n_bootstrap", [0, 1, True])
def test_first_passage_times_refuse_a_bootstrap_that_gives_no_error(n_bootstrap):
    """One resample gave NaN errors silently (a standard error with ddof=1), zero a bare numpy
    'need at least one array' error; now both are refused as implied_timescales refuses them."""
    labels = np.random.default_rng(0).integers(0, 2, size=(200, 4))
    with pytest.raises(ValueError, match=rf"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}"):
        mean_first_passage_times(labels, 2, n_bootstrap=n_bootstrap)


def test_first_passage_times_need_two_walkers_for_their_errors():
    labels = np.random.default_rng(0).integers(0, 2, size=(200, 1))
    with pytest.raises(ValueError, match=">= 2 walkers"):
        mean_first_passage_times(labels, 2)
