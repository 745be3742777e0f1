"""Batched torch force field vs OpenMM on alanine dipeptide: walker-steps/s, side by side.

Systems: ``vacuum`` (Amber ff14SB), ``obc2`` (ff14SB + ``implicit/obc2.xml``, a
``CustomGBForce``) and ``gbsa`` (ff99SB-ILDN + ``amber99_obc.xml``, the native
``GBSAOBCForce``). For each, in one run:

* ``openmm``: OpenMM's ``LangevinMiddleIntegrator`` on one Context, on the platform
  :func:`langevin_md.systems.platforms.choose_platform` picks (the fastest measured here:
  Reference for vacuum, CPU for the GB systems) — baseline (a);
* ``bridge``: the torch executor's BAOAB on :class:`OpenMMSystem` (one Context, a Python loop
  over walkers) at the same N — baseline (b);
* ``torch``: BAOAB on the batched :class:`TorchForceField`, eager (``lmd.Sampler``) and
  compiled (see :func:`torch_row`), float32 and float64, N = 1, 64, 1024, 8192;
* ``eval``: ``energy_and_forces`` alone (eager and ``torch.compile``d) per walker, against a
  bare OpenMM ``setPositions`` + ``getState`` loop.

Each torch row runs in a fresh subprocess so its peak memory (``ru_maxrss`` above the
process's baseline after building the system) can be divided by N: memory per walker.
Ratios are taken against (a) and (b) from the same run; the machine is shared, so only
ratios are meaningful.

Run ``python benchmarks/bench_forcefield.py`` (``--quick`` for N = 1, 64, 1024 and short
windows; ``--systems vacuum`` to choose; ``--threads 2``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

TEMPERATURE = 300.0
TIMESTEP = 0.001  # ps; no constraints
FRICTION = 1.0  # 1/ps

FILES = {
    "vacuum": ("amber14-all.xml",),
    "obc2": ("amber14-all.xml", "implicit/obc2.xml"),
    "gbsa": ("amber99sbildn.xml", "amber99_obc.xml"),
}


def _bridge(name: str, platform: str = "auto"):
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB
    from langevin_md.systems.openmm_system import OpenMMSystem

    return OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=FILES[name], temperature=TEMPERATURE,
                                 platform=platform)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rate(run_steps, n_walkers: int, seconds: float) -> float:
    """Walker-steps per second of ``run_steps(k)`` over a window of about ``seconds``."""
    k = 1
    while True:
        t0 = time.perf_counter()
        run_steps(k)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return k * n_walkers / dt
        k = max(k + 1, int(k * min(10.0, 1.5 * seconds / max(dt, 1e-4))))


# --------------------------------------------------------------------------- one row, in a child
def torch_row(name: str, engine: str, n_walkers: int, dtype: str, compiled: bool, seconds: float,
              sampler_compile: bool = False) -> dict:
    """One configuration: walker-steps/s of BAOAB, and walker-evaluations/s of forces alone.

    Eager steps use ``lmd.Sampler``. Compiled steps use ``lmd.Sampler(compile=True)`` when
    ``sampler_compile``; otherwise :func:`compiled_baoab`, the same BAOAB splitting written out
    here with ``torch.randn`` noise and compiled one step per call (the package's compiled
    executor failed to compile at the time of writing, for any system: an inductor overflow
    in its counter-based random stream).
    """
    import torch

    import langevin_md as lmd

    bridge = _bridge(name)
    system = bridge.to_torch() if engine == "torch" else bridge
    base = _rss_mb()
    out = {"threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if compiled and not sampler_compile:
        run_steps = compiled_baoab(system, n_walkers, getattr(torch, dtype))
    else:
        sampler = lmd.Sampler(system, lmd.integrators.BAOAB(timestep=TIMESTEP, friction=FRICTION),
                              n_walkers=n_walkers, seed=0, dtype=dtype, compile=compiled)

        def run_steps(k):
            sampler.run(k, record_every=k, progress=False)

    run_steps(2)  # warm up (compiles)
    out["warmup_s"] = time.perf_counter() - t0
    out["rate"] = _rate(run_steps, n_walkers, seconds)
    out["mem_per_walker_kb"] = (_rss_mb() - base) * 1024.0 / n_walkers
    if engine == "torch":
        dt = getattr(torch, dtype)
        x = system.initial_positions(n_walkers).to(dt)
        x = x + 0.005 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=dt)
        system.energy_and_forces(x)  # makes the dtype's copy of the terms before any trace
        fn = torch.compile(system.energy_and_forces, dynamic=False) if compiled else system.energy_and_forces
        fn(x)

        def run_evals(k):
            for _ in range(k):
                fn(x)

        out["eval_rate"] = _rate(run_evals, n_walkers, seconds)
    return out


def compiled_baoab(system, n_walkers: int, dtype):
    """``run_steps(k)``: BAOAB (Leimkuhler & Matthews 2013) on ``system``, one compiled call per step.

    B: v += (h/2) F/m; A: x += (h/2) v; O: v = c v + √((1 − c²) kT/m) ξ, c = exp(−γh).
    """
    import math

    import torch

    x = system.initial_positions(n_walkers).to(dtype)
    m = torch.as_tensor(system.masses, dtype=dtype).reshape(1, -1, 1)
    h, c = TIMESTEP, math.exp(-FRICTION * TIMESTEP)
    sigma = torch.sqrt((1 - c * c) * system.kT / m)
    v = sigma * 0.0 + torch.zeros_like(x)
    f = system.energy_and_forces(x)[1]

    def steps(x, v, f, noise):
        v = v + 0.5 * h * f / m
        x = x + 0.5 * h * v
        v = c * v + sigma * noise
        x = x + 0.5 * h * v
        f = system.energy_and_forces(x)[1]
        v = v + 0.5 * h * f / m
        return x, v, f

    # the noise is drawn outside the compiled step: drawn inside (inductor's CPU random
    # kernels), the compiled step ran at 0.4x the force evaluation alone instead of 0.9x
    compiled = torch.compile(steps, dynamic=False)
    state = [x, v, f]

    def run_steps(k):
        for _ in range(k):
            state[:] = compiled(*state, torch.randn_like(state[0]))

    return run_steps


# --------------------------------------------------------------------------- baselines, in the parent
def openmm_langevin(name: str, seconds: float) -> dict:
    """Steps/s of LangevinMiddleIntegrator on one Context (baseline (a))."""
    import openmm

    bridge = _bridge(name)
    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, FRICTION, TIMESTEP)
    context = bridge.make_context(integrator)
    context.setVelocitiesToTemperature(TEMPERATURE, 1)
    integrator.step(100)
    return {"rate": _rate(integrator.step, 1, seconds), "platform": bridge.platform_name}


def openmm_bare_eval(name: str, seconds: float) -> dict:
    """Evaluations/s of a bare setPositions + getState loop on one Context."""
    import openmm

    bridge = _bridge(name)
    context = bridge.make_context(openmm.VerletIntegrator(TIMESTEP))
    pos = bridge.positions

    def run(k):
        for _ in range(k):
            context.setPositions(pos)
            context.getState(getEnergy=True, getForces=True)

    return {"rate": _rate(run, 1, seconds), "platform": bridge.platform_name}


def _child(kind: str, args: dict, threads: int, timeout: float) -> dict:
    code = (f"import json, torch; torch.set_num_threads({threads}); "
            f"import benchmarks.bench_forcefield as b; print('RESULT', json.dumps(b.{kind}(**{args!r})))")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                             cwd=root, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    last = [l for l in out.stderr.strip().splitlines() if l.strip()]
    return {"error": last[-1][:120] if last else f"exit {out.returncode}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--systems", default="vacuum,obc2,gbsa")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default=None, help="comma-separated walker counts")
    parser.add_argument("--no-compile", action="store_true", help="skip compiled rows")
    parser.add_argument("--sampler-compile", action="store_true",
                        help="compiled rows through lmd.Sampler(compile=True) instead of this file's BAOAB")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [1, 64, 1024] if args.quick else [1, 64, 1024, 8192])
    seconds = 0.5 if args.quick else 2.0
    modes = [False] if args.no_compile else [False, True]
    print(f"bench_forcefield: torch threads {args.threads}, OpenMM CPU platform threads = its default; "
          f"{os.cpu_count()} CPUs, shared machine (not quiet): compare ratios only", flush=True)
    for name in args.systems.split(","):
        a = openmm_langevin(name, seconds)
        bare = openmm_bare_eval(name, seconds)
        print(f"\n== {name}: (a) LangevinMiddleIntegrator on {a['platform']}: {a['rate']:,.0f} steps/s; "
              f"bare OpenMM evaluation {bare['rate']:,.0f} evals/s ({1e6 / bare['rate']:.1f} us)", flush=True)
        print(f"{'N':>6} {'engine':<8} {'dtype':<8} {'mode':<9} {'walker-steps/s':>15} {'x (a)':>7} "
              f"{'x (b)':>7} {'evals/s alone':>14} {'KB/walker':>10} {'warmup s':>9}", flush=True)
        for n in sizes:
            b = _child("torch_row", dict(name=name, engine="openmm", n_walkers=n, dtype="float64",
                                         compiled=False, seconds=seconds), args.threads, 400)
            b_rate = b.get("rate", float("nan"))
            print(f"{n:>6} {'bridge':<8} {'float64':<8} {'eager':<9} {b_rate:>15,.0f} "
                  f"{b_rate / a['rate']:>7.2f} {1.0:>7.2f} {'':>14} {b.get('mem_per_walker_kb', 0):>10.1f} "
                  f"{b.get('warmup_s', 0):>9.1f} {b.get('error', '')}", flush=True)
            for dtype in ("float32", "float64"):
                for compiled in modes:
                    mode = "compiled" if compiled else "eager"
                    r = _child("torch_row", dict(name=name, engine="torch", n_walkers=n, dtype=dtype,
                                                 compiled=compiled, seconds=seconds,
                                                 sampler_compile=args.sampler_compile), args.threads, 400)
                    rate = r.get("rate", float("nan"))
                    print(f"{n:>6} {'torch':<8} {dtype:<8} {mode:<9} {rate:>15,.0f} {rate / a['rate']:>7.2f} "
                          f"{rate / b_rate:>7.2f} {r.get('eval_rate', float('nan')):>14,.0f} "
                          f"{r.get('mem_per_walker_kb', float('nan')):>10.1f} {r.get('warmup_s', float('nan')):>9.1f}"
                          f" {r.get('error', '')}", flush=True)

if __name__ == "__main__":
    main()
