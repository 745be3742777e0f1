"""Walker-steps per second on Müller–Brown (float64): numpy, JAX and the torch executor.

Every row runs, in one process and back to back, one scheme on N walkers four ways:

* ``numpy``   : a hand-written vectorised numpy step (numpy's own Gaussian generator);
* ``jax``     : the same step in ``jax.lax.scan`` under ``jax.jit`` (x64), compile excluded;
  skipped with a message when JAX is not installed (it is never a dependency:
  ``pip install jax jaxlib`` to include it);
* ``eager``   : ``langevin_md.Sampler(compile=False)``, the per-walker counter-based streams,
  threads chosen by the sampler (``threads=None``);
* ``compiled``: ``Sampler(compile=True)`` with the compile cache warm (the first call per
  shape is excluded from the rate and reported as ``comp s``).

The ``auto`` column is what the default ``compile="auto"`` chooses for a production run of
:data:`AUTO_STEPS` steps on N walkers, and the end-to-end rate of that run, computed from the
measured rates and the warm compile time. Cold and warm compile times (fresh processes, a
fresh and then a reused cache directory) close the table. Ratios are against JAX and numpy
from the same run; the machine's load is printed, because on a shared machine the absolute
numbers move from run to run while the ratios move less.

Usage: ``python benchmarks/bench_throughput.py [--quick] [--walkers 1000,10000,100000,1000000]
[--schemes ula,mala,baoab] [--seconds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.executors.torch_executor import AUTO_COMPILE_WORK

A = np.array([-200.0, -100.0, -170.0, 15.0])
a = np.array([-1.0, -1.0, -6.5, 0.7])
b = np.array([0.0, 0.0, 11.0, 0.6])
c = np.array([-10.0, -10.0, -6.5, 0.7])
X0 = np.array([1.0, 0.0, -0.5, -1.0])
Y0 = np.array([0.0, 0.5, 1.5, 1.0])
KT = 25.0
EPS = 1e-4          # ULA and MALA step size
H, GAMMA = 2e-3, 10.0   # BAOAB timestep and friction (unit masses)
AUTO_STEPS = 50_000
START = np.array([-0.55, 1.44])


def integrator(name):
    return {"ula": lambda: lmd.integrators.ULA(EPS), "mala": lambda: lmd.integrators.MALA(EPS),
            "baoab": lambda: lmd.integrators.BAOAB(H, GAMMA)}[name]()


# --------------------------------------------------------------------------- numpy
def np_ef(x):
    dx = x[:, :1] - X0
    dy = x[:, 1:2] - Y0
    t = A * np.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    fx = -(t * (2 * a * dx + b * dy)).sum(1)
    fy = -(t * (b * dx + 2 * c * dy)).sum(1)
    return t.sum(1), np.stack([fx, fy], 1)


def np_run(scheme, n, steps, rng):
    x = np.tile(START, (n, 1))
    e, f = np_ef(x)
    v = rng.standard_normal(x.shape) * np.sqrt(KT)
    s = np.sqrt(2 * EPS)
    c1 = np.exp(-GAMMA * H)
    c2 = np.sqrt((1 - c1 * c1) * KT)
    for _ in range(steps):
        if scheme == "ula":
            x = x + (EPS / KT) * f + s * rng.standard_normal(x.shape)
            e, f = np_ef(x)
        elif scheme == "mala":
            y = x + (EPS / KT) * f + s * rng.standard_normal(x.shape)
            ey, fy = np_ef(y)
            fwd = ((y - x - (EPS / KT) * f) ** 2).sum(1)
            bwd = ((x - y - (EPS / KT) * fy) ** 2).sum(1)
            log_r = -(ey - e) / KT - (bwd - fwd) / (4 * EPS)
            acc = np.log(rng.random(n)) < log_r
            x = np.where(acc[:, None], y, x)
            e = np.where(acc, ey, e)
            f = np.where(acc[:, None], fy, f)
        else:
            v = v + 0.5 * H * f
            x = x + 0.5 * H * v
            v = c1 * v + c2 * rng.standard_normal(x.shape)
            x = x + 0.5 * H * v
            e, f = np_ef(x)
            v = v + 0.5 * H * f
    return x


# --------------------------------------------------------------------------- jax
def jax_runner(scheme, n, steps):
    """A jitted ``steps``-step scan, or None when JAX is missing."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    Aj, aj, bj, cj, X0j, Y0j = map(jnp.asarray, (A, a, b, c, X0, Y0))

    def ef(x):
        dx = x[:, :1] - X0j
        dy = x[:, 1:2] - Y0j
        t = Aj * jnp.exp(aj * dx * dx + bj * dx * dy + cj * dy * dy)
        fx = -(t * (2 * aj * dx + bj * dy)).sum(1)
        fy = -(t * (bj * dx + 2 * cj * dy)).sum(1)
        return t.sum(1), jnp.stack([fx, fy], 1)

    s = np.sqrt(2 * EPS)
    c1 = float(np.exp(-GAMMA * H))
    c2 = float(np.sqrt((1 - c1 * c1) * KT))

    def step(carry, key):
        x, v, e, f = carry
        k1, k2 = jax.random.split(key)
        xi = jax.random.normal(k1, x.shape, dtype=jnp.float64)
        if scheme == "ula":
            x = x + (EPS / KT) * f + s * xi
            e, f = ef(x)
        elif scheme == "mala":
            y = x + (EPS / KT) * f + s * xi
            ey, fy = ef(y)
            fwd = ((y - x - (EPS / KT) * f) ** 2).sum(1)
            bwd = ((x - y - (EPS / KT) * fy) ** 2).sum(1)
            log_r = -(ey - e) / KT - (bwd - fwd) / (4 * EPS)
            acc = jnp.log(jax.random.uniform(k2, (x.shape[0],), dtype=jnp.float64)) < log_r
            x = jnp.where(acc[:, None], y, x)
            e = jnp.where(acc, ey, e)
            f = jnp.where(acc[:, None], fy, f)
        else:
            v = v + 0.5 * H * f
            x = x + 0.5 * H * v
            v = c1 * v + c2 * xi
            x = x + 0.5 * H * v
            e, f = ef(x)
            v = v + 0.5 * H * f
        return (x, v, e, f), None

    @jax.jit
    def run(x, key):
        e, f = ef(x)
        keys = jax.random.split(key, steps)
        (x, v, e, f), _ = jax.lax.scan(step, (x, jnp.zeros_like(x), e, f), keys)
        return x

    x0 = jnp.tile(jnp.asarray(START), (n, 1))
    key = jax.random.PRNGKey(0)
    run(x0, key).block_until_ready()  # compile
    return lambda: run(x0, key).block_until_ready()


# --------------------------------------------------------------------------- ours
def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ours_rate(scheme, n, steps, compile):
    sampler = lmd.Sampler(lmd.systems.MullerBrown(kT=KT), integrator(scheme), n_walkers=n, seed=0,
                          initial_positions=START, compile=compile)
    first = sampler.run(steps, record_every=steps, progress=False)  # warm-up (compiles)
    dt = timed(lambda: sampler.run(steps, record_every=steps, progress=False))
    return n * steps / dt, first.compile_time, sampler.threads_used


def compile_probe(scheme: str, cache_home: str) -> float:
    """Compile time of a fresh process with ``cache_home`` as XDG cache (seconds)."""
    code = ("import json, langevin_md as lmd, benchmarks.bench_throughput as bt;"
            f"s = lmd.Sampler(lmd.systems.MullerBrown(kT=bt.KT), bt.integrator({scheme!r}), n_walkers=10000,"
            " seed=0, initial_positions=bt.START, compile=True);"
            "r = s.run(16, record_every=8, progress=False); print(json.dumps(r.compile_time))")
    env = dict(os.environ, XDG_CACHE_HOME=cache_home)
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--walkers", default="1000,10000,100000,1000000")
    p.add_argument("--schemes", default="ula,mala,baoab")
    p.add_argument("--seconds", type=float, default=2.0, help="target seconds per measurement")
    p.add_argument("--quick", action="store_true", help="few walkers and steps (a smoke test)")
    p.add_argument("--no-compile-probe", action="store_true", help="skip the cold/warm compile processes")
    args = p.parse_args(argv)
    walkers = [int(w) for w in ("1000,10000" if args.quick else args.walkers).split(",")]
    seconds = 0.2 if args.quick else args.seconds
    try:
        import jax
        jax_note = f"jax {jax.__version__}"
    except ImportError:
        jax_note = "JAX not installed: its column is skipped (pip install jax jaxlib to include it)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, numpy {np.__version__}, {jax_note}; {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()} outside runs; load average {load:.1f} at start "
          "(a shared machine: not quiet)")
    print("Müller–Brown, float64, walker-steps/s (M = 10⁶). eager threads: the sampler's choice. "
          f"auto: a {AUTO_STEPS}-step run, compiled when walkers x steps x 2 >= {AUTO_COMPILE_WORK:.0e}, rate includes this process's compile time")
    head = (f"{'scheme':>6} {'N':>8} {'numpy':>8} {'jax':>8} {'eager':>8} {'thr':>3} {'compiled':>9} "
            f"{'comp s':>7} {'auto':>14} {'eager/jax':>9} {'eager/np':>8} {'comp/jax':>8} {'auto/jax':>8}")
    print(head)
    rows = []
    for scheme in args.schemes.split(","):
        for n in walkers:
            # Aim at `seconds` per measurement from a guess of 3M walker-steps/s; chunk multiple.
            steps = int(min(2000, max(8, seconds * 3e6 / n)) // 8 * 8)
            rng = np.random.default_rng(0)
            np_run(scheme, n, 2, rng)
            r_np = n * steps / timed(lambda: np_run(scheme, n, steps, rng))
            jr = jax_runner(scheme, n, steps)
            r_jax = n * steps / timed(jr) if jr is not None else float("nan")
            r_eager, _, thr = ours_rate(scheme, n, steps, False)
            r_comp, comp_s, _ = ours_rate(scheme, n, steps, True)
            compiles = n * AUTO_STEPS * 2 >= AUTO_COMPILE_WORK
            if compiles:
                r_auto = n * AUTO_STEPS / (comp_s + n * AUTO_STEPS / r_comp)
            else:
                r_auto = r_eager
            row = dict(scheme=scheme, n=n, numpy=r_np, jax=r_jax, eager=r_eager, compiled=r_comp,
                       compile_s=comp_s, auto=r_auto, auto_compiles=compiles, threads=thr, steps=steps)
            rows.append(row)
            auto_txt = f"{r_auto / 1e6:.2f}M {'comp' if compiles else 'eager'}"
            print(f"{scheme:>6} {n:>8} {r_np / 1e6:>7.2f}M {r_jax / 1e6:>7.2f}M {r_eager / 1e6:>7.2f}M {thr:>3} "
                  f"{r_comp / 1e6:>8.2f}M {comp_s:>7.1f} {auto_txt:>14} {r_eager / r_jax:>9.2f} "
                  f"{r_eager / r_np:>8.2f} {r_comp / r_jax:>8.2f} {r_auto / r_jax:>8.2f}", flush=True)
    if not args.no_compile_probe and not args.quick:
        print("compile time, N = 10⁴, fresh process (dynamo trace + inductor + load), seconds:")
        for scheme in args.schemes.split(","):
            with tempfile.TemporaryDirectory() as home:
                cold = compile_probe(scheme, home)
                warm = compile_probe(scheme, home)
            print(f"  {scheme:>6}: cold {cold:.1f} s, warm (disk cache) {warm:.1f} s", flush=True)
            rows.append(dict(scheme=scheme, compile_cold=cold, compile_warm=warm))
    print("json:", json.dumps(rows))


if __name__ == "__main__":
    main()
