"""Free-energy surfaces with bootstrap errors, plain and MBAR-reweighted."""

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.analysis import free_energy_surface, mbar_tempering, plot_free_energy_surface
from langevin_md.integrators import MALA, ReplicaExchange, geometric_ladder
from langevin_md.systems import DoubleWell


def test_one_dimensional_surface_matches_the_exact_marginal(tmp_path):
    """Independent walkers on a 2 kT double well: F(x) in each populated bin against
    −kT ln(exact bin mass), z-scores from the bootstrap over walkers."""
    system = DoubleWell(dim=1, barrier=2.0, kT=1.0, tilt=0.5)
    result = lmd.sample(system, MALA(step_size=0.2), n_steps=2000, n_walkers=64, burn_in=200, record_every=5, seed=4)
    x = result.positions[..., 0]
    chains = np.broadcast_to(np.arange(64), x.shape).ravel()
    fes = free_energy_surface(x.ravel(), chains=chains, bins=24, extent=[(-1.8, 1.8)], labels=("x",))
    exact_p = system.bin_probabilities(fes.edges[0])
    exact_f = -np.log(exact_p / exact_p.sum())
    ok = np.isfinite(fes.free_energy) & (exact_f - exact_f.min() < 4)
    # Compare shapes with the offset fitted by weighted least squares (F is defined up to a constant).
    w = 1 / fes.standard_error[ok] ** 2
    off = np.sum(w * (fes.free_energy[ok] - exact_f[ok])) / w.sum()
    z = (fes.free_energy[ok] - exact_f[ok] - off) / fes.standard_error[ok]
    print(f"{ok.sum()} bins, max |z| = {np.abs(z).max():.2f}")
    assert np.abs(z).max() <= 5
    # Named wrong answer: the untilted well's surface (tilt 0), rejected in some bin.
    flat = DoubleWell(dim=1, barrier=2.0, kT=1.0).bin_probabilities(fes.edges[0])
    wrong = -np.log(flat / flat.sum())
    off_w = np.sum(w * (fes.free_energy[ok] - wrong[ok])) / w.sum()
    assert np.abs((fes.free_energy[ok] - wrong[ok] - off_w) / fes.standard_error[ok]).max() > 5
    plot_free_energy_surface(fes, tmp_path / "fes1d.png")
    assert (tmp_path / "fes1d.png").stat().st_size > 0


def test_reweighted_surface_from_all_rungs(tmp_path):
    """A 2-D well (double well in x, harmonic in y) on a ladder: the surface at the coldest rung
    from every rung reweighted recovers the exact left/right free-energy difference."""
    system = DoubleWell(dim=2, barrier=4.0, kT=1.0, tilt=0.5)
    ladder = geometric_ladder(6, 4.0)
    rex = ReplicaExchange(MALA(step_size=0.1, target_accept=0.6), ladder=ladder, swap_every=20)
    result = lmd.sample(system, rex, n_steps=1500, n_walkers=6 * 12, burn_in=500, record_every=10, seed=5)
    m = mbar_tempering(result, n_bootstrap=40)
    feats = m.select(result.positions)
    fes = free_energy_surface(feats, weights=m.weights(1.0), replicate_weights=m.bootstrap_weights(1.0),
                              bins=(20, 12), extent=[(-1.8, 1.8), (-2.5, 2.5)], labels=("x", "y"))
    assert fes.free_energy.shape == (20, 12) and np.nanmin(fes.free_energy) == 0
    p_left = fes.probability[:10].sum()
    left, _ = system.mode_weights
    boot = m.bootstrap_weights(1.0)
    se = (boot[:, feats[:, 0] < 0].sum(1)).std(ddof=1)
    print(f"left-well mass from the reweighted surface {p_left:.4f} ± {se:.4f}, exact {left:.4f}")
    assert abs(p_left - left) <= 3 * se
    assert abs(0.5 - left) > 5 * se  # named wrong answer: the untilted 50/50 split
    plot_free_energy_surface(fes, tmp_path / "fes2d.png")
    assert (tmp_path / "fes2d.png").stat().st_size > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="d = 1 or 2"):
        free_energy_surface(np.zeros((10, 3)), chains=np.arange(10))
    with pytest.raises(ValueError, match="periodic features need an explicit extent"):
        free_energy_surface(np.zeros(10), chains=np.arange(10), periodic=True)
    with pytest.raises(ValueError, match=">= 2 independent chains"):
        free_energy_surface(np.arange(10.0), chains=np.zeros(10))
    with pytest.raises(ValueError, match="weights must be 10 finite non-negative"):
        free_energy_surface(np.arange(10.0), chains=np.arange(10), weights=-np.ones(10))
