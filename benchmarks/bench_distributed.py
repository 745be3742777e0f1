"""Throughput of a distributed run on 1 and on 2 Dask workers (LocalCluster, one process
and one thread per worker), for a CPU-bound target, in the same run.

The target is alanine dipeptide in OBC2 implicit solvent through the OpenMM bridge (each force
evaluation is ~0.3-1 ms of single-threaded OpenMM work), sampled by BAOAB on the torch
executor. Scaling efficiency = (rate with 2 workers) / (2 × rate with 1 worker).

Usage: ``python benchmarks/bench_distributed.py [--quick]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CONFIG = """\
[system]
name = "alanine_dipeptide"
solvent = "implicit"
platform = "{platform}"

[integrator]
name = "baoab"
timestep = 0.002
friction = 1.0

[sampler]
n_steps = {n_steps}
n_walkers = {n_walkers}
record_every = 50
seed = 0
checkpoint_every = {n_steps}
"""


def main(argv=None):
    import distributed

    from langevin_md.run.distributed import run_distributed

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--platform", default="CPU", help="OpenMM platform (CPU or Reference)")
    args = p.parse_args(argv)
    n_steps = 100 if args.quick else 400
    n_walkers = 8
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "ala.toml"
        cfg.write_text(CONFIG.format(platform=args.platform, n_steps=n_steps, n_walkers=n_walkers))
        for n_workers in (1, 2):
            with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=40) as cl, \
                    distributed.Client(cl) as client:
                # OpenMM's CPU platform would use every core in each worker: pin it to one.
                client.run(lambda: __import__("os").environ.__setitem__("OPENMM_CPU_THREADS", "1"))
                t0 = time.perf_counter()
                run_distributed(cfg, Path(tmp) / f"run{n_workers}", client, n_shards=n_workers,
                                progress=False)
                wall = time.perf_counter() - t0
            rates[n_workers] = n_walkers * n_steps / wall
            print(f"{n_workers} worker(s): {wall:6.1f} s wall, {rates[n_workers]:8.1f} walker-steps/s")
    eff = rates[2] / (2 * rates[1])
    print(f"speed-up {rates[2] / rates[1]:.2f}x on 2 workers; scaling efficiency {eff:.0%} "
          f"(includes Context creation and merging; 2 cores on this machine)")


if __name__ == "__main__":
    main()
