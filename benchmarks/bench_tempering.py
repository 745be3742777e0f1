"""Replica exchange: the cost of swaps, and the time to a converged alpha_L population.

1. Cost per walker-step. The same walkers of alanine dipeptide (vacuum, batched torch force
   field) step with BAOAB, and with ``ReplicaExchange(BAOAB)`` (8 rungs, 300 -> 1000 K, swaps
   every ``--swap-every`` steps), back to back in the same process and repeated; the best of
   the repeats of each is kept, timed as CPU time of this process (one torch thread), which
   filters out other processes' interference on a shared machine. The ratio
   includes everything replica exchange adds: per-walker temperatures in the BAOAB step, the
   swap rounds and their random draws. A cheap analytic system (a 66-d harmonic well, whose
   force costs almost nothing) gives the worst case.
2. Time to R-hat <= 1.01 on the alpha_L indicator (phi > 0) at 300 K. Both samplers get the
   same walkers, the same start (C7eq) and the same wall-clock budget; every ``--chunk`` steps
   R-hat is computed over the second half of the frames so far (chains: the ladders' 300 K
   series for replica exchange, the walkers for plain BAOAB), and the first wall time at
   which it is <= 1.01 and every chain has visited alpha_L in those frames is reported ("not
   reached" otherwise); the second condition matters because chains that all stay out of
   alpha_L agree perfectly and give R-hat = 1. On the CPU "time" is this
   process's CPU time (one thread), i.e. the wall time of a machine of its own.

Usage: ``python benchmarks/bench_tempering.py [--quick] [--walkers 64] [--budget 600] [--device cpu]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.analysis import at_temperature, phi_psi, rhat
from langevin_md.integrators import BAOAB, ReplicaExchange, geometric_ladder
from langevin_md.systems import Harmonic
from langevin_md.systems.molecules import alanine_dipeptide

N_T = 8
T_COLD, T_HOT = 300.0, 1000.0


def time_per_walker_step(system, integ, n_walkers, n_steps, repeats, device):
    """Best-of-``repeats`` seconds per walker-step, each timing ``n_steps`` steps.

    On the CPU this is the process's CPU time (one torch thread), which other processes on
    a shared machine barely disturb; on a GPU it is wall time after synchronising.
    """
    clock = time.process_time if device == "cpu" else time.perf_counter
    sampler = lmd.Sampler(system, integ, n_walkers=n_walkers, seed=0, device=device)
    sampler.run_to(20)  # warm caches
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = clock()
        sampler.run_to(sampler.step + n_steps, record_every=n_steps)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, (clock() - t) / (n_steps * n_walkers))
    return best


def overhead(args, device):
    ala = alanine_dipeptide(solvent="vacuum", temperature=T_COLD, engine="torch")
    ladder = geometric_ladder(N_T, T_HOT / T_COLD)
    inner = BAOAB(timestep=0.002, friction=5.0)
    n_steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    print(f"cost per walker-step (best of {repeats} x {n_steps} steps), device {device}")
    print(f"{'system':>22} {'walkers':>8} {'swap_every':>10} {'BAOAB (us)':>11} {'with swaps (us)':>16} {'ratio':>7}")
    systems = [("alanine (torch ff)", ala), ("harmonic 66-d", Harmonic(dim=66))]
    for name, system in systems:
        for n in args.walkers:
            for every in args.swap_every:
                re = ReplicaExchange(inner, ladder=ladder, swap_every=every)
                # Interleave the two so that slow phases of a shared machine hit both.
                plain_t, re_t = float("inf"), float("inf")
                for _ in range(args.rounds):
                    plain_t = min(plain_t, time_per_walker_step(system, inner, n, n_steps, repeats, device))
                    re_t = min(re_t, time_per_walker_step(system, re, n, n_steps, repeats, device))
                print(f"{name:>22} {n:>8} {every:>10} {plain_t * 1e6:>11.3f} {re_t * 1e6:>16.3f} "
                      f"{re_t / plain_t:>7.3f}", flush=True)


def time_to_rhat(args, device):
    ala = alanine_dipeptide(solvent="vacuum", temperature=T_COLD, engine="torch")
    n = args.walkers[0]
    inner = BAOAB(timestep=0.002, friction=5.0)
    re = ReplicaExchange(inner, ladder=geometric_ladder(N_T, T_HOT / T_COLD), swap_every=10)
    budget, chunk, every = (10.0, 100, 10) if args.quick else (args.budget, args.chunk, 50)
    print(f"\ntime to R-hat <= 1.01 on alpha_L (phi > 0) at {T_COLD:g} K: {n} walkers, budget {budget:g} s")
    for name, integ in (("replica exchange", re), ("plain BAOAB", inner)):
        sampler = lmd.Sampler(ala, integ, n_walkers=n, seed=0, device=device)
        phis, idx = [], []
        clock = time.process_time if device == "cpu" else time.perf_counter
        t0 = clock()
        reached, r = None, float("nan")
        while clock() - t0 < budget:
            res = sampler.run_to(sampler.step + chunk, record_every=every)
            phi, _ = phi_psi(res)
            phis.append(phi)
            if name == "replica exchange":
                idx.append(res.fields["temperature_index"])
            phi = np.concatenate(phis)
            ind = (phi > 0) if not idx else (at_temperature(np.concatenate(idx), 0, phi) > 0)
            ind = ind[ind.shape[0] // 2:].astype(np.float64)
            try:
                r = rhat(ind) if ind.shape[0] >= 4 else float("nan")
            except ValueError:  # constant: no chain has visited alpha_L
                r = float("nan")
            # R-hat is blind when every chain agrees it never saw alpha_L (all stuck in the
            # same basin look converged), so every chain must also have visited it.
            visited = bool(ind.any(0).all())
            if reached is None and r <= 1.01 and visited:
                reached = clock() - t0
                break
        elapsed = clock() - t0
        pop = float(ind.mean())
        what = f"{reached:.0f} s" if reached is not None else f"not reached in {elapsed:.0f} s"
        print(f"  {name:>17}: {what}; {sampler.step * inner.timestep:g} ps per walker, R-hat {r:.3f}, "
              f"alpha_L {pop:.4f}, chains that visited alpha_L: {int(ind.any(0).sum())}/{ind.shape[1]}",
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--walkers", default="64,512", help="comma-separated walker counts (multiples of 8)")
    parser.add_argument("--swap-every", default="10,1", help="comma-separated swap intervals")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two timings")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per sampler for part 2")
    parser.add_argument("--chunk", type=int, default=2000, help="steps between R-hat checks")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-rhat", action="store_true")
    args = parser.parse_args(argv)
    args.walkers = [int(w) for w in args.walkers.split(",")]
    args.swap_every = [int(w) for w in args.swap_every.split(",")]
    if args.quick:
        args.walkers = [16]
        args.swap_every = [10]
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    overhead(args, args.device)
    if not args.skip_rhat:
        time_to_rhat(args, args.device)


if __name__ == "__main__":
    main()
