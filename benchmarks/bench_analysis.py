"""Scale benchmark of the analysis: τ of 10⁷ samples, and a full analysis of 10⁶ frames of
alanine dipeptide.

    .venv/bin/python benchmarks/bench_analysis.py            # full size
    .venv/bin/python benchmarks/bench_analysis.py --frames 100000 --samples 1000000

Targets: integrated autocorrelation time of 10⁷ samples in < 2 s; φ/ψ, τ/ESS/R-hat/MCSE,
state assignment, transition counts, round trips and populations of a 10⁶-frame trajectory
in < 30 s.

The 10⁶-frame trajectory is SYNTHESISED: a short real run (BAOAB in the OpenMM executor, 8
walkers) is tiled in time up to the requested length and every frame is perturbed by
Gaussian noise of 0.002 nm, so the arrays have the real layout and realistic φ/ψ values, but
its dynamics (autocorrelation, transitions) are not those of a 10⁶-frame simulation. The
timings measure the analysis only.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def ar1(n: int, a: float, rng) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([np.sqrt(1 - a * a)], [1, -a], rng.standard_normal(n))


def bench_tau(n_samples: int) -> None:
    from langevin_md.analysis import integrated_autocorrelation_time

    x = ar1(n_samples, 0.9, np.random.default_rng(0))
    integrated_autocorrelation_time(x[:10_000])  # warm up scipy.fft plans
    t = time.perf_counter()
    tau = integrated_autocorrelation_time(x)
    dt = time.perf_counter() - t
    print(f"tau of {n_samples:.0e} samples (AR(1), exact tau 19): {tau:.3f} in {dt:.2f} s  (target < 2 s)")


def real_run(n_walkers: int, n_steps: int):
    import langevin_md as lmd

    system = lmd.systems.alanine_dipeptide(platform="auto")
    t = time.perf_counter()
    r = lmd.sample(system, lmd.integrators.BAOAB(timestep=0.002, friction=1.0), n_steps=n_steps,
                   n_walkers=n_walkers, record_every=20, seed=0, backend="openmm", dtype="float32")
    print(f"real run: {r.n_frames} frames x {r.n_walkers} walkers of alanine dipeptide "
          f"({system.platform_name}) in {time.perf_counter() - t:.1f} s")
    return r


def synthesise(result, n_total_frames: int, rng):
    """Tile the frames in time to n_total_frames in all (frames x walkers) and perturb them."""
    from langevin_md.result import SampleResult

    w = result.n_walkers
    n_frames = n_total_frames // w
    reps = -(-n_frames // result.n_frames)
    pos = np.tile(result.positions, (reps, 1, 1, 1))[:n_frames]
    pos += rng.normal(0.0, 0.002, size=pos.shape).astype(pos.dtype)
    en = np.tile(result.energies, (reps, 1))[:n_frames]
    en = en + rng.normal(0.0, 1.0, size=en.shape).astype(en.dtype)
    return SampleResult(positions=pos, energies=en, steps=np.arange(n_frames) * 20, kT=result.kT,
                        wall_time=result.wall_time, metadata=dict(result.metadata), system=result.system)


def bench_molecular(result) -> None:
    from langevin_md import analysis as A

    timings = {}
    t0 = time.perf_counter()
    phi, psi = A.phi_psi(result)
    timings["phi/psi"] = time.perf_counter() - t0
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.ShortChainWarning)
        table = {}
        for name, series, period in (("energy", result.energies, None), ("phi", phi, 2 * np.pi),
                                     ("psi", psi, 2 * np.pi)):
            table[name] = (A.integrated_autocorrelation_time(series, period=period),
                           A.effective_sample_size(series, period=period),
                           A.rhat(series, period=period), A.mcse(series, period=period))
    timings["tau/ESS/R-hat/MCSE x3"] = time.perf_counter() - t
    t = time.perf_counter()
    lab = A.assign_states(phi, psi)
    counts = A.transition_counts(lab, 3)
    rt = A.round_trip_times(lab, 0, 1)
    pops = A.state_populations(lab, 3)
    timings["states, transitions, round trips, populations"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"\nfull analysis of {phi.size:.0e} frames ({result.n_frames} x {result.n_walkers} walkers):")
    for k, v in timings.items():
        print(f"  {k:<48} {v:6.2f} s")
    print(f"  {'total':<48} {total:6.2f} s  (target < 30 s)")
    for name, (tau, ess, r, err) in table.items():
        print(f"  {name:<7} tau {tau:9.3g} frames  ESS {ess:9.3g}  R-hat {r:.3f}  MCSE {err:.3g}")
    print(f"  populations {np.round(pops.populations, 4)} +- {np.round(pops.standard_errors, 4)}; "
          f"transitions {counts.sum()}; C7eq<->alphaR round trips {rt.n_round_trips}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=10_000_000)
    p.add_argument("--frames", type=int, default=1_000_000)
    p.add_argument("--walkers", type=int, default=8)
    p.add_argument("--steps", type=int, default=20_000, help="steps of the short real run per walker")
    args = p.parse_args()
    bench_tau(args.samples)
    run = real_run(args.walkers, args.steps)
    big = synthesise(run, args.frames, np.random.default_rng(1))
    bench_molecular(big)


if __name__ == "__main__":
    main()
