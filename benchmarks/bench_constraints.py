"""Constrained vs unconstrained BAOAB on alanine dipeptide, torch executor and OpenMM side by side.

Three settings, as a molecular-dynamics user would pick them:

* ``1fs``: no constraints, 1 fs;
* ``2fs-HBonds``: bonds to hydrogen constrained (SHAKE/RATTLE), 2 fs;
* ``4fs-HBonds-HMR``: bonds to hydrogen constrained and hydrogen masses repartitioned to
  4 amu (:mod:`langevin_md.systems.hmr`), 4 fs.

For each: the torch BAOAB step on the batched torch force field with N walkers (default 1024,
float64 and float32, eager; the integrator's ``step`` called in a loop, so only the step is
timed), and
OpenMM's ``LangevinMiddleIntegrator`` (the same scheme) on one Context of the same
``openmm.System`` on the platform :class:`OpenMMSystem` picks. Reported:

* ms per batched torch step, and the **cost ratio** constrained/unconstrained per step at
  the same N (the price of SHAKE/RATTLE);
* simulated ns/day per walker (h · steps per day) and in aggregate (× N walkers; OpenMM runs
  walkers one Context after another, so its aggregate equals its per-walker figure per core).

The machine is shared: windows are interleaved (A/B alternated) and repeated, the best of each
is kept, the load average is printed at start and end, and only ratios taken within one run
mean much. The aim (issue 21) is a cost ratio of at most 1.3 for ``2fs-HBonds``.

Run ``python benchmarks/bench_constraints.py`` (``--quick`` for N = 64 and short windows;
``--walkers``, ``--dtype float64,float32``, ``--threads``, ``--device cuda``, ``--json PATH``).

``--kernels`` runs the micro-benchmark of the constraint kernels instead (one thread: run it
with ``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``): SHAKE + RATTLE velocity projection per
walker-step, the lanes kernels of :mod:`langevin_md.integrators.fused_constraints` on blocks of
B = 64, 128, 256 walkers against the torch :class:`ConstraintSolver` (``shake`` +
``project_velocities``) on the same N walkers, with one unconstrained force evaluation
(``energy_and_forces`` of the torch force field, fused kernels) for scale. The inputs are a 2 fs
step's worth of thermal displacement from constrained positions; variants are alternated within
each of ``--repeats`` rounds (default 7 with ``--kernels``) and the best of each is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import time

SETTINGS = (("1fs", None, 0.001, None), ("2fs-HBonds", "HBonds", 0.002, None),
            ("4fs-HBonds-HMR", "HBonds", 0.004, 4.0))
FRICTION = 1.0  # 1/ps
NS_PER_PS = 1e-3
SECONDS_PER_DAY = 86400.0


def build(constraints, hydrogen_mass):
    """The OpenMM bridge (for OpenMM) and the batched torch force field of the same System."""
    import langevin_md as lmd
    from langevin_md.systems.hmr import with_hydrogen_mass

    bridge = lmd.systems.alanine_dipeptide(constraints=constraints, engine="openmm")
    if hydrogen_mass is not None:
        bridge = with_hydrogen_mass(bridge, hydrogen_mass)
    return bridge, bridge.to_torch()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as text (``n/a`` where the OS has none)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def torch_step_seconds(system, timestep, n_walkers, device, seconds, dtype):
    """Best seconds per batched BAOAB step over a window of about ``seconds``."""
    import torch

    import langevin_md as lmd
    from langevin_md.random import WalkerRNG

    integrator = lmd.integrators.BAOAB(timestep=timestep, friction=FRICTION)
    rng = WalkerRNG(0, torch.arange(n_walkers), device=device)
    x = system.initial_positions(n_walkers).to(device=device, dtype=dtype)
    state = integrator.init(system, x, rng)
    for _ in range(3):  # warm caches (per-device copies, solver setup)
        state, _ = integrator.step(system, state, rng)
    k, t = 0, 0.0
    t0 = time.perf_counter()
    while t < seconds:
        state, _ = integrator.step(system, state, rng)
        if device != "cpu":
            torch.cuda.synchronize()
        k += 1
        t = time.perf_counter() - t0
    return t / k


def openmm_step_seconds(bridge, timestep, seconds):
    """Seconds per ``LangevinMiddleIntegrator`` step on one Context."""
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(bridge.temperature * unit.kelvin, FRICTION / unit.picosecond,
                                                 timestep * unit.picosecond)
    context = bridge.make_context(integrator)
    context.applyConstraints(1e-10)
    context.setVelocitiesToTemperature(bridge.temperature * unit.kelvin, 1)
    integrator.step(100)
    k, t = 0, 0.0
    t0 = time.perf_counter()
    chunk = 200
    while t < seconds:
        integrator.step(chunk)
        k += chunk
        t = time.perf_counter() - t0
    return t / k


def ns_per_day(timestep_ps, step_seconds):
    return timestep_ps * NS_PER_PS * SECONDS_PER_DAY / step_seconds


def _seconds(fn, calls):
    """Wall-clock and this thread's CPU seconds per call of ``fn`` over ``calls`` calls (one window).

    On a shared machine the CPU time leaves out the time the thread waited for a core, so it
    varies less between windows than the wall clock (cache and hyperthread sharing still count).
    """
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - w0) / calls, (time.thread_time() - c0) / calls


def kernels_main(n_walkers, blocks, repeats, seconds, dtype_name) -> int:
    """Micro-benchmark of SHAKE + RATTLE per walker-step: lanes kernels vs torch solver vs one force call."""
    import numpy as np
    import torch

    from langevin_md.integrators import fused_constraints as fc
    from langevin_md.integrators.constraints import ConstraintSolver, constraints_of

    torch.set_num_threads(1)
    dtype = np.dtype(dtype_name)
    tdtype = getattr(torch, dtype_name)
    bridge, ff = build("HBonds", None)
    constraints = constraints_of(bridge)
    solver = ConstraintSolver(constraints, bridge.masses, dtype=tdtype)
    lc = fc.pack_clusters(constraints, bridge.masses, dtype)
    tol = fc.default_tolerance(dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.as_tensor(bridge.positions, dtype=tdtype).expand(n_walkers, -1, -1).clone()
    x0 = solver.constrain_positions(x + 0.01 * torch.randn(x.shape, generator=g, dtype=tdtype))
    kt = 0.0083144626 * bridge.temperature  # kJ/mol
    sd = torch.as_tensor(np.sqrt(kt / bridge.masses), dtype=tdtype).reshape(1, -1, 1)
    v = sd * torch.randn(x.shape, generator=g, dtype=tdtype)          # thermal velocities, nm/ps
    x1 = x0 + 0.002 * v                                                # a 2 fs drift
    if hasattr(ff, "kernels_used"):
        ff.energy_and_forces(x0)
    print(f"load average at start: {load_average()}")
    print(f"alanine dipeptide HBonds ({lc.cluster_sizes} clusters by size), N = {n_walkers}, {dtype_name}, "
          f"one thread; force field kernels: {getattr(ff, 'kernels_used', '?')}")

    variants = {}

    def lanes_variant(b, tol):
        from_lanes = lambda a: np.ascontiguousarray(  # noqa: E731 - (N, A, 3) -> (nb, A, 3, B)
            a.numpy().reshape(n_walkers // b, b, -1, 3).transpose(0, 2, 3, 1))
        X0, X1, V = from_lanes(x0), from_lanes(x1), from_lanes(v)
        X = X1.copy()
        arrays = lc.arrays()

        def copy():
            np.copyto(X, X1)

        def run():
            np.copyto(X, X1)
            if fc.shake_lanes(X0, X, *arrays, tol, 50):
                raise RuntimeError("lanes SHAKE did not converge")
            fc.project_lanes(X, V, *arrays)
        run()
        return run, copy

    loose = 1e-10 if dtype_name == "float64" else tol  # the bond tolerance: one Newton step fewer
    for b in blocks:
        if n_walkers % b:
            raise SystemExit(f"--walkers {n_walkers} is not a multiple of block size {b}")
        for t in sorted({tol, loose}):
            name = f"lanes B={b} tol={t:g}"
            variants[name] = lanes_variant(b, t)
            variants[name + " (copy only)"] = (variants[name][1], None)
    vt = v.clone()
    torch_name = f"torch ConstraintSolver tol={solver.tolerance:g}"
    variants[torch_name] = (lambda: solver.project_velocities(solver.shake(x0, x1), vt), None)
    variants["force evaluation"] = (lambda: ff.energy_and_forces(x0), None)
    calls = {}
    for name, (fn, _) in variants.items():  # size each window to about `seconds`
        fn()
        once = _seconds(fn, 1)[0]
        calls[name] = max(1, int(seconds / max(once, 1e-7)))
    best = {(name, clock): float("inf") for name in variants for clock in (0, 1)}
    for _ in range(repeats):
        for name, (fn, _) in variants.items():
            for clock, t in enumerate(_seconds(fn, calls[name])):
                best[name, clock] = min(best[name, clock], t)
    print("per walker-step; wall clock, then this thread's CPU time (ratios within each clock)")
    print(f"{'variant':<30}{'wall us':>9}{'torch/this':>11}{'this/force':>11}"
          f"{'cpu us':>9}{'torch/this':>11}{'this/force':>11}")
    for name in variants:
        if name.endswith("(copy only)"):
            continue
        row = f"{name:<30}"
        for clock in (0, 1):
            t = best[name, clock]
            if name.startswith("lanes"):
                t = t - best[name + " (copy only)", clock]  # the input copy is not SHAKE's work
            row += (f"{1e6 * t / n_walkers:>9.3f}{best[torch_name, clock] / t:>11.2f}"
                    f"{t / best['force evaluation', clock]:>11.3f}")
        print(row)
    print(f"load average at end: {load_average()}")
    return 0


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walkers", type=int, default=1024)
    parser.add_argument("--dtype", default="float64,float32", help="comma-separated torch dtypes")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="N = 64, 1 s windows, one repeat")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--kernels", action="store_true",
                        help="micro-benchmark SHAKE + RATTLE kernels (lanes vs torch solver vs a force call)")
    parser.add_argument("--blocks", default="64,128,256", help="lanes block sizes for --kernels")
    args = parser.parse_args(argv)
    if args.kernels:
        dtype = args.dtype.split(",")[0].strip()
        if dtype not in ("float64", "float32"):
            parser.error(f"--dtype must be float64 or float32, got {dtype!r}")
        blocks = [int(b) for b in args.blocks.split(",")]
        return kernels_main(args.walkers, blocks, 7 if args.repeats == 3 else args.repeats,
                            0.3 if args.quick else 1.0, dtype)
    if args.quick:
        args.walkers, args.seconds, args.repeats = min(args.walkers, 64), 1.0, 1
    dtypes = []
    for name in args.dtype.split(","):
        if name.strip() not in ("float64", "float32"):
            parser.error(f"--dtype entries must be float64 or float32, got {name!r}")
        dtypes.append(getattr(torch, name.strip()))
    torch.set_num_threads(args.threads)
    print(f"load average at start: {load_average()}")

    systems = {name: build(c, hm) for name, c, _, hm in SETTINGS}
    best = {(name, side): float("inf") for name, *_ in SETTINGS for side in ["openmm"] + dtypes}
    for _ in range(args.repeats):
        for name, _, h, _ in SETTINGS:
            bridge, ff = systems[name]
            for dtype in dtypes:
                best[name, dtype] = min(best[name, dtype],
                                        torch_step_seconds(ff, h, args.walkers, args.device, args.seconds, dtype))
            best[name, "openmm"] = min(best[name, "openmm"], openmm_step_seconds(bridge, h, args.seconds / 2))

    rows = []
    print(f"alanine dipeptide (vacuum), BAOAB γ = {FRICTION}/ps, torch N = {args.walkers} on {args.device} "
          f"({args.threads} thread(s)); OpenMM LangevinMiddleIntegrator on "
          f"{systems['1fs'][0].platform_name}, one Context")
    print(f"{'setting':<16}{'dtype':>8}{'torch ms/step':>14}{'cost ratio':>11}{'torch ns/day/walker':>21}"
          f"{'torch ns/day total':>20}{'OpenMM ns/day':>15}{'torch total/OpenMM':>20}")
    for dtype in dtypes:
        base = best["1fs", dtype]
        for name, _, h, _ in SETTINGS:
            t_torch, t_omm = best[name, dtype], best[name, "openmm"]
            per_walker = ns_per_day(h, t_torch)
            row = {"setting": name, "dtype": str(dtype).replace("torch.", ""), "timestep_ps": h,
                   "n_walkers": args.walkers, "device": args.device, "torch_ms_per_step": 1e3 * t_torch,
                   "cost_ratio_vs_unconstrained": t_torch / base,
                   "torch_ns_per_day_per_walker": per_walker, "torch_ns_per_day_aggregate": per_walker * args.walkers,
                   "openmm_ns_per_day": ns_per_day(h, t_omm), "openmm_us_per_step": 1e6 * t_omm}
            rows.append(row)
            print(f"{name:<16}{row['dtype']:>8}{row['torch_ms_per_step']:>14.2f}"
                  f"{row['cost_ratio_vs_unconstrained']:>11.2f}{per_walker:>21.3f}"
                  f"{row['torch_ns_per_day_aggregate']:>20.1f}{row['openmm_ns_per_day']:>15.1f}"
                  f"{row['torch_ns_per_day_aggregate'] / row['openmm_ns_per_day']:>20.2f}")
    print(f"load average at end: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
