"""Annealed Langevin and the predictor-corrector sampler follow their exact variance recursions
(``docs/exact_results.md``, annealed Langevin).

With the exact score of N(0, s0^2) noised by sigma, s(x, sigma) = -x/(s0^2 + sigma^2), every
annealed step is linear: x' = c_i x + sqrt(alpha_i) z, so the variance follows
v <- c_i^2 v + alpha_i exactly. We test against that recursion step by step, not against the
target: the schedule's end variance differs from s0^2.
"""

import math

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.integrators.annealed import AnnealedLangevin, PredictorCorrector
from langevin_md.laws import annealed_variance_step
from langevin_md.systems.torch_models import ScoreModel
from tests.learned.gaussian_score import S0, GaussianScore

pytestmark = pytest.mark.slow


def variance_path(integ, v0=1.0, drift_factor=1.0):
    """Exact variance after each step; drift_factor=2 is a deliberately wrong drift (α s instead
    of α s / 2), obtained by doubling α in c only."""
    out, v = [], v0
    for k in range(integ.n_steps):
        i = integ.level(k)
        a = integ.alpha(i)
        if drift_factor == 1.0:
            v = annealed_variance_step(v, a, S0 ** 2, integ.sigmas[i])
        else:
            c = 1 - drift_factor * a / (2 * (S0 ** 2 + integ.sigmas[i] ** 2))
            v = c * c * v + a
        out.append(v)
    return np.array(out)


def test_annealed_variance_follows_the_exact_recursion():
    integ = AnnealedLangevin(sigmas=np.geomspace(3.0, 1.0, 4), steps_per_sigma=3, step_size=0.5)
    system = ScoreModel(GaussianScore(), (1,), sigma_min=1.0)
    n = 20000
    # the default initial positions are N(0, 1) draws: v0 = 1
    res = lmd.sample(system, integ, n_steps=integ.n_steps, n_walkers=n, seed=3)
    x2 = (res.positions[:, :, 0] ** 2)  # (n_steps, n_walkers); mean 0 by symmetry
    exact = variance_path(integ)
    se = x2.std(axis=1, ddof=1) / math.sqrt(n)
    z = (x2.mean(axis=1) - exact) / se
    assert np.all(np.abs(z) <= 5), z
    end, end_se = x2[-1].mean(), se[-1]
    # the target variance and a drift missing its 1/2 are both rejected
    assert abs(end - S0 ** 2) / end_se > 20
    assert abs(end - variance_path(integ, drift_factor=2.0)[-1]) / end_se > 20


def pc_variance_path(integ, v0):
    out, v = [], v0
    for k in range(integ.n_steps):
        predictor, i = integ._move(k)
        if predictor:
            dv = integ.sigmas[i - 1] ** 2 - integ.sigmas[i] ** 2
            c, add = 1 - dv / (S0 ** 2 + integ.sigmas[i - 1] ** 2), dv
        else:
            eps = integ.corrector_step(i)
            c, add = 1 - eps / (S0 ** 2 + integ.sigmas[i] ** 2), 2 * eps
        v = c * c * v + add
        out.append(v)
    return np.array(out)


def test_predictor_corrector_variance_follows_the_exact_recursion():
    # Predictor and corrector are both linear with the exact Gaussian score, so the variance
    # recursion is exact here too. A coarse schedule keeps the end far from s0^2.
    sig = np.geomspace(10.0, 0.01, 12)
    integ = PredictorCorrector(sigmas=sig, n_corrector=2, snr=0.3)
    assert integ.n_steps == 11 * 3
    n = 20000
    x0 = 10.0 * lmd.WalkerRNG(1, n).normal((1,))
    res = lmd.sample(ScoreModel(GaussianScore(), (1,), sigma_min=0.01), integ, n_steps=integ.n_steps,
                     n_walkers=n, seed=2, initial_positions=x0)
    x2 = res.positions[:, :, 0] ** 2
    exact = pc_variance_path(integ, v0=100.0)
    se = x2.std(axis=1, ddof=1) / math.sqrt(n)
    z = (x2.mean(axis=1) - exact) / se
    assert np.all(np.abs(z) <= 5), z
    assert abs(x2[-1].mean() - S0 ** 2) / se[-1] > 20
