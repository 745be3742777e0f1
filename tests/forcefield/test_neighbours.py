"""Neighbour lists on a skin give the all-pairs masked result, and OpenMM Reference's.

Walkers of a 160-atom decapeptide random-walk (0.02 nm per coordinate per step) so that atoms
cross the skin and the lists are rebuilt several times; at every step energies and forces of
the listed force field equal the all-pairs one (``with_skin(module, None)``) and OpenMM
Reference with ``CutoffNonPeriodic`` to 1e-10 (relative energy; largest atom-force error over
the RMS force), for each term that has a list: ``NonbondedForce``, ``GBSAOBCForce``,
``CustomGBForce`` (OBC2 of ``implicit/obc2.xml``) and ``CustomNonbondedForce``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langevin_md.forcefield.build import compile_forcefield
from langevin_md.forcefield.neighbours import NeighbourList, check_skin, with_skin
from tests.forcefield.helpers import create_system, errors, reference_energy_forces

openmm = pytest.importorskip("openmm")

TOL = 1e-10
CUTOFF = 0.7  # nm: well under the decapeptide's extent, so the lists leave pairs out


def _listed_terms(module):
    return [t for t in module.terms if getattr(t, "neighbours", None) is not None]


def _walk(system, positions, n_walkers=3, n_steps=6, step=0.02, seed=0):
    """Compare listed, all-pairs and Reference along a random walk; return the listed module."""
    listed = compile_forcefield(system)
    dense = with_skin(listed, None)
    assert not _listed_terms(dense)
    rng = np.random.default_rng(seed)
    x = np.repeat(positions[None], n_walkers, 0)
    for _ in range(n_steps):
        x = x + step * rng.standard_normal(x.shape)
        e, f = listed(torch.tensor(x))
        e0, f0 = dense(torch.tensor(x))
        ref_e, ref_f = reference_energy_forces(system, x)
        assert max(errors(e.numpy(), f.numpy(), e0.numpy(), f0.numpy())) < TOL
        assert max(errors(e.numpy(), f.numpy(), ref_e, ref_f)) < TOL
    return listed


@pytest.mark.parametrize("files", [("amber14-all.xml",), ("amber99sbildn.xml", "amber99_obc.xml"),
                                   ("amber14-all.xml", "implicit/obc2.xml")],
                         ids=["nonbonded", "gbsa-obc", "custom-gb-obc2"])
def test_lists_equal_all_pairs_and_reference_across_rebuilds(files):
    system, _, positions = create_system("decapeptide", files, "CutoffNonPeriodic", CUTOFF)
    listed = _walk(system, positions)
    terms = _listed_terms(listed)
    assert len(terms) == len(files)  # the nonbonded term, and the GB term when there is one
    for term in terms:
        nl = term.neighbours
        assert nl.rebuilds >= 2, "the walk must cross the skin"
        assert 0 < nl.selected.shape[0] < nl.first.shape[0], "the list must leave far pairs out"


def test_custom_nonbonded_with_switching():
    system, _, positions = create_system("decapeptide", ("amber14-all.xml",), "CutoffNonPeriodic", CUTOFF)
    force = openmm.CustomNonbondedForce("4*eps*((sig/r)^12-(sig/r)^6); sig=0.5*(s1+s2); eps=sqrt(e1*e2)")
    force.addPerParticleParameter("s")
    force.addPerParticleParameter("e")
    rng = np.random.default_rng(1)
    for _ in range(system.getNumParticles()):
        force.addParticle([rng.uniform(0.1, 0.3), rng.uniform(0.1, 1.0)])
    for k in range(0, system.getNumParticles() - 1, 2):
        force.addExclusion(k, k + 1)
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    force.setCutoffDistance(CUTOFF)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(0.6)
    system.addForce(force)
    listed = _walk(system, positions)
    assert "custom_nonbonded" in [t.kind for t in _listed_terms(listed)]


def test_a_new_walker_count_rebuilds_and_stays_exact():
    system, _, positions = create_system("decapeptide", ("amber14-all.xml", "implicit/obc2.xml"),
                                         "CutoffNonPeriodic", CUTOFF)
    listed = compile_forcefield(system)
    dense = with_skin(listed, None)
    x = torch.tensor(positions)[None].repeat(4, 1, 1)
    x[1:] += 0.01 * torch.randn(3, *positions.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    for batch in (x, x[2:3], x):
        e, f = listed(batch)
        e0, f0 = dense(batch)
        assert max(errors(e.numpy(), f.numpy(), e0.numpy(), f0.numpy())) < TOL
    assert all(t.neighbours.rebuilds == 3 for t in _listed_terms(listed))


def test_no_cutoff_has_no_list():
    system, _, _ = create_system("decapeptide", ("amber14-all.xml", "implicit/obc2.xml"), "NoCutoff")
    assert not _listed_terms(compile_forcefield(system))


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), "0.2", True])
def test_bad_skin_is_refused_by_value(bad):
    with pytest.raises(ValueError, match="skin"):
        check_skin(bad)
    with pytest.raises(ValueError, match="skin"):
        NeighbourList(torch.zeros(1, dtype=torch.int64), torch.ones(1, dtype=torch.int64), 1.0, bad)
