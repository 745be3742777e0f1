"""Samplers against quadrature on non-Gaussian targets: mixture mode weights and the
Müller–Brown marginal. Walkers start away from equilibrium (one point, or the minima), so
agreement also shows the chains mixed between modes."""

import numpy as np
import pytest
from scipy import stats

import langevin_md as lmd
from langevin_md.systems import GaussianMixture, MullerBrown

pytestmark = pytest.mark.slow


def per_walker_fraction_z(indicator, exact):
    """z-scores of per-walker time-averaged indicators (n_frames, n_walkers) vs exact."""
    per_walker = indicator.mean(0)
    return (per_walker.mean() - exact) / (per_walker.std(ddof=1) / np.sqrt(per_walker.size))


def test_mixture_mode_weights_against_quadrature():
    means = [[-2.0], [0.5], [3.0]]
    sds = np.array([0.7, 0.5, 1.0])
    weights = np.array([0.5, 0.2, 0.3])
    system = GaussianMixture(means, covariances=sds**2, weights=weights, kT=1.0)
    # Exact probability of each assignment region by quadrature on a fine grid.
    grid = np.linspace(-12, 14, 400_001)
    comp = weights * stats.norm.pdf(grid[:, None], np.array(means)[:, 0], sds)
    label = comp.argmax(1)
    dens = comp.sum(1)
    exact = np.array([np.trapezoid(dens * (label == j), grid) for j in range(3)])
    assert abs(exact.sum() - 1) < 1e-9

    r = lmd.sample(system, lmd.integrators.MALA(step_size=0.4), n_steps=4000, n_walkers=2000,
                   record_every=20, burn_in=2000, seed=0, initial_positions=[0.0])
    labels = system.mode_assignment(r.positions.reshape(-1, 1)).reshape(r.positions.shape[:2])
    labels = np.asarray(labels)
    for j in range(3):
        ind = (labels == j).astype(float)
        assert abs(per_walker_fraction_z(ind, exact[j])) <= 5, (j, ind.mean(), exact[j])
    # Known-wrong: equal mode weights (what a sampler stuck where it started, or one that
    # ignored the weights, would report); the same data reject them.
    z_wrong = [per_walker_fraction_z((labels == j).astype(float), 1 / 3) for j in range(3)]
    assert max(abs(z) for z in z_wrong) >= 20


def test_muller_brown_marginal_against_quadrature():
    system = MullerBrown(kT=25.0)
    extent = ((-3.3, 1.9), (-1.2, 3.2))
    assert system.mass_fraction(extent) > 0.9999
    xs, px, _, _ = system.marginals(bins=(26, 22), extent=extent)
    dx = xs[1] - xs[0]
    edges = np.concatenate([xs - dx / 2, [xs[-1] + dx / 2]])
    exact = px * dx
    r = lmd.sample(system, lmd.integrators.MALA(step_size=2e-3, target_accept=0.574),
                   n_steps=6000, n_walkers=1000, record_every=20, burn_in=3000, seed=0)
    x = r.positions[..., 0]
    idx = np.clip(np.digitize(x, edges) - 1, 0, len(exact) - 1)
    zs = np.array([per_walker_fraction_z((idx == b).astype(float), exact[b])
                   for b in range(len(exact)) if exact[b] > 1e-3])
    assert np.abs(zs).max() <= 5, zs
    # The marginal at a 40 % higher temperature is rejected by the same histogram.
    _, px_hot, _, _ = MullerBrown(kT=35.0).marginals(bins=(26, 22), extent=extent)
    wrong = px_hot * dx
    zw = np.array([per_walker_fraction_z((idx == b).astype(float), wrong[b])
                   for b in range(len(wrong)) if exact[b] > 1e-3])
    assert np.abs(zw).max() >= 20
