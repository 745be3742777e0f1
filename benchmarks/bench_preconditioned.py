"""ESS per gradient evaluation with and without a metric adapted from the walkers.

Two ill-conditioned targets, each sampled in the same run by MALA (step size tuned to
acceptance 0.574 by dual averaging during burn-in) with no preconditioner and with
``preconditioner="dense"`` (M estimated from the pooled walkers during burn-in, then frozen):

1. a 100-dimensional Gaussian N(0, Σ) whose eigenvalues are log-spaced over four decades
   (condition number 10⁴) in a random orthonormal basis, so a diagonal metric cannot help;
2. a strongly anisotropic non-Gaussian torch energy (a :class:`TorchEnergy`):
   U(x) = ½|z|² + Σ_k v_k tanh(a_kᵀz + b_k), z = S⁻¹Qᵀx, with 10 tanh units of fixed random
   weights (a small MLP prior), Q a random rotation and scales S spanning 10³ in variance.

Both samplers start from the same exact (Gaussian) or approximate (Gaussian part) draws,
use the same walkers, burn-in and production length. The observables are the projections y_k
of the positions on the eigenvectors of Σ (of the Gaussian part's covariance for the torch
energy); the figure of merit is the smallest ESS over them divided by the production gradient
evaluations (one per MALA step per walker, L per HMC step). Wall time (burn-in included, one
thread) is printed too: a dense metric adds O(d²) work per walker-step, which matters when
the gradient itself is as cheap as here.

ESS is measured two ways. **Spread** (the headline): the walkers are independent chains that
start in (or near) equilibrium, so the ESS of each walker's time average ȳ_k is
Var(y_k)/Var_walkers(ȳ_k); summed over walkers it is n_walkers·Var(y_k)/Var_walkers(ȳ_k), with
Var(y_k) pooled over frames and walkers. It needs no autocorrelation model and stays honest
when τ exceeds the run (then it tends to about one sample per walker). **Sokal**: the package's
:func:`effective_sample_size` (pooled autocovariance, automatic window); when τ is longer than
the run, as for the unpreconditioned chains here, it cannot see the slow decay and
overestimates ESS, so its ratio is a loose lower bound. HMC (``--hmc``) adds the same
comparison for HMC with 8 leapfrog steps.

Usage: ``python benchmarks/bench_preconditioned.py [--quick] [--walkers 128] [--steps 2000]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.analysis.autocorrelation import effective_sample_size
from langevin_md.integrators import HMC, MALA
from langevin_md.systems.mixture import GaussianMixture
from langevin_md.systems.torch_models import TorchEnergy


def rotation(d: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def gaussian_target(d: int = 100, condition: float = 1e4, seed: int = 0):
    """N(0, Σ) with eigenvalues log-spaced in [1/condition, 1], in a random basis."""
    rng = np.random.default_rng(seed)
    q = rotation(d, rng)
    lam = np.logspace(-np.log10(condition), 0.0, d)
    sigma = (q * lam) @ q.T
    sigma = 0.5 * (sigma + sigma.T)
    return GaussianMixture([np.zeros(d)], covariances=[sigma]), sigma, q


class AnisotropicMLPEnergy(torch.nn.Module):
    """U(x) = ½|z|² + Σ_k v_k tanh(a_kᵀ z + b_k), z = S⁻¹ Qᵀ x: a bounded MLP term on an
    anisotropic Gaussian, so the density is proper and non-Gaussian."""

    def __init__(self, q: np.ndarray, scales: np.ndarray, hidden: int = 10, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = len(scales)
        self.register_buffer("whiten", torch.as_tensor(q / scales[None, :]))  # x ↦ z = xᵀ Q S⁻¹
        self.register_buffer("a", torch.randn(d, hidden, generator=g, dtype=torch.float64) / np.sqrt(d) * 2.0)
        self.register_buffer("b", torch.randn(hidden, generator=g, dtype=torch.float64))
        self.register_buffer("v", torch.randn(hidden, generator=g, dtype=torch.float64) * 0.8)

    def forward(self, x):
        z = x @ self.whiten
        return 0.5 * (z * z).sum(-1) + torch.tanh(z @ self.a + self.b) @ self.v


def torch_target(d: int = 30, condition: float = 1e3, seed: int = 2):
    rng = np.random.default_rng(seed)
    q = rotation(d, rng)
    scales = np.sqrt(np.logspace(-np.log10(condition), 0.0, d))
    system = TorchEnergy(AnisotropicMLPEnergy(q, scales), event_shape=(d,), kT=1.0)
    return system, (q * scales ** 2) @ q.T, q


def min_ess(positions: np.ndarray, basis: np.ndarray) -> tuple[float, float]:
    """Smallest ESS over the projections on ``basis``'s columns: (spread, Sokal)."""
    proj = positions @ basis  # (n_frames, n_walkers, d)
    n_walkers = proj.shape[1]
    var = proj.reshape(-1, proj.shape[-1]).var(0, ddof=1)
    spread = n_walkers * var / proj.mean(0).var(0, ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpreconditioned chains are (knowingly) short
        sokal = np.array([effective_sample_size(proj[:, :, k]) for k in range(proj.shape[-1])])
    return float(spread.min()), float(sokal.min())


def run_pair(name, system, cov, basis, make, grads_per_step, walkers, burn_in, steps, seed=0):
    start = np.random.default_rng(seed).multivariate_normal(np.zeros(len(cov)), cov, size=walkers)
    out = {}
    for label, pre in (("none", None), ("dense", "dense")):
        integ = make(pre)
        t = time.perf_counter()
        res = lmd.sample(system, integ, n_steps=steps, n_walkers=walkers, burn_in=burn_in, seed=seed,
                         initial_positions=start, progress=False, compile=False)
        wall = time.perf_counter() - t
        spread, sokal = min_ess(res.positions, basis)
        grads = walkers * steps * grads_per_step
        acc = float(np.mean(res.acceptance_rate))
        eps = float(np.median(res.step_sizes)) if res.step_sizes is not None else float("nan")
        out[label] = (spread / grads, sokal / grads)
        print(f"{name:9s} {type(integ).__name__:4s} preconditioner={label:5s} acceptance {acc:.3f} "
              f"step {eps:.3g}  min ESS/grad: spread {spread / grads:.2e}, Sokal {sokal / grads:.2e}  "
              f"min ESS/s (spread) {spread / wall:.3g}  ({wall:.1f} s incl. burn-in)")
    ratio = (out["dense"][0] / out["none"][0], out["dense"][1] / out["none"][1])
    print(f"{name:9s} {type(integ).__name__} min-ESS-per-gradient ratio, dense metric / none: "
          f"spread {ratio[0]:.0f}x, Sokal {ratio[1]:.1f}x (a loose lower bound)")
    return ratio


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--walkers", type=int, default=128)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--burn-in", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    p.add_argument("--hmc", action="store_true", help="also compare HMC (8 leapfrog steps)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.burn_in = 500, 400
    torch.set_num_threads(1)
    ratios = {}
    system, cov, q = gaussian_target()
    mala = lambda pre: MALA(1e-5, target_accept=0.574, preconditioner=pre)  # noqa: E731
    ratios["gaussian MALA"] = run_pair("gaussian", system, cov, q, mala, 1, args.walkers, args.burn_in, args.steps)
    if args.hmc:
        hmc = lambda pre: HMC(1e-3, 8, target_accept=0.8, preconditioner=pre)  # noqa: E731
        ratios["gaussian HMC"] = run_pair("gaussian", system, cov, q, hmc, 8, args.walkers, args.burn_in,
                                          args.steps // 4)
    system, cov, q = torch_target()
    ratios["mlp prior MALA"] = run_pair("mlp prior", system, cov, q, mala, 1, args.walkers, args.burn_in,
                                        args.steps)
    print("summary (spread / Sokal):", ", ".join(f"{k}: {v[0]:.0f}x / {v[1]:.1f}x" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
