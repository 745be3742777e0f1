"""Walker-steps per second on Müller–Brown: the torch executor against plain numpy.

Every row runs, in the same process and back to back, the same scheme (ULA, one force
evaluation and one Gaussian draw per step) three ways:

* ``numpy``   : a hand-written vectorised numpy step (numpy's own Gaussian generator);
* ``torch``   : ``langevin_md.Sampler`` eagerly (counter-based per-walker streams);
* ``compiled``: the same sampler with ``compile=True`` (steps fused by torch.compile; the
  one-off compile time is reported separately and excluded from the rate).

Usage: ``python benchmarks/bench_throughput.py [--quick] [--walkers 1,100,10000,1000000]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import langevin_md as lmd

A = np.array([-200.0, -100.0, -170.0, 15.0])
a = np.array([-1.0, -1.0, -6.5, 0.7])
b = np.array([0.0, 0.0, 11.0, 0.6])
c = np.array([-10.0, -10.0, -6.5, 0.7])
X0 = np.array([1.0, 0.0, -0.5, -1.0])
Y0 = np.array([0.0, 0.5, 1.5, 1.0])


def numpy_mb_forces(x):
    dx = x[:, :1] - X0
    dy = x[:, 1:2] - Y0
    t = A * np.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    fx = -(t * (2 * a * dx + b * dy)).sum(1)
    fy = -(t * (b * dx + 2 * c * dy)).sum(1)
    return t.sum(1), np.stack([fx, fy], 1)


def numpy_ula(x, n_steps, eps, kT, rng):
    scale = np.sqrt(2 * eps)
    for _ in range(n_steps):
        _, f = numpy_mb_forces(x)
        x = x + (eps / kT) * f + scale * rng.standard_normal(x.shape)
    return x


def rate(fn, n_walkers, n_steps):
    t = time.perf_counter()
    fn(n_steps)
    dt = time.perf_counter() - t
    return n_walkers * n_steps / dt, dt / n_steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--walkers", default="1,100,10000,1000000")
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    args = p.parse_args(argv)
    system = lmd.systems.MullerBrown(kT=25.0)
    eps = 1e-4
    integ = lmd.integrators.ULA(step_size=eps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Müller–Brown ULA, float64")
    header = f"{'walkers':>9} {'numpy w-steps/s':>16} {'torch':>14} {'compiled':>14} {'torch/np':>9} {'comp/np':>8} {'us/step eager':>14} {'us/step comp':>13}"
    print(header)
    for n in [int(w) for w in args.walkers.split(",")]:
        steps = max(4, int((2e6 if not args.quick else 2e4) / max(n, 1000)))
        steps = min(steps, 2000 if not args.quick else 50)
        rng = np.random.default_rng(0)
        x_np = np.tile(np.array([[-0.55, 1.44]]), (n, 1))
        numpy_ula(x_np, 2, eps, system.kT, rng)  # warm-up
        r_np, _ = rate(lambda k: numpy_ula(x_np, k, eps, system.kT, rng), n, steps)

        eager = lmd.Sampler(system, integ, n_walkers=n, seed=0)
        eager.run(2, record_every=2, progress=False)
        r_t, us_t = rate(lambda k: eager.run(k, record_every=k, progress=False), n, steps)

        comp = lmd.Sampler(system, integ, n_walkers=n, seed=0, compile=True)
        t0 = time.perf_counter()
        comp.run(2 * comp.COMPILE_CHUNK, record_every=comp.COMPILE_CHUNK, progress=False)
        compile_s = time.perf_counter() - t0
        k = max(comp.COMPILE_CHUNK, (steps // comp.COMPILE_CHUNK) * comp.COMPILE_CHUNK)
        r_c, us_c = rate(lambda kk: comp.run(kk, record_every=kk, progress=False), n, k)
        print(f"{n:>9} {r_np:>16,.0f} {r_t:>14,.0f} {r_c:>14,.0f} {r_t / r_np:>9.2f} {r_c / r_np:>8.2f} "
              f"{us_t * 1e6:>14.1f} {us_c * 1e6:>13.1f}   (compile {compile_s:.1f} s)")


if __name__ == "__main__":
    main()
