"""Overhead of the torch ↔ OpenMM bridge (``OpenMMSystem.energy_and_forces``).

For alanine dipeptide in vacuum and in OBC2 implicit solvent, on each platform, time

* ``bare``: a hand-written loop ``context.setPositions(ndarray)`` +
  ``context.getState(getEnergy=True, getForces=True)`` on a raw Context (no unit conversion,
  nothing copied out: the floor for any Python caller);
* ``bridge x1``: ``system.energy_and_forces(x)`` with one walker per call (torch in, torch
  out), cycling through the same 16 configurations;
* ``bridge x16``: the same with 16 walkers in one call,

in the same run, interleaved in 20 short rounds (minimum per variant) so that load from other
processes hits all three alike, and print evaluations per second (one evaluation = energy and forces of one walker) and the
ratio of time per evaluation, bridge / bare (goal: ≤ 1.5).

Run ``python benchmarks/bench_openmm_bridge.py`` (``--quick`` for a short run,
``--platforms Reference,CPU,OpenCL`` to choose platforms).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _time_per_eval(fn, n_evals_per_call: int, seconds: float) -> float:
    """Seconds per evaluation over one window of about ``seconds``."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / (calls * n_evals_per_call)


def bench(solvent: str, platform: str, seconds: float, n_walkers: int = 16) -> dict:
    import openmm

    from langevin_md.systems.molecules import alanine_dipeptide

    system = alanine_dipeptide(solvent, platform=platform)
    context = system.make_context(openmm.VerletIntegrator(0.001))
    rng = np.random.default_rng(0)
    walkers = system.positions + 0.005 * rng.standard_normal((n_walkers,) + system.positions.shape)
    singles = [torch.from_numpy(walkers[i : i + 1].copy()) for i in range(n_walkers)]
    xn = torch.from_numpy(walkers.copy())

    def bare():
        for pos in walkers:
            context.setPositions(pos)
            context.getState(getEnergy=True, getForces=True)

    def bridge1():  # one walker per call, cycling through the same positions as ``bare``
        for x1 in singles:
            system.energy_and_forces(x1)

    def bridgen():
        system.energy_and_forces(xn)

    # Many short interleaved windows, minimum per variant: on a shared machine the CPU
    # platform's per-call time swings 3x with background load, and the minimum is the
    # estimate least affected by it.
    for fn in (bare, bridge1, bridgen):
        fn()  # warm up
    rounds = 20
    t_bare, t_1, t_n = [], [], []
    for _ in range(rounds):
        t_bare.append(_time_per_eval(bare, n_walkers, seconds / (3 * rounds)))
        t_1.append(_time_per_eval(bridge1, n_walkers, seconds / (3 * rounds)))
        t_n.append(_time_per_eval(bridgen, n_walkers, seconds / (3 * rounds)))
    return {
        "solvent": solvent,
        "platform": system.platform_name,
        "bare": min(t_bare),
        "bridge1": min(t_1),
        "bridgen": min(t_n),
        "n_walkers": n_walkers,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 1 s per row instead of 6 s")
    parser.add_argument("--platforms", default="Reference,CPU", help="comma-separated OpenMM platforms")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else 6.0
    from langevin_md.systems.platforms import available_platforms

    names = [p.strip() for p in args.platforms.split(",") if p.strip()]
    missing = [p for p in names if p not in available_platforms()]
    if missing:
        parser.error(f"platform(s) {missing} not available; available: {available_platforms()}")

    header = (
        f"{'system':<10} {'platform':<10} {'bare evals/s':>13} {'bridge x1':>11} {'bridge x16':>11} "
        f"{'us/eval bare':>13} {'ratio x1':>9} {'ratio x16':>10}"
    )
    print(header)
    print("-" * len(header))
    for solvent in ("vacuum", "implicit"):
        for platform in names:
            r = bench(solvent, platform, seconds)
            print(
                f"{solvent:<10} {r['platform']:<10} {1 / r['bare']:>13,.0f} {1 / r['bridge1']:>11,.0f} "
                f"{1 / r['bridgen']:>11,.0f} {r['bare'] * 1e6:>13.1f} {r['bridge1'] / r['bare']:>9.2f} "
                f"{r['bridgen'] / r['bare']:>10.2f}",
                flush=True,
            )
    print("ratio = time per evaluation through the bridge / bare OpenMM loop (goal <= 1.5)")


if __name__ == "__main__":
    main()
