"""Training speed: the 12,800-point 2-D φ/ψ denoising-score-matching fit, old settings vs new.

    .venv/bin/python benchmarks/bench_training.py                 # best of 3, alternated
    .venv/bin/python benchmarks/bench_training.py --repeats 1 --old-default-threads

The case of issue 25: a periodic EnergyMLP (64 wide, 3 layers, float64 as ``langevin-md
train`` builds it) on 12,800 (φ, ψ) points, 5 noise levels from 1.0 to 0.1 rad.

* old: 60 epochs of batch 256 at Adam step 10⁻³, constant (the previous defaults), one
  thread; with ``--old-default-threads`` also once at torch's default thread count, which is
  what the old code ran with (on a loaded 2-core machine that is the slow case);
* new: 60 epochs of batch 2048 at 10⁻², cosine decay, threads chosen for the batch and the
  machine's load (:func:`langevin_md.threads.choose_threads`).

Runs alternate (old, new, old, new, ...) in one process; the best CPU and wall time of each
setting is reported with its loss, the same number in every repeat (fixed seeds). The loss is
one yardstick for both: the DSM loss of the best-epoch model on 12,800 fresh points with 4
fixed noise draws each (the settings' own validation losses use different numbers of noise
draws). CPU time is the process's (all threads). The load average is printed before and
after. The data are SYNTHETIC: independent draws of a von Mises mixture on the three
alanine-dipeptide basins (C7eq/β 60 %, αR 30 %, αL 10 %); the cost of a fit does not depend
on where the points came from.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

CENTRES = np.radians([[-80.0, 150.0], [-70.0, -40.0], [60.0, 40.0]])


def phi_psi_points(n: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    k = g.choice(3, size=n, p=[0.6, 0.3, 0.1])
    x = g.vonmises(CENTRES[k], 6.0)
    return (x + np.pi) % (2 * np.pi) - np.pi


SETTINGS = {
    "old (1 thread)": dict(epochs=60, batch_size=256, learning_rate=1e-3, learning_rate_schedule="constant", threads=1),
    "new": dict(epochs=60, batch_size=2048, learning_rate=1e-2, learning_rate_schedule="cosine", threads=None,
                validation_samples=4096),
}


def test_loss(model, test: np.ndarray, sigmas: np.ndarray, draws: int = 4) -> float:
    """DSM loss on fresh points with fixed noise draws: one yardstick for every setting."""
    import torch

    from langevin_md.training import dsm_loss

    g = torch.Generator().manual_seed(12345)
    x = torch.as_tensor(test).repeat(draws, 1)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    s = torch.as_tensor(sigmas)[torch.randint(len(sigmas), (x.shape[0],), generator=g)]
    return float(dsm_loss(model, x, s, z, create_graph=False).detach())


def run(setting: dict, data: np.ndarray, test: np.ndarray) -> tuple[float, float, float, int]:
    import torch

    from langevin_md.training import EnergyMLP, fit, geometric_sigmas

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = EnergyMLP((2,), hidden=64, n_layers=3, periodic=True, kT=2.494).double()
    cpu, wall = time.process_time(), time.perf_counter()
    sigmas = geometric_sigmas(1.0, 0.1, 5)
    fit(model, data, sigmas, patience=1000, progress=False, seed=0, **setting)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, test_loss(model, test, sigmas), torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--points", type=int, default=12_800)
    p.add_argument("--old-default-threads", action="store_true",
                   help="also run the old settings once at torch's default thread count")
    args = p.parse_args()
    import torch

    data, test = phi_psi_points(args.points), phi_psi_points(args.points, seed=1)
    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}  torch threads: {torch.get_num_threads()}")
    best: dict = {}
    for rep in range(args.repeats):
        for name, setting in SETTINGS.items():
            cpu, wall, val, _ = run(setting, data, test)
            print(f"  repeat {rep + 1} {name:16s} CPU {cpu:7.2f} s  wall {wall:7.2f} s  test loss {val:.5f}",
                  flush=True)
            b = best.get(name)
            best[name] = (min(cpu, b[0]) if b else cpu, min(wall, b[1]) if b else wall, val)
    if args.old_default_threads:
        setting = dict(SETTINGS["old (1 thread)"], threads=torch.get_num_threads())
        cpu, wall, val, _ = run(setting, data, test)
        best[f"old ({torch.get_num_threads()} threads)"] = (cpu, wall, val)
    print(f"load average after: {os.getloadavg()}")
    print(f"{'setting':22s} {'best CPU-s':>10s} {'best wall-s':>11s} {'test loss':>9s}")
    for name, (cpu, wall, val) in best.items():
        print(f"{name:22s} {cpu:10.2f} {wall:11.2f} {val:9.5f}")


if __name__ == "__main__":
    main()
