"""SGLD's exact laws: the stationary variance with noisy gradients
(``docs/exact_results.md``, SGLD), an unbiased minibatch gradient, and the exact posterior mean
of a Gaussian-mean posterior."""

import math

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators.sgld import SGLD
from langevin_md.laws import sgld_stationary_variance, ula_stationary_variance
from langevin_md.systems.base import System
from langevin_md.systems.torch_models import BayesianPosterior

from .stats import assert_exact_and_rejects_wrong

pytestmark = pytest.mark.slow


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


def test_sgld_stationary_variance_with_gradient_noise():
    k, kT, s, eps = 2.0, 2.0, 2.0, 0.5  # sigma^2 = 1
    sigma2 = kT / k
    exact = sgld_stationary_variance(eps, sigma2, s)
    noiseless = ula_stationary_variance(eps, sigma2)  # the s = 0 answer
    res = lmd.sample(NoisyHarmonic(k, kT, s), SGLD(step_size=eps), n_steps=400, n_walkers=4000,
                     record_every=20, burn_in=100, seed=0)
    assert_exact_and_rejects_wrong(res.positions[..., 0] ** 2, exact, noiseless)


PRIOR_VARIANCE = 0.02  # a prior strong enough that ignoring it is a visible mistake


def gaussian_mean_posterior(batch_size):
    """θ ~ N(0, PRIOR_VARIANCE I), x_i | θ ~ N(θ, I), 200 data points in 2-d."""
    rng = np.random.default_rng(4)
    data = rng.normal(1.5, 1.0, size=(200, 2))

    def log_prior(theta):
        return -0.5 * (theta * theta).sum(-1) / PRIOR_VARIANCE

    def log_lik(theta, d):  # d (n, m, 2)
        return -0.5 * ((d - theta[:, None, :]) ** 2).sum(-1)

    return BayesianPosterior(log_prior, log_lik, data, (2,), batch_size), data


def test_minibatch_gradient_is_unbiased_rescaled_and_reproducible():
    post, data = gaussian_mean_posterior(batch_size=5)
    n = 20000
    theta = torch.full((n, 2), 0.3, dtype=torch.float64)
    e_full, f_full = post.energy_and_forces(theta[:1])
    rng = lmd.WalkerRNG(0, n)
    e_mb, f_mb = post.stochastic_energy_and_forces(theta, rng)
    # exact full force: -theta/PRIOR_VARIANCE + sum_i (x_i - theta)
    exact = -0.3 / PRIOR_VARIANCE + (data - 0.3).sum(0)
    assert torch.allclose(f_full[0], torch.as_tensor(exact))
    se = f_mb.std(0) / math.sqrt(n)
    z = (f_mb.mean(0) - f_full[0]) / se
    assert torch.all(z.abs() <= 5), z
    # without the N/n rescaling the likelihood part would be 40x too small
    unscaled = -0.3 / PRIOR_VARIANCE + (data - 0.3).sum(0) / 40
    assert torch.all(((f_mb.mean(0) - torch.as_tensor(unscaled)) / se).abs() > 20)
    e_again, f_again = post.stochastic_energy_and_forces(theta, lmd.WalkerRNG(0, n))
    assert torch.equal(f_again, f_mb)


def test_sgld_on_a_gaussian_mean_posterior_centres_on_the_exact_mean():
    # SGLD's update is linear in θ with zero-mean gradient noise, so its stationary mean is
    # exactly the posterior mean P⁻¹ Σ x_i (P = N + 1/prior variance), whatever the noise
    # does to the variance. Burn-in: the mean contracts by 1 − εP = 0.75 per step, 200 steps.
    post, data = gaussian_mean_posterior(batch_size=20)
    precision = data.shape[0] + 1 / PRIOR_VARIANCE  # 250
    mean = data.sum(0) / precision
    res = lmd.sample(post, SGLD(step_size=1e-3), n_steps=200, n_walkers=400, burn_in=200,
                     record_every=10, seed=1, initial_positions=np.zeros(2))
    # Known-wrong answers: the prior ignored (the data mean), and the minibatch likelihood
    # not rescaled by N/n (weight 20 instead of 200).
    unscaled = (data.sum(0) / 10) / (20 + 1 / PRIOR_VARIANCE)
    for i in range(2):
        assert_exact_and_rejects_wrong(res.positions[..., i], mean[i], wrong=data.mean(0)[i])
        assert_exact_and_rejects_wrong(res.positions[..., i], mean[i], wrong=unscaled[i])
