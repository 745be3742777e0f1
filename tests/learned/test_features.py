"""Torch dihedrals and distances against mdtraj on real alanine dipeptide coordinates."""

import mdtraj
import numpy as np
import pytest
import torch

from langevin_md.systems.features import PhiPsi, dihedral, distance, ramachandran_indices
from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB


@pytest.fixture(scope="module")
def traj():
    t = mdtraj.load(ALANINE_DIPEPTIDE_PDB)
    rng = np.random.default_rng(0)
    xyz = t.xyz[0][None] + rng.normal(scale=0.03, size=(20, t.n_atoms, 3)).astype(np.float32)
    return mdtraj.Trajectory(xyz, t.topology)


def test_dihedrals_match_mdtraj(traj):
    quads = np.array([[4, 6, 8, 10], [6, 8, 10, 16], [0, 1, 4, 6], [1, 4, 6, 8], [8, 10, 16, 18]])
    ref = mdtraj.compute_dihedrals(traj, quads)
    x = torch.as_tensor(traj.xyz.astype(np.float64))
    ours = dihedral(x, quads[:, 0], quads[:, 1], quads[:, 2], quads[:, 3])
    assert ours.shape == (20, 5)
    assert np.allclose(ours.numpy(), ref, atol=1e-5)
    one = dihedral(x, *quads[0])
    assert one.shape == (20,) and np.allclose(one.numpy(), ref[:, 0], atol=1e-5)


def test_distances_match_mdtraj(traj):
    pairs = np.array([[0, 21], [4, 6], [8, 18]])
    ref = mdtraj.compute_distances(traj, pairs, periodic=False)
    x = torch.as_tensor(traj.xyz.astype(np.float64))
    assert np.allclose(distance(x, pairs[:, 0], pairs[:, 1]).numpy(), ref, atol=1e-6)


def test_phi_psi_indices_and_gradients(traj):
    phi, psi = ramachandran_indices(traj.topology)
    feats = PhiPsi(phi[0], psi[0])
    x = torch.as_tensor(traj.xyz[:3].astype(np.float64)).requires_grad_(True)
    ref = np.stack([mdtraj.compute_phi(traj)[1][:3, 0], mdtraj.compute_psi(traj)[1][:3, 0]], -1)
    assert np.allclose(feats(x).detach().numpy(), ref, atol=1e-5)
    assert torch.autograd.gradcheck(lambda y: feats(y), (x,))


def test_bad_indices_are_refused():
    x = torch.zeros(2, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="out of range"):
        dihedral(x, 0, 1, 2, 7)
    with pytest.raises(ValueError, match=r"\(\.\.\., n_atoms, 3\)"):
        distance(torch.zeros(2, 4), 0, 1)
