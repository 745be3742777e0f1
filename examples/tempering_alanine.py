"""Replica exchange on alanine dipeptide: the alpha_L population at 300 K, which plain Langevin
dynamics does not converge.

Alanine dipeptide in vacuum (Amber ff14SB, the batched torch force field) rarely leaves the
phi < 0 half of the Ramachandran plane at 300 K on the time scales we run: the barrier to
alpha_L (phi > 0) is about 10 kT. Replica exchange runs ladders of temperatures from 300 K up
to ~1000 K, where the barrier is ~3 kT, and swaps temperatures between neighbours so every
walker carries what it found back down to 300 K.

Two runs with the same walkers, steps and force evaluations:

* replica exchange: n_ladders ladders x 8 geometric rungs (300 -> 1000 K), BAOAB inside,
  swaps every 10 steps with the deterministic even/odd scheme;
* plain BAOAB: the same number of walkers, all at 300 K.

Both start from the same C7eq structure. Printed: the alpha_L (phi > 0) population at 300 K
with its standard error across independent chains (ladders, or walkers) and its R-hat, from
the 300 K rung alone and from every rung reweighted to 300 K by MBAR (pymbar; error by
bootstrap over ladders); swap acceptance per pair, round trips and the communication barrier.
Report sections go to --output (a folder): replica-index traces, swap acceptance, MBAR free
energies of the rungs, the phi/psi free-energy surface at 300 K from all rungs with its
bootstrap error (free_energy_surface.png), and the implied timescales of a Markov model of the
plain run's core states (implied_timescales.png).

Run:  python examples/tempering_alanine.py [--quick] [--output tempering_alanine]
"""

import argparse
import time
from pathlib import Path

import numpy as np

import langevin_md as lmd
from langevin_md.analysis import (at_temperature, communication_barrier, kinetics_section, mbar_section,
                                  mbar_tempering, phi_psi, rhat, surface_section, swap_acceptance,
                                  tempering_section)
from langevin_md.integrators import BAOAB, ReplicaExchange, geometric_ladder
from langevin_md.systems.molecules import alanine_dipeptide
from langevin_md.threads import torch_threads

T_COLD, T_HOT, N_TEMPERATURES = 300.0, 1000.0, 8


def alpha_l_summary(indicator: np.ndarray) -> tuple[float, float, float, int]:
    """Mean, standard error across chains, R-hat, and the number of chains that visited, of an
    indicator ``(n_frames, n_chains)``.

    R-hat alone is blind to a state no chain has reached (chains that agree on "never" look
    converged), hence the count of chains that visited it.
    """
    per_chain = indicator.mean(0)
    se = per_chain.std(ddof=1) / np.sqrt(per_chain.size)
    try:
        r = rhat(indicator.astype(np.float64))
    except ValueError:  # never visited by any chain: R-hat is undefined
        r = float("nan")
    return float(per_chain.mean()), float(se), r, int(indicator.any(0).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--output", default="tempering_alanine", help="folder for the report section")
    parser.add_argument("--n-ladders", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50_000, help="production steps (2 fs each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    with torch_threads(args.threads):
        return _run(args)


def _run(args):
    q = args.quick
    n_ladders = 2 if q else args.n_ladders
    n_steps, burn_in, every = (200, 50, 10) if q else (args.steps, 5000, 50)
    system = alanine_dipeptide(solvent="vacuum", temperature=T_COLD, engine="torch")
    n_walkers = n_ladders * N_TEMPERATURES
    inner = BAOAB(timestep=0.002, friction=5.0)  # ps, 1/ps; no constraints
    ladder = geometric_ladder(N_TEMPERATURES, T_HOT / T_COLD)
    runs = {"replica exchange": ReplicaExchange(inner, ladder=ladder, swap_every=10),
            "plain BAOAB": inner}
    results = {}
    for name, integ in runs.items():
        t0 = time.perf_counter()
        results[name] = lmd.sample(system, integ, n_steps=n_steps, n_walkers=n_walkers, burn_in=burn_in,
                                   record_every=every, seed=0)
        print(f"{name}: {n_walkers} walkers x {(burn_in + n_steps) * inner.timestep:g} ps "
              f"({n_walkers * (burn_in + n_steps)} force evaluations), {time.perf_counter() - t0:.0f} s")

    re = results["replica exchange"]
    phi_re, _ = phi_psi(re)
    cold = at_temperature(re, 0, phi_re) > 0  # (n_frames, n_ladders): alpha_L at 300 K
    phi_plain, _ = phi_psi(results["plain BAOAB"])
    plain = phi_plain > 0  # (n_frames, n_walkers), every walker at 300 K

    print(f"\nalpha_L (phi > 0) population at {T_COLD:g} K; error: standard error across chains")
    for name, ind, chains in (("replica exchange", cold, f"{n_ladders} ladders"),
                              ("plain BAOAB", plain, f"{n_walkers} walkers")):
        m, se, r, visited = alpha_l_summary(ind)
        print(f"  {name:>17}: {m:.4f} +- {se:.4f}   R-hat {r:.3f}   ({chains}; {visited} visited alpha_L)")
    # Every rung reweighted to 300 K: MBAR over all 8 x n_ladders walkers, error by bootstrap
    # over the ladders (independent chains), so correlation along each walker is accounted for.
    mbar = mbar_tempering(re)
    est = mbar.expectation((phi_re > 0).astype(np.float64), mbar.kT_states[0])
    print(f"  {'MBAR, all rungs':>17}: {est.mean[0]:.4f} +- {est.standard_error[0]:.4f}   "
          f"({N_TEMPERATURES} rungs x {n_ladders} ladders, frame stride {mbar.stride}; "
          "bootstrap over ladders)")

    summary = re.integrator_summary
    acc = swap_acceptance(summary)
    kT = summary["ladder_kT"][0]
    temps = T_COLD * kT / kT[0]
    print("\nswap acceptance per pair (mean +- s.e. over ladders)")
    for k in range(len(acc.mean)):
        print(f"  {temps[k]:6.0f} K <-> {temps[k + 1]:6.0f} K: {acc.mean[k]:.3f} +- {acc.standard_error[k]:.3f}")
    lam = communication_barrier(acc.per_ladder)
    trips = summary["round_trips"].astype(np.float64)
    ps = summary["steps"][0] * inner.timestep
    print(f"communication barrier: {lam.mean():.2f} +- {lam.std(ddof=1) / np.sqrt(lam.size):.2f}")
    print(f"round trips per ladder: {trips.mean():.1f} in {ps:g} ps "
          f"(rate {trips.mean() / ps:.3f} +- {trips.std(ddof=1) / np.sqrt(trips.size) / ps:.3f} per ps)")

    out = Path(args.output)
    text = tempering_section(re, out, unit="kJ/mol")
    text += "\n" + mbar_section(re, out, unit="kJ/mol", mbar=mbar)
    text += "\n" + surface_section(re, out, unit="kJ/mol", mbar=mbar)
    kinetics = kinetics_section(results["plain BAOAB"], out)
    text += "\n" + kinetics
    print("\n" + kinetics.splitlines()[2])  # the plain reading of the slowest timescale
    (out / "report.md").write_text(text)
    print(f"\nreport section: {out / 'report.md'}")


if __name__ == "__main__":
    main()
