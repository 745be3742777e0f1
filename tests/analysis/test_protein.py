"""Protein analysis on a real short trajectory of villin HP35 (35 residues) run with OpenMM."""

import csv

import numpy as np
import pytest

mdtraj = pytest.importorskip("mdtraj")
openmm = pytest.importorskip("openmm")
from openmm import app, unit  # noqa: E402

from langevin_md.analysis.protein import (backbone_dihedrals, n_phi_psi_residues, protein_report,  # noqa: E402
                                          radius_of_gyration,
                                          rmsd_to_start, secondary_structure, series_statistics,
                                          walker_trajectory)
from langevin_md.result import SampleResult  # noqa: E402

N_WALKERS, N_FRAMES, EVERY = 3, 30, 10


@pytest.fixture(scope="module")
def villin():
    """Villin headpiece from OpenMM's test.pdb, solvent stripped, Amber ff14SB in vacuum; three
    walkers of LangevinMiddle dynamics from the minimised structure (real OpenMM Context)."""
    import os

    pdb = app.PDBFile(os.path.join(os.path.dirname(app.__file__), "data", "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete([r for r in modeller.topology.residues() if r.name in ("HOH", "Cl", "CL", "NA")])
    system = app.ForceField("amber14-all.xml").createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                                            constraints=app.HBonds)
    integrator = openmm.LangevinMiddleIntegrator(300.0, 5.0, 0.002)
    integrator.setRandomNumberSeed(7)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 50.0, 100)
    start = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    top = mdtraj.Topology.from_openmm(modeller.topology)
    walkers = []
    for w in range(N_WALKERS):
        context.setPositions(start)
        context.setVelocitiesToTemperature(300.0, 1 + w)
        xyz = []
        for _ in range(N_FRAMES):
            integrator.step(EVERY)
            xyz.append(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        walkers.append(mdtraj.Trajectory(np.array(xyz, dtype=np.float32), top))
    return walkers, np.asarray(start), top


def test_observables_follow_mdtraj_walker_by_walker(villin):
    walkers, start, top = villin
    wt = walker_trajectory(walkers)
    assert (wt.n_frames, wt.n_walkers) == (N_FRAMES, N_WALKERS)
    assert n_phi_psi_residues(top) == 33
    dih = backbone_dihedrals(wt)
    # 35 residues: the two ends lack φ or ψ
    assert len(dih.residues) == 33 and dih.residues[0] == "SER2" and dih.phi.shape == (N_FRAMES, N_WALKERS, 33)
    # walker 1, residue ASP3: the same numbers as mdtraj on that walker alone
    idx, phi = mdtraj.compute_phi(walkers[1])
    k = [i for i, q in enumerate(idx) if str(top.atom(q[1]).residue) == "ASP3"][0]
    np.testing.assert_allclose(dih.phi[:, 1, dih.residues.index("ASP3")], np.degrees(phi[:, k]), atol=1e-4)

    rg = radius_of_gyration(wt)
    xyz = walkers[2].xyz.astype(np.float64)
    direct = np.sqrt(((xyz - xyz.mean(axis=1, keepdims=True)) ** 2).sum(-1).mean(-1))
    np.testing.assert_allclose(rg[:, 2], direct, rtol=1e-5)
    assert 0.8 < rg.mean() < 1.1  # villin HP35 is compact, Rg ≈ 0.95 nm

    rmsd = rmsd_to_start(wt, reference=start)
    assert rmsd.shape == (N_FRAMES, N_WALKERS) and (rmsd > 0).all() and rmsd.max() < 0.3
    assert rmsd_to_start(walker_trajectory(walkers[0]))[0, 0] == pytest.approx(0.0, abs=1e-3)  # float32 coordinates

    ss = secondary_structure(wt)
    assert len(ss.residues) == 35 and ss.codes.shape == (N_FRAMES, N_WALKERS, 35)
    # villin's three helices survive a short run; no strands
    assert 0.4 < ss.helix.mean() < 0.8 and ss.strand.max() == 0.0
    for key in ("H", "E", "C"):
        assert ss.fractions[key].shape == (35,)
    np.testing.assert_allclose(ss.fractions["H"] + ss.fractions["E"] + ss.fractions["C"], 1.0)


def test_report_from_a_sample_result(villin, tmp_path):
    walkers, start, top = villin
    positions = np.stack([w.xyz for w in walkers], axis=1).astype(np.float64)  # (frames, walkers, atoms, 3)
    result = SampleResult(positions=positions, energies=np.zeros(positions.shape[:2]),
                          steps=EVERY * np.arange(1, N_FRAMES + 1), kT=2.494, metadata={"topology": top})
    report = protein_report(result, tmp_path / "protein", reference=start)
    for key in ("ramachandran", "ramachandran_per_residue", "rmsd_rg", "dssp"):
        with open(report.files[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(report.files["table_csv"], newline="") as f:
        rows = {r["observable"]: r for r in csv.DictReader(f)}
    assert {"RMSD to start", "radius of gyration", "helix fraction (DSSP)", "phi ASP3", "psi ASP3"} <= set(rows)
    assert len(rows) == 4 + 2 * 33
    rg = rows["radius of gyration"]
    assert float(rg["mean"]) == pytest.approx(report.radius_of_gyration.mean(), rel=1e-3)
    assert float(rg["rhat"]) >= 0.9 and float(rg["ess"]) > 0
    assert "| phi ASP3 | deg |" in open(report.files["table_md"]).read()


def test_statistics_tell_walkers_that_disagree_apart():
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(200, 4))
    apart = mixed + np.array([0.0, 0.0, 5.0, 5.0])  # two walkers sit elsewhere
    assert series_statistics("x", mixed, "nm").rhat < 1.05
    assert series_statistics("x", apart, "nm").rhat > 1.5
    # angles: walkers at +179 and −179 degrees agree on the circle
    wrapped = np.where(rng.random((200, 4)) < 0.5, 179.0, -179.0) + rng.normal(0, 0.5, (200, 4))
    s = series_statistics("phi", wrapped, "deg", period=360.0)
    assert abs(abs(s.mean) - 180.0) < 1.0 and s.sd < 3.0 and s.rhat < 1.05


def test_bad_input_is_named(villin, tmp_path):
    walkers, start, top = villin
    with pytest.raises(TypeError, match="SampleResult, an mdtraj.Trajectory"):
        walker_trajectory(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="equally long"):
        walker_trajectory([walkers[0], walkers[1][:5]])
    with pytest.raises(ValueError, match="molecular result"):
        walker_trajectory(SampleResult(positions=np.zeros((4, 2, 3)), energies=np.zeros((4, 2)),
                                       steps=np.arange(4), kT=1.0))
    with pytest.raises(ValueError, match="matches no atoms"):
        rmsd_to_start(walker_trajectory(walkers[0]), selection="resname XYZ")
    with pytest.raises(ValueError, match="reference must have shape"):
        rmsd_to_start(walker_trajectory(walkers[0]), reference=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="max_residue_panels"):
        protein_report(walkers, tmp_path, max_residue_panels=0)


def test_alanine_dipeptide_has_one_phi_psi_residue():
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    assert n_phi_psi_residues(mdtraj.load(ALANINE_DIPEPTIDE_PDB).topology) == 1
    with pytest.raises(TypeError, match="mdtraj.Topology"):
        n_phi_psi_residues("ala2")
