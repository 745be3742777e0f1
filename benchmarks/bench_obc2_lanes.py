"""The OBC2 fused kernel, per walker (``obc2.accumulate``) against lanes (``obc2.accumulate_lanes``).

Alanine dipeptide in OBC2 implicit solvent, float64 (``--dtype``), N walkers (default 1024;
Gaussian 0.01 nm perturbations of the structure), one thread (serial drivers; numba's pool
unused). For each block size B the walkers are laid out ``(N/B, 22, 3, B)`` once, outside the
timing (the layout change is the caller's). Best of ``--repeats`` alternated calls, same process,
timed in process CPU time (one thread: time spent descheduled on a shared machine does not
count); the table gives µs per walker and the ratio to the per-walker kernel measured in the
same run. The load average is printed at start and end: compare ratios, not times.

Run ``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_obc2_lanes.py``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walkers", type=int, default=1024)
    parser.add_argument("--blocks", default="32,64,128,256", help="comma-separated block sizes B")
    parser.add_argument("--repeats", type=int, default=7, help="alternated repeats, best kept")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = parser.parse_args(argv)
    import torch

    import langevin_md as lmd
    from langevin_md.forcefield.fused import obc2

    torch.set_num_threads(1)
    print(f"load average at start: {load_average()}  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs)")
    ff = lmd.systems.alanine_dipeptide("implicit", engine="torch")
    (term,) = [t for t in ff.module.terms if obc2.is_fusable(t)]
    dtype = np.dtype(args.dtype)
    params = obc2.pack(term, dtype)
    n = args.walkers
    g = torch.Generator().manual_seed(0)
    noise = 0.01 * torch.randn((n, 22, 3), generator=g, dtype=torch.float64)
    x = (ff.initial_positions(n) + noise).numpy().astype(dtype)
    atoms = x.shape[1]
    contenders = {"per walker": (obc2.accumulate, (x, np.zeros_like(x), np.zeros(n, dtype)))}
    for b in (int(s) for s in args.blocks.split(",")):
        n_blocks = -(-n // b)
        padded = np.concatenate([x, np.repeat(x[:1], n_blocks * b - n, axis=0)])
        lanes = padded.reshape(n_blocks, b, atoms, 3).transpose(0, 2, 3, 1).copy()
        arrays = (lanes, np.zeros_like(lanes), np.zeros((n_blocks, b), dtype))
        contenders[f"lanes B={b}"] = (obc2.accumulate_lanes, arrays)
    best = dict.fromkeys(contenders, float("inf"))
    for fn, arrays in contenders.values():  # compile or load from the cache
        fn(*arrays, params, False)
    for _ in range(args.repeats):
        for name, (fn, arrays) in contenders.items():
            t0 = time.process_time()
            fn(*arrays, params, False)
            best[name] = min(best[name], time.process_time() - t0)
    print(f"\nOBC2 kernel, alanine dipeptide, N={n}, {args.dtype}, one thread, best of {args.repeats} alternated:")
    print("| kernel | µs per walker | speed-up |\n|---|---|---|")
    base = best["per walker"]
    for name, t in best.items():
        print(f"| {name} | {1e6 * t / n:.3f} | {base / t:.2f}× |")
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
