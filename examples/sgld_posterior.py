"""SGLD on a Bayesian linear-regression posterior, checked against the exact Gaussian answer.

y_i = x_i . w + noise, noise N(0, 0.5^2) known, prior w ~ N(0, 10^2 I), N = 1000 data.
The posterior is Gaussian with covariance S = (X^T X / s_n^2 + I/100)^-1 and mean
S X^T y / s_n^2. SGLD (Welling & Teh 2011) uses minibatches of 32 drawn per walker from its
own random stream, a decreasing step eps_t = eps_0 (1 + t/b)^-0.55, and the gradient
rescaled by N/n. With a small step the minibatch noise inflates the variance only slightly
(by about 1 + eps s^2/2, s^2 the gradient-noise variance).

Run:  python examples/sgld_posterior.py [--quick]
"""

import argparse

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.integrators.sgld import SGLD
from langevin_md.systems.torch_models import BayesianPosterior

NOISE_SD, PRIOR_SD = 0.5, 10.0


def make_data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    w_true = np.array([1.0, -2.0, 0.5])
    y = x @ w_true + NOISE_SD * rng.normal(size=n)
    return np.concatenate([x, y[:, None]], axis=1)  # one datum = (x_1, x_2, x_3, y)


def log_prior(w):
    return -0.5 * (w * w).sum(-1) / PRIOR_SD ** 2


def log_likelihood(w, d):
    """w (n_walkers, 3), d (n_walkers, m, 4) -> (n_walkers, m)."""
    resid = d[..., 3] - (d[..., :3] * w[:, None, :]).sum(-1)
    return -0.5 * resid ** 2 / NOISE_SD ** 2


def exact_posterior(data):
    x, y = data[:, :3], data[:, 3]
    prec = x.T @ x / NOISE_SD ** 2 + np.eye(3) / PRIOR_SD ** 2
    cov = np.linalg.inv(prec)
    return cov @ x.T @ y / NOISE_SD ** 2, cov


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    args = parser.parse_args(argv)
    data = make_data()
    posterior = BayesianPosterior(log_prior, log_likelihood, data, event_shape=(3,), batch_size=32)
    n_walkers, burn_in, n_steps = (8, 50, 50) if args.quick else (64, 2000, 5000)
    integ = SGLD(step_size=1e-5, decay_time=100.0, decay_power=0.55)
    res = lmd.sample(posterior, integ, n_steps=n_steps, n_walkers=n_walkers, burn_in=burn_in,
                     record_every=10, seed=0, initial_positions=np.zeros(3))
    w = res.positions.reshape(-1, 3)
    mean, cov = exact_posterior(data)
    sd = np.sqrt(np.diag(cov))
    # standard error of the mean: spread of per-walker averages across walkers
    per_walker = res.positions.mean(0)
    se = per_walker.std(0, ddof=1) / np.sqrt(n_walkers)
    print(f"final step size {integ.step_size_at(burn_in + n_steps):.2e}")
    print("            exact mean   SGLD mean (± s.e.)      exact sd   SGLD sd")
    for k in range(3):
        print(f"  w[{k}]   {mean[k]:+10.4f}   {w[:, k].mean():+10.4f} (± {se[k]:.4f})   {sd[k]:9.4f}  {w[:, k].std():8.4f}")
    return np.abs(w.mean(0) - mean).max() / sd.max()


if __name__ == "__main__":
    main()
