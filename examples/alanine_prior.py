"""Alanine dipeptide with the Amber force field plus a learned prior on (phi, psi).

1. "Experimental" (phi, psi) samples concentrated in the right-handed helix region alpha_R
   (synthetic here: wrapped normals around (-63, -43) degrees).
2. A periodic EnergyMLP is fitted to them by denoising score matching (energy in kJ/mol at
   300 K), and wrapped as a FeaturePrior: the network sees (phi, psi) computed by
   differentiable torch code from the Cartesian positions, so its forces reach the atoms by
   autograd.
3. The torch executor samples the force field alone and ff + lam * prior with BAOAB
   (OpenMM forces through OpenMMSystem, prior forces through autograd), from the C7eq
   structure. We print the Ramachandran populations of both and save a PNG.

Run:  python examples/alanine_prior.py [--quick] [--output alanine_prior.png]
"""

import argparse

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.systems.features import PhiPsi, ramachandran_indices
from langevin_md.systems.molecules import alanine_dipeptide
from langevin_md.systems.torch_models import FeaturePrior
from langevin_md.training import EnergyMLP, fit, geometric_sigmas


def regions(phi, psi):
    """Populations of alpha_R, beta/C7eq and the phi > 0 (alpha_L / C7ax) region; angles in rad."""
    phi, psi = np.rad2deg(phi), np.rad2deg(psi)
    left = phi < 0
    alpha_r = left & (psi > -120) & (psi < 50)
    beta = left & ~alpha_r
    return {"alpha_R": alpha_r.mean(), "beta/C7eq": beta.mean(), "phi>0": (~left).mean()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--output", default="alanine_prior.png", help="Ramachandran plots (PNG)")
    parser.add_argument("--strength", type=float, default=1.0, help="lambda, the prior's weight")
    args = parser.parse_args(argv)
    q = args.quick

    ff = alanine_dipeptide(solvent="vacuum", temperature=300.0, platform="Reference")
    phi_idx, psi_idx = ramachandran_indices(ff.topology)
    features = PhiPsi(phi_idx[0], psi_idx[0])

    rng = np.random.default_rng(0)
    centre = np.deg2rad([-63.0, -43.0])
    angles = centre + np.deg2rad(15.0) * rng.normal(size=(500 if q else 4000, 2))
    angles = (angles + np.pi) % (2 * np.pi) - np.pi
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = EnergyMLP((2,), hidden=32, n_layers=2, periodic=True, kT=ff.kT).double()
    res = fit(net, angles, geometric_sigmas(1.0, 0.05, 6), epochs=2 if q else 40, batch_size=256,
              learning_rate=3e-3, patience=8, seed=0)
    print(f"prior fitted: {len(res.train_loss)} epochs, validation loss {res.best_validation_loss:.4f}")
    prior = FeaturePrior(net, features, ff.event_shape, kT=ff.kT)

    n_walkers, burn_in, n_steps = (2, 5, 20) if q else (16, 2000, 20000)
    integ = lmd.integrators.BAOAB(timestep=0.001, friction=5.0)  # ps, 1/ps; no constraints
    out = {}
    for name, system in (("force field", ff), (f"ff + {args.strength:g} * prior", ff + args.strength * prior)):
        r = lmd.sample(system, integ, n_steps=n_steps, n_walkers=n_walkers, burn_in=burn_in,
                       record_every=10 if not q else 1, seed=0)
        x = torch.as_tensor(r.positions.reshape((-1,) + ff.event_shape))
        with torch.no_grad():
            pp = features(x).numpy()
        out[name] = pp
        pops = regions(pp[:, 0], pp[:, 1])
        print(f"{name:>22}: " + ", ".join(f"{k} {v:.2f}" for k, v in pops.items())
              + f"   ({len(pp)} frames, {r.wall_time:.1f} s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, (name, pp) in zip(axes, out.items()):
        ax.scatter(np.rad2deg(pp[:, 0]), np.rad2deg(pp[:, 1]), s=2, alpha=0.3)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        ax.set_xlabel("phi (deg)")
        ax.set_title(name)
    axes[0].set_ylabel("psi (deg)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return out


if __name__ == "__main__":
    main()
