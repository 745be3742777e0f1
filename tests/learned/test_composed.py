"""A force field plus a learned prior on (phi, psi): the sum's energy and forces are the sum of
its parts, and the torch executor runs it."""

import numpy as np
import openmm  # noqa: F401  (a hard dependency: a broken install fails here, not skips)
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems.features import PhiPsi, ramachandran_indices
from langevin_md.systems.molecules import alanine_dipeptide
from langevin_md.systems.torch_models import FeaturePrior
from langevin_md.learned.models import EnergyMLP


@pytest.fixture(scope="module")
def parts():
    ff = alanine_dipeptide(solvent="vacuum", temperature=300.0, platform="Reference")
    phi, psi = ramachandran_indices(ff.topology)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = EnergyMLP((2,), hidden=16, n_layers=2, periodic=True, kT=ff.kT).double()
    prior = FeaturePrior(net, PhiPsi(phi[0], psi[0]), ff.event_shape, kT=ff.kT)
    return ff, prior


def test_sum_energy_and_forces_equal_the_sum_of_the_parts(parts):
    ff, prior = parts
    lam = 0.7
    total = ff + lam * prior
    rng = np.random.default_rng(0)
    x = torch.as_tensor(ff.positions[None] + rng.normal(scale=0.005, size=(4,) + ff.event_shape))
    e, f = total.energy_and_forces(x)
    e_ff, f_ff = ff.energy_and_forces(x)
    e_p, f_p = prior.energy_and_forces(x)
    assert torch.allclose(e, e_ff + lam * e_p, rtol=1e-12, atol=1e-9)
    assert torch.allclose(f, f_ff + lam * f_p, rtol=1e-12, atol=1e-9)
    assert total.masses is ff.masses and total.kT == ff.kT
    # the prior's forces act on the dihedral atoms only (5 distinct: C, N, CA, C, N)
    moved = (f_p.abs().sum(-1) > 0).sum(-1)
    assert torch.all(moved == 5)


def test_torch_executor_samples_ff_plus_prior(parts):
    ff, prior = parts
    res = lmd.sample(ff + 0.5 * prior, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=20,
                     n_walkers=2, seed=0)
    assert res.positions.shape == (20, 2, 22, 3) and np.isfinite(res.energies).all()
