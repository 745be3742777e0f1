"""The fused numba kernels against the batched torch terms: JIT cost and force-evaluation time.

1. **JIT**: the first ``energy_and_forces`` call of alanine dipeptide (vacuum, OBC2), float64,
   one thread, in a fresh process, with an empty numba cache (a cold compile, which fills it)
   and then again with that cache (a load). ``NUMBA_CACHE_DIR`` points both at a temporary
   directory, so the package's own ``__pycache__`` is neither used nor changed.
2. **Evaluation**: milliseconds per ``energy_and_forces`` call, ``kernels="torch"`` against
   ``kernels="fused"``, alternated, best of ``--repeats``, torch and numba on one thread, for
   N ∈ ``--walkers``. The load average is printed at start and end.

Run ``python benchmarks/bench_fused.py`` (``--skip-jit`` for the timings only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_FIRST_CALL = """
import time, torch
torch.set_num_threads(1)
import langevin_md as lmd
ff = lmd.systems.alanine_dipeptide({solvent!r})
x = ff.initial_positions(4)
t0 = time.perf_counter()
ff.energy_and_forces(x)
assert ff.kernels_used == "fused", ff.kernels_used
print(time.perf_counter() - t0)
"""


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def first_call_seconds(solvent: str, cache_dir: str) -> float:
    """Seconds of the first fused call in a new process whose numba cache is ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(solvent=solvent)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def evaluation_ms(walkers, repeats: int) -> list[tuple]:
    """Rows (solvent, N, torch ms, fused ms) of the best per-call times, alternated."""
    import torch

    import langevin_md as lmd

    torch.set_num_threads(1)
    rows = []
    for solvent in ("vacuum", "implicit"):
        ff = lmd.systems.alanine_dipeptide(solvent)
        for n in walkers:
            g = torch.Generator().manual_seed(0)
            x = ff.initial_positions(n) + 0.01 * torch.randn((n, 22, 3), generator=g, dtype=torch.float64)
            contenders = {k: ff.with_kernels(k) for k in ("torch", "fused")}
            best = {k: float("inf") for k in contenders}
            calls = max(1, 2048 // n)
            for c in contenders.values():
                c.energy_and_forces(x)
            for _ in range(repeats):
                for k, c in contenders.items():
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        c.energy_and_forces(x)
                    best[k] = min(best[k], (time.perf_counter() - t0) / calls)
            rows.append((solvent, n, 1e3 * best["torch"], 1e3 * best["fused"]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walkers", default="1,64,1024", help="comma-separated walker counts")
    parser.add_argument("--repeats", type=int, default=5, help="alternated repeats, best kept")
    parser.add_argument("--skip-jit", action="store_true", help="only the evaluation timings")
    args = parser.parse_args(argv)
    walkers = tuple(int(s) for s in args.walkers.split(","))
    print(f"load average at start: {load_average()}  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs)")
    if not args.skip_jit:
        print("\nfirst fused call in a new process (s), one thread, float64:")
        print("| system | empty numba cache (compile) | cached |\n|---|---|---|")
        for solvent in ("vacuum", "implicit"):
            with tempfile.TemporaryDirectory() as cache:
                cold = first_call_seconds(solvent, cache)
                warm = first_call_seconds(solvent, cache)
            print(f"| alanine dipeptide {solvent} | {cold:.1f} | {warm:.2f} |")
    print("\nms per energy_and_forces call, one thread, float64 (best of alternated repeats):")
    print("| system | N | torch terms | fused kernels | speed-up |\n|---|---|---|---|---|")
    for solvent, n, t_torch, t_fused in evaluation_ms(walkers, args.repeats):
        print(f"| alanine dipeptide {solvent} | {n} | {t_torch:.3f} | {t_fused:.3f} | {t_torch / t_fused:.1f}× |")
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
