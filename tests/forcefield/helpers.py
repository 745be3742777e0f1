"""Shared pieces of the force-field exactness tests: real OpenMM Systems and Reference Contexts."""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB


def reference_energy_forces(system, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenMM Reference energies ``(n,)`` and forces ``(n, atoms, 3)`` for positions ``(n, atoms, 3)`` nm."""
    import openmm
    from openmm import unit

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for x in positions:
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(energies), np.array(forces)


def errors(energy, forces, ref_energy, ref_forces) -> tuple[float, float]:
    """(max relative energy error, max over walkers of max atom-force error / RMS force)."""
    energy, forces = np.asarray(energy, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    e_err = np.max(np.abs(energy - ref_energy) / np.maximum(np.abs(ref_energy), 1.0))
    f_err = np.linalg.norm(forces - ref_forces, axis=-1).max(axis=-1)
    f_rms = np.sqrt((ref_forces**2).sum(-1).mean(-1))
    return float(e_err), float(np.max(f_err / f_rms))


def configurations(x0: np.ndarray, n_perturbed: int, scale: float, seed: int) -> np.ndarray:
    """The structure itself plus ``n_perturbed`` Gaussian perturbations of it (nm)."""
    rng = np.random.default_rng(seed)
    noise = scale * rng.standard_normal((n_perturbed,) + x0.shape)
    return np.concatenate([x0[None], x0[None] + noise])


@functools.lru_cache(maxsize=None)
def alanine() -> tuple:
    """(openmm Topology, positions (22, 3) nm) of the shipped alanine dipeptide."""
    from openmm import app, unit

    pdb = app.PDBFile(ALANINE_DIPEPTIDE_PDB)
    return pdb.topology, np.array(pdb.positions.value_in_unit(unit.nanometer))


@functools.lru_cache(maxsize=None)
def decapeptide() -> tuple:
    """Residues 1–10 of villin headpiece (LSDEDFKAVF) from OpenMM's ``app/data/test.pdb``.

    Water and residues 11–35 are removed, hydrogens are stripped, the missing C-terminal
    oxygen OXT is placed in the C=O plane, and ``Modeller.addHydrogens`` protonates the
    peptide at pH 7 with Amber ff14SB's templates. Returns (openmm Topology, positions nm).
    """
    from openmm import Vec3, app, unit

    path = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")
    pdb = app.PDBFile(path)
    pos = np.array(pdb.positions.value_in_unit(unit.nanometer))
    top = app.Topology()
    chain = top.addChain()
    new_pos = []
    for res in pdb.topology.residues():
        if res.index >= 10:
            break
        r = top.addResidue(res.name, chain, res.id)
        heavy = {a.name: a for a in res.atoms() if a.element is not None and a.element.symbol != "H"}
        for a in heavy.values():
            top.addAtom(a.name, a.element, r)
            new_pos.append(pos[a.index])
        if res.index == 9:
            c, o, ca = (pos[heavy[n].index] for n in ("C", "O", "CA"))
            u = (c - ca) / np.linalg.norm(c - ca) + (c - o) / np.linalg.norm(c - o)
            top.addAtom("OXT", app.Element.getBySymbol("O"), r)
            new_pos.append(c + 0.125 * u / np.linalg.norm(u))
    top.createStandardBonds()
    modeller = app.Modeller(top, [Vec3(*p) for p in new_pos] * unit.nanometer)
    import openmm

    # Reference: addHydrogens minimises hydrogens in a Context, and the default platform may be
    # an OpenCL driver that is not safe here
    modeller.addHydrogens(app.ForceField("amber14-all.xml"), pH=7.0,
                          platform=openmm.Platform.getPlatformByName("Reference"))
    return modeller.topology, np.array(modeller.positions.value_in_unit(unit.nanometer))


def create_system(structure: str, files: tuple, method: str = "NoCutoff", cutoff_nm: float = 1.0):
    """An openmm.System for ``structure`` ("alanine" or "decapeptide") from force-field ``files``."""
    from openmm import app, unit

    topology, positions = alanine() if structure == "alanine" else decapeptide()
    forcefield = app.ForceField(*files)
    system = forcefield.createSystem(topology, nonbondedMethod=getattr(app, method),
                                     nonbondedCutoff=cutoff_nm * unit.nanometer, constraints=None,
                                     rigidWater=False)
    return system, topology, positions


def torch_energy_forces(ff, positions: np.ndarray, dtype=torch.float64):
    x = torch.tensor(positions, dtype=dtype)
    e, f = ff.energy_and_forces(x)
    return e.double().numpy(), f.double().numpy()
