"""SGLD: the exact stationary variance with noisy gradients (EXACT_RESULTS.md row 7), the
step-size schedule, and minibatch posteriors."""

import math

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators.sgld import SGLD
from langevin_md.systems.base import System
from langevin_md.systems.torch_models import BayesianPosterior
from tests.statistical.stats import assert_exact_and_rejects_wrong


class NoisyHarmonic(System):
    """U = k x^2/2 whose stochastic gradient of log p carries N(0, s^2) noise per coordinate."""

    def __init__(self, k, kT, s):
        self.event_shape, self.kT, self.k, self.s = (1,), kT, k, s
        self.masses = np.ones(1)

    def _energy_and_forces(self, x):
        return 0.5 * self.k * (x * x).sum(-1), -self.k * x

    def stochastic_energy_and_forces(self, x, generator):
        e, f = self.energy_and_forces(x)
        noise = generator.normal(self.event_shape, dtype=x.dtype)
        return e, f + self.kT * self.s * noise  # F/kT = grad log p + s * noise


@pytest.mark.slow
def test_sgld_stationary_variance_with_gradient_noise():
    k, kT, s, eps = 2.0, 2.0, 2.0, 0.5  # sigma^2 = 1
    sigma2 = kT / k
    exact = sigma2 * (1 + eps * s * s / 2) / (1 - eps / (2 * sigma2))
    noiseless = sigma2 / (1 - eps / (2 * sigma2))  # the s = 0 answer (ULA's law)
    res = lmd.sample(NoisyHarmonic(k, kT, s), SGLD(step_size=eps), n_steps=400, n_walkers=4000,
                     record_every=20, burn_in=100, seed=0)
    assert_exact_and_rejects_wrong(res.positions[..., 0] ** 2, exact, noiseless)


def test_sgld_step_size_schedule():
    integ = SGLD(step_size=0.1, decay_time=10.0, decay_power=0.55)
    assert integ.step_size_at(0) == 0.1
    # a (b + t)^-gamma with a = eps0 b^gamma
    a = 0.1 * 10.0 ** 0.55
    for t in (1, 7, 100):
        assert integ.step_size_at(t) == pytest.approx(a * (10.0 + t) ** -0.55)
    assert SGLD(step_size=0.1).step_size_at(1000) == 0.1
    with pytest.raises(ValueError, match="decay_power"):
        SGLD(step_size=0.1, decay_power=-1)


def _gaussian_mean_posterior(batch_size=5):
    rng = np.random.default_rng(4)
    data = rng.normal(1.5, 1.0, size=(200, 2))

    def log_prior(theta):
        return -0.5 * (theta * theta).sum(-1) / 100.0

    def log_lik(theta, d):  # d (n, m, 2)
        return -0.5 * ((d - theta[:, None, :]) ** 2).sum(-1)

    return BayesianPosterior(log_prior, log_lik, data, (2,), batch_size), data


def test_minibatch_gradient_is_unbiased_rescaled_and_reproducible():
    post, data = _gaussian_mean_posterior()
    n = 20000
    theta = torch.full((n, 2), 0.3, dtype=torch.float64)
    e_full, f_full = post.energy_and_forces(theta[:1])
    rng = lmd.WalkerRNG(0, n)
    e_mb, f_mb = post.stochastic_energy_and_forces(theta, rng)
    # exact full force: -theta/100 + sum_i (x_i - theta)
    exact = -0.3 / 100 + (data - 0.3).sum(0)
    assert torch.allclose(f_full[0], torch.as_tensor(exact))
    se = f_mb.std(0) / math.sqrt(n)
    z = (f_mb.mean(0) - f_full[0]) / se
    assert torch.all(z.abs() <= 5), z
    # without the N/n rescaling the mean would be 40x too small
    assert torch.all(((f_mb.mean(0) / 40 - f_full[0]) / se).abs() > 20)
    e_again, f_again = post.stochastic_energy_and_forces(theta, lmd.WalkerRNG(0, n))
    assert torch.equal(f_again, f_mb)


def test_sgld_on_a_gaussian_mean_posterior_centres_on_the_exact_mean():
    post, data = _gaussian_mean_posterior(batch_size=20)
    n_data = data.shape[0]
    prec = n_data + 1 / 100.0
    mean = data.sum(0) / prec
    res = lmd.sample(post, SGLD(step_size=1e-3), n_steps=200, n_walkers=200, burn_in=200,
                     record_every=10, seed=1, initial_positions=np.zeros(2))
    est = res.positions.reshape(-1, 2).mean(0)
    # posterior sd is 1/sqrt(200) = 0.07; the walker average is far tighter
    assert np.allclose(est, mean, atol=0.02), (est, mean)
