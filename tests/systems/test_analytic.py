"""Analytic Boltzmann targets: forces, dtypes, input checks and their exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from langevin_md.random import WalkerRNG
from langevin_md.systems.box import UniformBox
from langevin_md.systems.double_well import DoubleWell
from langevin_md.systems.harmonic import Harmonic
from langevin_md.systems.mixture import GaussianMixture
from langevin_md.systems.muller_brown import MullerBrown

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _mixture_2d(kT=1.0):
    return GaussianMixture(
        means=[[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]],
        covariances=[0.5, [0.3, 0.8], [[1.0, 0.3], [0.3, 0.5]]],
        weights=[0.2, 0.5, 0.3],
        kT=kT,
    )


SYSTEMS = {
    "double_well_1d": lambda: DoubleWell(dim=1, barrier=3.0),
    "double_well_3d_tilted": lambda: DoubleWell(dim=3, barrier=2.0, tilt=0.7, kT=0.5),
    "muller_brown": lambda: MullerBrown(kT=10.0),
    "mixture_2d": _mixture_2d,
    "mixture_1d_hot": lambda: GaussianMixture([[-1.5], [1.5]], [0.4, 0.9], [0.3, 0.7], kT=2.0),
    "box_2d": lambda: UniformBox([-1.0, 0.0], [1.0, 3.0], wall_stiffness=50.0),
}


def _points(system, n=64, seed=0):
    """Random points that also land outside box walls and away from the minima."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *system.event_shape)) * 1.5
    if isinstance(system, MullerBrown):
        x = np.stack([rng.uniform(-1.5, 1.0, n), rng.uniform(-0.3, 2.0, n)], axis=1)
    return torch.as_tensor(x)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@pytest.mark.parametrize("device", DEVICES)
def test_forces_match_autograd_float64(name, device):
    system = SYSTEMS[name]()
    x = _points(system).to(device).requires_grad_(True)
    energy, forces = system.energy_and_forces(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    assert energy.shape == (x.shape[0],)
    assert forces.shape == x.shape and forces.dtype == torch.float64 and forces.device == x.device
    scale = grad.abs().max().item() + 1.0
    torch.testing.assert_close(forces, -grad, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_forces_match_finite_differences(name):
    system = SYSTEMS[name]()
    x = _points(system, n=4, seed=1)
    _, forces = system.energy_and_forces(x)
    h = 1e-6
    for k in range(system.event_shape[0]):
        dx = torch.zeros_like(x)
        dx[:, k] = h
        fd = -(system.energy(x + dx) - system.energy(x - dx)) / (2 * h)
        torch.testing.assert_close(forces[:, k], fd, rtol=1e-5, atol=1e-5 * (fd.abs().max().item() + 1))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_float32_agrees_with_float64(name):
    system = SYSTEMS[name]()
    x64 = _points(system, seed=2)
    e64, f64 = system.energy_and_forces(x64)
    e32, f32 = system.energy_and_forces(x64.float())
    assert e32.dtype == torch.float32 and f32.dtype == torch.float32
    torch.testing.assert_close(e32.double(), e64, rtol=1e-4, atol=1e-4 * (e64.abs().max().item() + 1))
    torch.testing.assert_close(f32.double(), f64, rtol=1e-4, atol=1e-4 * (f64.abs().max().item() + 1))
    # Parameters are cached once per (dtype, device).
    assert len([k for k in system._tensor_cache if k[0] == "params"]) == 2


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_bad_shapes_are_reported(name):
    system = SYSTEMS[name]()
    d = system.event_shape[0]
    with pytest.raises(ValueError, match=r"expects \(n_walkers, "):
        system.energy_and_forces(torch.zeros(5, d + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        system.energy_and_forces(torch.zeros(d, dtype=torch.float64))
    with pytest.raises(TypeError):
        system.energy_and_forces(np.zeros((5, d)))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_initial_positions(name):
    system = SYSTEMS[name]()
    x = system.initial_positions(32, WalkerRNG(3, 32))
    assert x.shape == (32, *system.event_shape) and x.dtype == torch.float64 and x.device.type == "cpu"
    assert torch.isfinite(system.energy(x)).all()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DoubleWell(dim=0), "dim"),
        (lambda: DoubleWell(barrier=-1.0), "barrier"),
        (lambda: DoubleWell(barrier=1.0, tilt=2.0), "tilt"),
        (lambda: DoubleWell(kT=0.0), "kT"),
        (lambda: MullerBrown(kT=-1.0), "kT"),
        (lambda: MullerBrown(energy_scale=0.0), "energy_scale"),
        (lambda: GaussianMixture([0.0, 1.0]), "means"),
        (lambda: GaussianMixture([[0.0], [1.0]], weights=[1.0, -1.0]), "weights"),
        (lambda: GaussianMixture([[0.0], [1.0]], weights=[1.0]), "weights"),
        (lambda: GaussianMixture([[0.0], [1.0]], covariances=[1.0, 0.0]), "covariances"),
        (lambda: GaussianMixture([[0.0, 0.0]], covariances=[[[1.0, 2.0], [2.0, 1.0]]]), "positive definite"),
        (lambda: GaussianMixture([[0.0, 0.0]], covariances=[[[1.0, 0.5], [0.0, 1.0]]]), "symmetric"),
        (lambda: GaussianMixture([[0.0, 0.0]], covariances=[[1.0, 1.0, 1.0]]), "shape"),
        (lambda: GaussianMixture([[0.0], [1.0]], covariances=[1.0, 1.0, 1.0]), "one entry per component"),
        (lambda: UniformBox(1.0, -1.0), "low < high"),
        (lambda: UniformBox([0.0, 0.0], [1.0, 1.0, 1.0]), "shape"),
        (lambda: UniformBox(wall_stiffness=0.0), "wall_stiffness"),
        (lambda: UniformBox(0.0, 1.0, dim=0), "dim"),
    ],
)
def test_bad_parameters_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --------------------------------------------------------------------------- double well
@pytest.mark.parametrize("barrier, expected", [(3.0, 8.880), (5.0, 36.48), (8.0, 437.5)])
def test_double_well_mfpt_matches_exact_results_row_9(barrier, expected):
    system = DoubleWell(barrier=barrier, kT=1.0)
    tau = system.mean_first_passage_time(D=1.0)
    assert abs(tau / expected - 1.0) < 1e-3
    # The passage back is the same by symmetry; D rescales time.
    assert math.isclose(system.mean_first_passage_time(start=1.0, end=-1.0), tau, rel_tol=1e-9)
    assert math.isclose(system.mean_first_passage_time(D=2.0), tau / 2.0, rel_tol=1e-12)
    # Kramers' estimate is 6-19 % off here: the exact integral must be distinguishable from it.
    kramers = math.pi / (math.sqrt(8.0 * barrier) * math.sqrt(4.0 * barrier)) * math.exp(barrier)
    assert abs(kramers / tau - 1.0) > 0.05


def test_double_well_mfpt_agrees_with_nested_quadrature_when_tilted():
    system = DoubleWell(barrier=2.0, tilt=0.6, kT=0.8)
    a, b = system.minima
    lo = system.support()[0]
    inner = lambda y: integrate.quad(lambda z: math.exp(-system.potential_1d(z) / system.kT), lo, y,  # noqa: E731
                                     epsrel=1e-11)[0]
    ref = integrate.quad(lambda y: math.exp(system.potential_1d(y) / system.kT) * inner(y), a, b, epsrel=1e-10)[0]
    assert math.isclose(system.mean_first_passage_time(), ref, rel_tol=1e-6)
    # Downhill (right → left, towards the deeper well) is faster than uphill.
    assert system.mean_first_passage_time(start=b, end=a) < ref


def test_double_well_exact_marginal_is_self_consistent():
    system = DoubleWell(dim=2, barrier=3.0)
    np.testing.assert_allclose(system.minima, [-1.0, 1.0], atol=1e-12)
    assert abs(system.barrier_top) < 1e-12
    np.testing.assert_allclose(system.mode_weights, [0.5, 0.5], atol=1e-12)
    x, logp = system.log_density_grid(bins=4001)
    p = np.exp(logp)
    assert math.isclose(integrate.simpson(p, x=x), 1.0, rel_tol=1e-9)
    assert math.isclose(integrate.simpson(x * x * p, x=x), system.marginal_variance, rel_tol=1e-8)
    np.testing.assert_allclose(system.variance, [system.marginal_variance, 1.0])
    edges = np.linspace(*system.support(), 41)
    probs = system.bin_probabilities(edges)
    assert math.isclose(probs.sum(), 1.0, rel_tol=1e-10)


def test_double_well_tilt_shifts_mass_to_the_lower_well():
    system = DoubleWell(barrier=3.0, tilt=0.5)
    w = system.mode_weights
    assert w[0] > 0.6 and math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    # Same weights from histogram-style bin probabilities split at the barrier top.
    lo, hi = system.support()
    left = system.bin_probabilities([lo, system.barrier_top])[0]
    assert math.isclose(left, w[0], rel_tol=1e-8)
    # The forces vanish at the stationary points.
    pts = torch.tensor([[system.minima[0]], [system.barrier_top], [system.minima[1]]], dtype=torch.float64)
    assert system.energy_and_forces(pts)[1].abs().max() < 1e-12


# --------------------------------------------------------------------------- Müller–Brown
def test_muller_brown_minima_and_energies():
    system = MullerBrown()
    _, f = system.energy_and_forces(torch.as_tensor(system.minima))
    assert f.abs().max() < 1e-9
    np.testing.assert_allclose(system.minimum_energies, [-146.69952, -108.16672, -80.76782], atol=1e-4)
    # energy_scale multiplies the whole surface.
    scaled = MullerBrown(energy_scale=0.1)
    torch.testing.assert_close(scaled.energy(torch.as_tensor(system.minima)),
                               0.1 * system.energy(torch.as_tensor(system.minima)))
    # Walkers start in all three basins, round-robin by walker index.
    x = system.initial_positions(6, WalkerRNG(0, 6))
    nearest = torch.cdist(x, torch.as_tensor(system.minima)).argmin(1)
    assert nearest.tolist() == [0, 1, 2, 0, 1, 2]


def test_muller_brown_density_grid_is_normalised_and_resolution_independent():
    system = MullerBrown(kT=15.0)
    x, y, dens = system.density_grid(bins=(62, 54))
    dx, dy = x[1] - x[0], y[1] - y[0]
    assert dens.shape == (62, 54)
    assert math.isclose(dens.sum() * dx * dy, 1.0, rel_tol=1e-12)
    # Cell masses of a coarse grid equal sums of the cells of a grid twice as fine.
    _, _, fine = system.density_grid(bins=(124, 108))
    coarse_from_fine = fine.reshape(62, 2, 54, 2).sum((1, 3)) * (dx * dy / 4)
    np.testing.assert_allclose(dens * dx * dy, coarse_from_fine, rtol=1e-6, atol=1e-14)
    xm, px, ym, py = system.marginals(bins=(62, 54))
    assert math.isclose(px.sum() * dx, 1.0, rel_tol=1e-12) and math.isclose(py.sum() * dy, 1.0, rel_tol=1e-12)
    # The deepest minimum is the mode of the density.
    i, j = np.unravel_index(dens.argmax(), dens.shape)
    assert abs(x[i] - system.minima[0, 0]) < 0.1 and abs(y[j] - system.minima[0, 1]) < 0.1


def test_muller_brown_mass_outside_default_box():
    assert MullerBrown(kT=1.0).mass_fraction() > 1.0 - 1e-15
    hot = MullerBrown(kT=40.0).mass_fraction()
    assert 0.9 < hot < 0.99  # the default box is too small this hot, and mass_fraction says so
    assert MullerBrown(kT=40.0).mass_fraction(extent=((-3.5, 2.5), (-1.8, 3.5))) > 0.9999


# --------------------------------------------------------------------------- Gaussian mixture
def test_mixture_is_the_boltzmann_density_at_kT_1():
    system = GaussianMixture([[-2.0], [1.0]], [0.5, 1.5], [0.4, 0.6])
    x = torch.linspace(-6, 6, 7, dtype=torch.float64)[:, None]
    from scipy.stats import norm
    ref = np.log(0.4 * norm.pdf(x[:, 0], -2, math.sqrt(0.5)) + 0.6 * norm.pdf(x[:, 0], 1, math.sqrt(1.5)))
    torch.testing.assert_close(system.log_density(x), torch.as_tensor(ref))
    torch.testing.assert_close(system.energy(x), -torch.as_tensor(ref))
    # numpy in, numpy out, any leading shape.
    out = system.log_density(np.zeros((3, 4, 1)))
    assert isinstance(out, np.ndarray) and out.shape == (3, 4)
    # kT * mixture gives the mixture at every kT (documented alternative convention).
    hot = GaussianMixture([[-2.0], [1.0]], [0.5, 1.5], [0.4, 0.6], kT=3.0)
    assert torch.allclose((3.0 * hot).energy(x) / 3.0, -torch.as_tensor(ref))


def test_mixture_covariance_forms_are_equivalent():
    means = [[0.0, 0.0], [3.0, 1.0]]
    a = GaussianMixture(means, 0.7)
    b = GaussianMixture(means, [0.7, 0.7])
    c = GaussianMixture(means, [[0.7, 0.7], [0.7, 0.7]])
    d = GaussianMixture(means, np.stack([0.7 * np.eye(2)] * 2))
    for other in (b, c, d):
        np.testing.assert_array_equal(other.covariances, a.covariances)


def test_mixture_exact_samples_match_mean_and_covariance():
    system = _mixture_2d()
    n = 40_000
    x = system.sample(n, WalkerRNG(11, n)).numpy()
    mean = x.mean(0)
    se_mean = x.std(0, ddof=1) / math.sqrt(n)
    z = (mean - system.mean) / se_mean
    assert np.abs(z).max() < 5
    centred = x - x.mean(0)
    prods = centred[:, :, None] * centred[:, None, :]
    se_cov = prods.reshape(n, -1).std(0, ddof=1).reshape(2, 2) / math.sqrt(n)
    z_cov = (prods.mean(0) - system.covariance) / se_cov
    assert np.abs(z_cov).max() < 5
    # The same data reject the unweighted mean of the means by a wide margin.
    wrong = system.means.mean(0)
    assert np.abs((mean - wrong) / se_mean).max() > 25
    # Mode populations of exact samples agree with the exact assignment probabilities.
    counts = np.bincount(system.mode_assignment(x), minlength=3) / n
    p, se_p = system.assignment_probabilities()
    z_p = (counts - p) / np.sqrt(p * (1 - p) / n + se_p**2)
    assert np.abs(z_p).max() < 5
    assert np.abs((counts - 1 / 3) / np.sqrt(p * (1 - p) / n)).max() > 25
    # WalkerRNG sampling needs one walker per sample.
    with pytest.raises(ValueError, match="walkers"):
        system.sample(10, WalkerRNG(0, 5))
    assert system.sample(5, np.random.default_rng(0)).shape == (5, 2)


def test_mixture_tempered_mode_weights_match_quadrature():
    # 1-D so that the tempered density can be integrated directly.
    system = GaussianMixture([[-3.0], [2.5]], [0.5, 1.2], [0.35, 0.65], kT=0.6)
    f = lambda t: math.exp(system.log_density(np.array([[t]]))[0] / system.kT)  # noqa: E731
    # The two assignment regions meet where the weighted components are equal.
    from scipy.stats import norm
    gap = lambda t: (math.log(0.35 * norm.pdf(t, -3.0, math.sqrt(0.5)))  # noqa: E731
                     - math.log(0.65 * norm.pdf(t, 2.5, math.sqrt(1.2))))
    from scipy.optimize import brentq
    split = brentq(gap, -3.0, 2.5, xtol=1e-14)
    assert system.mode_assignment(np.array([[split - 1e-6], [split + 1e-6]])).tolist() == [0, 1]
    left = integrate.quad(f, -30, split, epsrel=1e-11)[0]
    right = integrate.quad(f, split, 30, epsrel=1e-11)[0]
    exact = np.array([left, right]) / (left + right)
    np.testing.assert_allclose(system.mode_weights, exact, atol=2e-4)
    p, se = system.assignment_probabilities()
    assert np.abs((p - exact) / se).max() < 5
    # ...and the same estimate rejects the untempered weights by a wide margin.
    assert np.abs((p - system.weights) / se).max() > 15
    # At kT = 1 the mode weights are the mixture weights.
    np.testing.assert_allclose(_mixture_2d().mode_weights, [0.2, 0.5, 0.3])


def test_mixture_mode_assignment_picks_the_responsible_component():
    system = _mixture_2d()
    labels = system.mode_assignment(torch.as_tensor(system.means))
    assert labels.tolist() == [0, 1, 2] and labels.dtype == torch.int64


# --------------------------------------------------------------------------- uniform box
def test_box_marginals_are_exact():
    box = UniformBox([-1.0, 0.0], [1.0, 3.0], wall_stiffness=20.0, kT=1.5)
    grid, dens = box.density_grid(bins=20001, padding=12.0)
    assert grid.shape == dens.shape == (2, 20001)
    for i in range(2):
        f = lambda t: float(box.marginal_density(t, i))  # noqa: E731
        lo, hi = box.low[i], box.high[i]
        pts = [lo, hi]
        total = integrate.quad(f, lo - 30, hi + 30, points=pts, epsrel=1e-12, limit=200)[0]
        assert math.isclose(total, 1.0, rel_tol=1e-10)
        assert math.isclose(integrate.trapezoid(dens[i], grid[i]), 1.0, rel_tol=1e-6)
        mean = integrate.quad(lambda t: t * f(t), lo - 30, hi + 30, points=pts, epsrel=1e-12, limit=200)[0]
        var = integrate.quad(lambda t: (t - mean) ** 2 * f(t), lo - 30, hi + 30, points=pts, epsrel=1e-12,
                             limit=200)[0]
        assert math.isclose(mean, box.mean[i], rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(var, box.variance[i], rel_tol=1e-9)
        for t in (lo - 0.3, lo + 0.2, hi + 0.1):
            cdf = integrate.quad(f, lo - 30, t, epsrel=1e-12, limit=200)[0]
            assert math.isclose(float(box.marginal_cdf(t, i)), cdf, rel_tol=1e-9)
        assert math.isclose(box.bin_probabilities([lo, hi], i)[0], 1.0 - box.tail_mass[i], rel_tol=1e-12)
    # Stiff walls approach the hard-box variance L²/12, which soft walls must exceed.
    stiff = UniformBox(0.0, 2.0, wall_stiffness=1e8)
    assert math.isclose(stiff.variance[0], 4.0 / 12.0, rel_tol=1e-3)
    assert box.variance[0] > 4.0 / 12.0


def test_box_is_flat_inside():
    box = UniformBox(-1.0, 1.0, dim=3)
    x = WalkerRNG(0, 100).uniform((3,)) * 1.8 - 0.9
    e, f = box.energy_and_forces(x)
    assert (e == 0).all() and (f == 0).all()
    assert box.event_shape == (3,)
    init = box.initial_positions(100, WalkerRNG(1, 100))
    assert ((init >= -1) & (init <= 1)).all()


# ------------------------------------------------------------------ the exact-answer interface
@pytest.mark.parametrize("system,axis", [
    (Harmonic(dim=2, k=[1.0, 4.0], kT=1.5, mean=[0.5, -1.0]), 1),
    (UniformBox(low=[-1.0], high=[2.0], wall_stiffness=50.0, kT=1.0), 0),
    (DoubleWell(dim=2, barrier=3.0, tilt=0.5), 0),
    (GaussianMixture(means=[[-2.0, 0.0], [2.0, 1.0]], covariances=[0.5, 1.0], weights=[0.3, 0.7]), 0),
    (MullerBrown(kT=20.0), 1),
])
def test_exact_marginal_bins_agree_with_its_density(system, axis):
    # Bin probabilities are an integral of the density: integrate the returned density
    # independently (trapezoid on a fine grid) and compare bin by bin.
    m = system.exact_marginal(axis, np.linspace(-4.0, 4.0, 41))
    assert m.probabilities.shape == (m.edges.size - 1,) and m.grid.shape == m.density.shape
    assert np.all(m.probabilities >= 0)
    fine = np.linspace(m.edges[0], m.edges[-1], 40 * (m.edges.size - 1) + 1)
    dens = np.interp(fine, m.grid, m.density)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(fine))])
    by_bin = np.diff(np.interp(m.edges, fine, cum))
    # the interpolated density is exact to O((grid spacing)²) relative to its curvature
    assert np.allclose(m.probabilities, by_bin, atol=2e-3), np.abs(m.probabilities - by_bin).max()
    # almost all mass lies inside these edges, so the bins nearly sum to 1
    assert 0.98 < m.probabilities.sum() <= 1.0 + 1e-9


def test_exact_marginal_is_none_where_unknown_and_checks_its_arguments():
    from langevin_md.systems import FreeParticle, LennardJonesCluster

    assert FreeParticle(dim=1).exact_marginal(0, [0.0, 1.0]) is None
    assert LennardJonesCluster(n_atoms=3).exact_marginal(0, [0.0, 1.0]) is None
    assert GaussianMixture(means=[[0.0], [3.0]], kT=2.0).exact_marginal(0, [0.0, 1.0]) is None
    assert DoubleWell(dim=2).exact_marginal(1, [0.0, 1.0]) is None
    assert DoubleWell(dim=2).exact_energy_law() is None
    with pytest.raises(ValueError, match="axis"):
        Harmonic(dim=2).exact_marginal(2, [0.0, 1.0])
    with pytest.raises(ValueError, match="edges"):
        Harmonic(dim=1).exact_marginal(0, [1.0, 0.0])


def test_harmonic_energy_law_matches_exact_samples():
    # U of exact draws from the well follows the announced law: a KS test passes, and the
    # same samples reject the law of a well with one dimension more.
    from scipy import stats

    system = Harmonic(dim=3, k=[1.0, 2.0, 5.0], kT=2.0, mean=1.0)
    x = system.exact_samples(20000, WalkerRNG(0, 20000))  # exact draws from N(μ, kT/k)
    energy = system.energy(x).numpy()
    assert stats.kstest(energy, system.exact_energy_law().cdf).pvalue > 1e-3
    wrong = stats.gamma(a=2.0, scale=2.0)
    assert stats.kstest(energy, wrong.cdf).pvalue < 1e-20


def test_muller_brown_buffered_path_is_bitwise_the_differentiable_one():
    """The no-grad path reuses work buffers; it must give the autograd path's numbers exactly,
    on contiguous and strided inputs, in both precisions, and across walker counts."""
    system = MullerBrown(kT=10.0, energy_scale=0.7)
    for n in (1, 7, 4099):
        for dtype in (torch.float64, torch.float32):
            x = _points(system, n=n, seed=n).to(dtype)
            fast = system.energy_and_forces(x)
            slow = system.energy_and_forces(x.clone().requires_grad_(True))
            strided = system.energy_and_forces(torch.stack([x, x], -1)[..., 0])
            for a, b, c in zip(fast, slow, strided):
                assert torch.equal(a, b.detach()) and torch.equal(a, c)
    # The buffers are reused: results handed out earlier must not change afterwards.
    x1, x2 = _points(system, n=50, seed=1), _points(system, n=50, seed=2)
    e1, f1 = system.energy_and_forces(x1)
    kept = (e1.clone(), f1.clone())
    system.energy_and_forces(x2)
    assert torch.equal(e1, kept[0]) and torch.equal(f1, kept[1])
    # A walker's numbers do not depend on the batch it is in.
    both = torch.cat([x1, x2])
    e, f = system.energy_and_forces(both)
    assert torch.equal(e[:50], e1) and torch.equal(f[:50], f1)


def test_muller_brown_works_in_and_after_inference_mode():
    """Work buffers made under inference mode could not be written outside it."""
    system = MullerBrown(kT=10.0)
    x = _points(system, n=20)
    with torch.inference_mode():
        e_inf, f_inf = system.energy_and_forces(x)
    e, f = system.energy_and_forces(x)
    assert torch.equal(e, e_inf) and torch.equal(f, f_inf)
    with torch.inference_mode():
        assert torch.equal(system.energy_and_forces(x)[0], e)
