"""Polyalanine builds offline, ships as described, and its cutoff force field is exact.

- the shipped structures have the documented sizes, are L-alanine helices (DSSP) and the
  bundle is compact (radius of gyration ≈ 1 nm, like villin headpiece);
- a length that does not ship is built on the fly (ideal internal coordinates +
  ``addHydrogens`` + minimisation);
- ``polyalanine(..., nonbonded_cutoff=...)`` on the torch engine (neighbour lists) equals
  OpenMM Reference on the same ``CutoffNonPeriodic`` System to 1e-10 as walkers move across
  the skin, in vacuum and in OBC2;
- bad arguments are refused with the value named.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.systems.peptides import shipped_structure
from tests.forcefield.helpers import errors, reference_energy_forces

pytest.importorskip("openmm")
md = pytest.importorskip("mdtraj")


@pytest.mark.parametrize("n, fold, atoms", [(20, "helix", 212), (57, "helix", 582), (57, "bundle", 582)])
def test_shipped_structures(n, fold, atoms):
    path = shipped_structure(n, fold)
    assert path is not None
    traj = md.load(path)
    assert traj.n_atoms == atoms == 10 * n + 12
    ss = "".join(md.compute_dssp(traj)[0])
    assert ss.count("H") >= (0.8 if fold == "helix" else 0.75) * n, ss
    rg = float(md.compute_rg(traj)[0])
    assert (0.9 < rg < 1.1) if fold == "bundle" else rg > 0.9, rg


def test_an_unshipped_length_is_built():
    assert shipped_structure(3, "helix") is None
    system = lmd.systems.polyalanine(n_residues=3, engine="openmm")
    assert system.event_shape == (42, 3)
    x = torch.tensor(system.positions)[None]
    e, _ = system.energy_and_forces(x)
    assert np.isfinite(e.numpy()).all()


@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
def test_cutoff_torch_engine_equals_reference_across_rebuilds(solvent):
    torch_ff = lmd.systems.polyalanine(20, solvent=solvent, nonbonded_cutoff=0.8, engine="torch")
    bridge = lmd.systems.polyalanine(20, solvent=solvent, nonbonded_cutoff=0.8, engine="openmm")
    listed = [t for t in torch_ff.module.terms if getattr(t, "neighbours", None) is not None]
    assert len(listed) == (1 if solvent == "vacuum" else 2)
    rng = np.random.default_rng(0)
    x = np.repeat(np.asarray(torch_ff.positions)[None], 2, 0)
    for _ in range(5):
        x = x + 0.025 * rng.standard_normal(x.shape)
        e, f = torch_ff.energy_and_forces(torch.tensor(x))
        ref_e, ref_f = reference_energy_forces(bridge.openmm_system, x)
        assert max(errors(e.numpy(), f.numpy(), ref_e, ref_f)) < 1e-10
    assert all(t.neighbours.rebuilds >= 2 for t in listed)


def test_no_cutoff_is_all_pairs():
    ff = lmd.systems.polyalanine(20, solvent="implicit", engine="torch")
    assert all(getattr(t, "neighbours", None) is None for t in ff.module.terms)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_residues=0), "n_residues"), (dict(n_residues=2.0), "n_residues"),
    (dict(fold="sheet"), "fold"), (dict(solvent="obc"), "solvent"),
    (dict(nonbonded_cutoff=-1.0), "nonbonded_cutoff"), (dict(nonbonded_cutoff="1"), "nonbonded_cutoff"),
    (dict(constraints="AllBonds"), "constraints"), (dict(n_residues=10, fold="bundle"), "n_residues >= 18"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lmd.systems.polyalanine(**kwargs)
