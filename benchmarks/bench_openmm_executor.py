"""The OpenMM executor against a plain OpenMM ``LangevinMiddleIntegrator`` loop.

For alanine dipeptide in vacuum and in OBC2 implicit solvent, on the Reference and CPU
platforms, one walker each, this times

* ``LangevinMiddleIntegrator`` by hand: ``integrator.step(record_every)`` then
  ``context.getState(getPositions=True, getEnergy=True)``, the loop a user would write;
* ``lmd.sample(..., backend="openmm")`` with BAOAB (compiled to that same native integrator,
  plus the step-end kinetic-energy reconstruction at each record);
* the same with OBABO and MALA (CustomIntegrators compiled from our operator sequence),

and prints steps/s and each one's ratio to the plain loop. Setup (Context creation) is not
timed. Each measurement runs about ``--seconds`` seconds and the best of ``--repeats`` is kept,
the variants interleaved so that machine load hits them alike.

Usage::

    .venv/bin/python benchmarks/bench_openmm_executor.py            # ~2 minutes
    .venv/bin/python benchmarks/bench_openmm_executor.py --quick    # ~20 seconds
"""

from __future__ import annotations

import argparse
import platform as host
import time

import numpy as np

import langevin_md as lmd
from langevin_md.systems.molecules import alanine_dipeptide
from langevin_md.systems.platforms import available_platforms

TEMPERATURE = 300.0  # K
TIMESTEP = 0.002     # ps (no constraints: BAOAB at 2 fs is stable for alanine dipeptide)
FRICTION = 1.0       # 1/ps
MALA_STEP = 2e-6     # nm^2: acceptance ~0.5 on alanine dipeptide at 300 K


def plain_langevin_middle(system, n_steps: int, record_every: int) -> float:
    """Steps/s of a hand-written LangevinMiddleIntegrator loop with one getState per record."""
    import openmm

    integrator = openmm.LangevinMiddleIntegrator(TEMPERATURE, FRICTION, TIMESTEP)
    integrator.setRandomNumberSeed(1)
    context = system.make_context(integrator)
    context.setVelocitiesToTemperature(TEMPERATURE, 1)
    integrator.step(10)  # first-step setup out of the timing
    t0 = time.perf_counter()
    for _ in range(n_steps // record_every):
        integrator.step(record_every)
        state = context.getState(getPositions=True, getEnergy=True)
        state.getPositions(asNumpy=True)
        state.getPotentialEnergy()
    return n_steps / (time.perf_counter() - t0)


def executor(integrator):
    def run(system, n_steps: int, record_every: int) -> float:
        r = lmd.sample(system, integrator, n_steps=n_steps, n_walkers=1, record_every=record_every,
                       burn_in=10, seed=1, backend="openmm")
        return r.n_steps_run / r.wall_time
    return run


VARIANTS = {
    "LangevinMiddle (plain loop)": plain_langevin_middle,
    "BAOAB (executor, native)": executor(lmd.integrators.BAOAB(TIMESTEP, FRICTION)),
    "OBABO (executor, custom)": executor(lmd.integrators.OBABO(TIMESTEP, FRICTION)),
    "MALA (executor, custom)": executor(lmd.integrators.MALA(MALA_STEP)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat (~20 s)")
    parser.add_argument("--seconds", type=float, default=None, help="target seconds per measurement")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many (default 3, 1 with --quick)")
    parser.add_argument("--record-every", type=int, default=100, help="steps between recorded frames")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.4 if args.quick else 1.5)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    k = args.record_every

    import openmm

    platforms = [p for p in ("Reference", "CPU") if p in available_platforms()]
    print(f"OpenMM {openmm.__version__}, {host.processor() or host.machine()}, "
          f"record_every={k}, best of {repeats}, ~{seconds:g} s each")
    rows = []
    for solvent in ("vacuum", "implicit"):
        for name in platforms:
            system = alanine_dipeptide(solvent, temperature=TEMPERATURE, platform=name)
            # calibrate the run length on the plain loop (at least ~0.1 s of it)
            n_cal = k
            while True:
                t0 = time.perf_counter()
                rate = plain_langevin_middle(system, n_cal, k)
                if time.perf_counter() - t0 > 0.1:
                    break
                n_cal *= 4
            n_steps = max(k, int(rate * seconds) // k * k)
            best = {v: 0.0 for v in VARIANTS}
            for _ in range(repeats):
                for v, fn in VARIANTS.items():
                    best[v] = max(best[v], fn(system, n_steps, k))
            rows.append((f"alanine {solvent}", name, n_steps, best))

    ref = "LangevinMiddle (plain loop)"
    width = max(len(v) for v in VARIANTS)
    print()
    print(f"{'system':<19} {'platform':<9} {'steps':>7}  {'scheme':<{width}} {'steps/s':>10} {'vs plain':>9}")
    for system_name, platform_name, n_steps, best in rows:
        for v, sps in best.items():
            print(f"{system_name:<19} {platform_name:<9} {n_steps:>7}  {v:<{width}} {sps:>10.0f} "
                  f"{sps / best[ref]:>8.2f}x")
        print()
    ratios = [best["BAOAB (executor, native)"] / best[ref] for *_, best in rows]
    print(f"BAOAB executor / plain LangevinMiddle: min {min(ratios):.2f}x, "
          f"geometric mean {np.exp(np.mean(np.log(ratios))):.2f}x (aim: >= 0.9x)")


if __name__ == "__main__":
    main()
