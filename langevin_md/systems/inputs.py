"""Systems from the input files users already have: Amber, GROMACS and CHARMM.

Each builder reads its files with OpenMM's own readers (``AmberPrmtopFile``,
``GromacsTopFile``, ``CharmmPsfFile``) and returns an
:class:`~langevin_md.systems.openmm_system.OpenMMSystem`:

* :func:`from_amber` — ``prmtop`` + ``inpcrd``/``rst7``;
* :func:`from_gromacs` — ``top`` + ``gro``;
* :func:`from_charmm` — ``psf`` + parameter files (``.prm``/``.rtf``/``.str``) + coordinates
  (``.crd`` or ``.pdb``).

Solvent is a decision, not a side effect
----------------------------------------
A structure prepared for explicit-solvent MD has waters, ions and a periodic box, and a
Langevin sampler of a small molecule usually wants none of them. Whether to keep them changes
the physics (and the cost: PME on a box of water is most of the work), so when the input has
waters, ions or a periodic box, the builders refuse to guess and ask for one of:

* ``strip=[...]`` — residue names to delete (``strip="solvent"`` deletes every water and
  monatomic ion the builder recognises; see :data:`WATER_RESIDUES`, :data:`ION_RESIDUES`).
  What remains is simulated in vacuum (``NoCutoff``) unless ``nonbonded_method`` says
  otherwise, with the box dropped;
* ``nonbonded_method="PME"`` (or ``"CutoffPeriodic"``, ``"Ewald"``, ``"LJPME"``,
  ``"CutoffNonPeriodic"``, ``"NoCutoff"``) — keep everything, with exactly that method.

A box record alone never switches anything to PME. Inputs with neither waters, ions nor a
box default to ``NoCutoff``.

Physical arguments (temperature, cutoff, box lengths) accept ``openmm.unit`` Quantities,
converted by :func:`langevin_md.units.strip`; plain numbers are K and nm.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from langevin_md.systems.engines import check_engine, finish_molecule, openmm_options
from langevin_md.systems.solvent import (ION_RESIDUES, WATER_RESIDUES, has_box, require_solvent_choice,
                                          solvent_residues)
from langevin_md.units import strip as strip_units

__all__ = ["from_pdb", "from_xml", "from_amber", "from_gromacs", "from_charmm", "WATER_RESIDUES", "ION_RESIDUES", "NONBONDED_METHODS",
           "solvent_residues", "require_solvent_choice"]

PathLike = Union[str, os.PathLike]

#: Nonbonded methods accepted by name (OpenMM's ``app`` constants).
NONBONDED_METHODS = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME")
_PERIODIC = ("CutoffPeriodic", "Ewald", "PME", "LJPME")
_IMPLICIT = (None, "HCT", "OBC1", "OBC2", "GBn", "GBn2")
_CONSTRAINTS = (None, "HBonds", "AllBonds", "HAngles")


# --------------------------------------------------------------------------- checks
def _existing(path: PathLike, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a file path, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    return str(p)


def _check_common(nonbonded_method, constraints, strip):
    if nonbonded_method is not None and nonbonded_method not in NONBONDED_METHODS:
        raise ValueError(f"nonbonded_method must be one of {NONBONDED_METHODS} or None, got {nonbonded_method!r}")
    if constraints not in _CONSTRAINTS:
        raise ValueError(f"constraints must be one of {_CONSTRAINTS}, got {constraints!r}")
    if strip is None or strip == "solvent":
        return strip
    if isinstance(strip, str) or not all(isinstance(s, str) for s in strip):
        raise TypeError(f"strip must be 'solvent' or a list of residue names such as ['HOH', 'NA', 'CL'], got {strip!r}")
    return list(strip)


def _method(name: Optional[str]):
    from openmm import app

    return app.NoCutoff if name is None else getattr(app, name)


def _strip_names(topology, strip) -> set:
    present = {r.name for r in topology.residues()}
    if strip == "solvent":
        names = {n for n in present if n in WATER_RESIDUES or n in ION_RESIDUES}
        if not names:
            raise ValueError("strip='solvent' but the structure has no water or ion residues "
                             f"(residue names: {sorted(present)})")
        return names
    missing = [s for s in strip if s not in present]
    if missing:
        raise ValueError(f"strip names residue(s) {missing} that are not in the structure; its residue names are "
                         f"{sorted(present)}")
    return set(strip)


# --------------------------------------------------------------------------- stripping
def _subset_force(force, keep: np.ndarray, new_index: np.ndarray):
    """A copy of ``force`` restricted to the kept particles (None for forces to drop)."""
    import openmm

    def mapped(indices, what):
        k = [bool(keep[i]) for i in indices]
        if all(k):
            return [int(new_index[i]) for i in indices]
        if any(k):
            raise ValueError(
                f"a {type(force).__name__} {what} joins kept particles to stripped ones (particles "
                f"{list(indices)}); strip whole molecules only"
            )
        return None

    name = type(force).__name__
    if isinstance(force, openmm.CMMotionRemover):
        return openmm.CMMotionRemover(force.getFrequency())
    if isinstance(force, openmm.HarmonicBondForce):
        out = openmm.HarmonicBondForce()
        for b in range(force.getNumBonds()):
            i, j, r0, k = force.getBondParameters(b)
            idx = mapped((i, j), "bond")
            if idx:
                out.addBond(*idx, r0, k)
        return out
    if isinstance(force, openmm.HarmonicAngleForce):
        out = openmm.HarmonicAngleForce()
        for a in range(force.getNumAngles()):
            i, j, k, theta, kk = force.getAngleParameters(a)
            idx = mapped((i, j, k), "angle")
            if idx:
                out.addAngle(*idx, theta, kk)
        return out
    if isinstance(force, openmm.PeriodicTorsionForce):
        out = openmm.PeriodicTorsionForce()
        for t in range(force.getNumTorsions()):
            i, j, k, l, n, phase, kk = force.getTorsionParameters(t)
            idx = mapped((i, j, k, l), "torsion")
            if idx:
                out.addTorsion(*idx, n, phase, kk)
        return out
    if isinstance(force, (openmm.CustomBondForce, openmm.CustomTorsionForce)):
        is_bond = isinstance(force, openmm.CustomBondForce)
        out = type(force)(force.getEnergyFunction())
        for p in range(force.getNumPerBondParameters() if is_bond else force.getNumPerTorsionParameters()):
            out.addPerBondParameter(force.getPerBondParameterName(p)) if is_bond else \
                out.addPerTorsionParameter(force.getPerTorsionParameterName(p))
        for g in range(force.getNumGlobalParameters()):
            out.addGlobalParameter(force.getGlobalParameterName(g), force.getGlobalParameterDefaultValue(g))
        n_terms = force.getNumBonds() if is_bond else force.getNumTorsions()
        for t in range(n_terms):
            *particles, params = force.getBondParameters(t) if is_bond else force.getTorsionParameters(t)
            idx = mapped(tuple(particles), "term")
            if idx:
                (out.addBond if is_bond else out.addTorsion)(*idx, params)
        return out
    if isinstance(force, openmm.CMAPTorsionForce):
        out = openmm.CMAPTorsionForce()
        for m in range(force.getNumMaps()):
            size, energy = force.getMapParameters(m)
            out.addMap(size, energy)
        for t in range(force.getNumTorsions()):
            m, a1, a2, a3, a4, b1, b2, b3, b4 = force.getTorsionParameters(t)
            idx = mapped((a1, a2, a3, a4, b1, b2, b3, b4), "CMAP torsion")
            if idx:
                out.addTorsion(m, *idx)
        return out
    if isinstance(force, openmm.NonbondedForce):
        if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
            raise ValueError("cannot strip a NonbondedForce with parameter offsets; keep the solvent instead")
        out = openmm.NonbondedForce()
        out.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
        for i in np.nonzero(keep)[0]:
            out.addParticle(*force.getParticleParameters(int(i)))
        for e in range(force.getNumExceptions()):
            i, j, q, s, eps = force.getExceptionParameters(e)
            idx = mapped((i, j), "exception")
            if idx:
                out.addException(*idx, q, s, eps)
        return out
    raise ValueError(
        f"cannot strip solvent from a System with a {name}: only standard bonded, CMAP, nonbonded and "
        "custom bond/torsion forces can be restricted to the kept atoms. Keep the solvent with an explicit "
        "nonbonded_method instead"
    )


def _strip(system, topology, positions, names: set):
    """(System, Topology, positions) without the residues called ``names``; vacuum, no box."""
    import openmm
    from openmm import app, unit

    n = system.getNumParticles()
    keep = np.ones(n, dtype=bool)
    for r in topology.residues():
        if r.name in names:
            for a in r.atoms():
                keep[a.index] = False
    if not keep.any():
        raise ValueError(f"strip={sorted(names)} would delete every atom")
    new_index = np.cumsum(keep) - 1
    out = openmm.System()
    for i in np.nonzero(keep)[0]:
        out.addParticle(system.getParticleMass(int(i)))
    for c in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(c)
        if keep[i] and keep[j]:
            out.addConstraint(int(new_index[i]), int(new_index[j]), d)
        elif keep[i] or keep[j]:
            raise ValueError(f"a constraint joins kept particle to stripped one ({i}, {j}); strip whole molecules only")
    for f in range(system.getNumForces()):
        g = _subset_force(system.getForce(f), keep, new_index)
        if g is not None:
            g.setForceGroup(system.getForce(f).getForceGroup())
            out.addForce(g)
    modeller = app.Modeller(topology, positions)
    modeller.delete([r for r in topology.residues() if r.name in names])
    modeller.topology.setPeriodicBoxVectors(None)
    pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    return out, modeller.topology, pos


# --------------------------------------------------------------------------- shared tail
def _finish(create, topology, positions, box, strip, nonbonded_method, nonbonded_cutoff, temperature, platform,
            precision, device_index, source, engine, hydrogen_mass):
    """Decide solvent, create the System through the reader's ``create(method, cutoff)``, wrap
    it, and finish it as ``engine`` and ``hydrogen_mass`` say."""
    from openmm import unit

    from langevin_md.systems.openmm_system import OpenMMSystem

    require_solvent_choice(topology, box, strip, nonbonded_method, source)
    cutoff = strip_units(nonbonded_cutoff, "nanometer")
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise ValueError(f"nonbonded_cutoff must be a positive length in nm, got {nonbonded_cutoff!r}")
    if strip is None and nonbonded_method in _PERIODIC and not has_box(box):
        raise ValueError(f"nonbonded_method={nonbonded_method!r} needs a periodic box, and {source} has none"
                         + (" (pass box=(a, b, c) in nm)" if "psf" in source else ""))
    if strip is not None:
        if nonbonded_method not in (None, "NoCutoff"):
            raise ValueError(f"strip leaves the rest in vacuum with the box dropped, so nonbonded_method must be None "
                             f"or 'NoCutoff' with it, got {nonbonded_method!r}; keep the solvent to run periodic")
        names = _strip_names(topology, strip)
        full = create(_method("NoCutoff"), cutoff * unit.nanometer)
        system, topology, positions = _strip(full, topology, positions, names)
    else:
        system = create(_method(nonbonded_method), cutoff * unit.nanometer)
    built = OpenMMSystem(system, topology, positions, temperature, platform, precision, device_index)
    return finish_molecule(built, engine, hydrogen_mass, openmm_options(platform, precision, device_index))


def _constraint(name):
    from openmm import app

    return None if name is None else getattr(app, name)


# --------------------------------------------------------------------------- readers
def from_pdb(pdb_path: PathLike, forcefield: Sequence[str] = ("amber14-all.xml", "implicit/obc2.xml"),
             temperature=300.0, constraints: Optional[str] = None, platform: str = "auto",
             precision: Optional[str] = None, device_index: Optional[int] = None, trusted: bool = False,
             strip=None, nonbonded_method: Optional[str] = None, engine: str = "openmm", hydrogen_mass=None):
    """A molecule from a PDB/PDBx file and OpenMM force-field XML files (config name ``openmm_pdb``).

    :meth:`OpenMMSystem.from_pdb <langevin_md.systems.openmm_system.OpenMMSystem.from_pdb>`
    (every argument but the last two, with the same meaning), then ``engine`` and
    ``hydrogen_mass`` as in :func:`from_amber`.

    Returns
    -------
    OpenMMSystem or TorchForceField
    """
    from langevin_md.systems.openmm_system import OpenMMSystem

    check_engine(engine)
    built = OpenMMSystem.from_pdb(pdb_path, forcefield, temperature, constraints, platform, precision, device_index,
                                  trusted, strip, nonbonded_method)
    return finish_molecule(built, engine, hydrogen_mass, openmm_options(platform, precision, device_index))


def from_xml(system_xml_path: PathLike, pdb_path_or_topology, temperature=300.0, platform: str = "auto",
             precision: Optional[str] = None, device_index: Optional[int] = None, trusted: bool = False,
             engine: str = "openmm", hydrogen_mass=None):
    """A molecule from a serialized ``openmm.System`` and a structure file (config name ``openmm_xml``).

    :meth:`OpenMMSystem.from_xml <langevin_md.systems.openmm_system.OpenMMSystem.from_xml>`
    with the structure's own positions, then ``engine`` and ``hydrogen_mass`` as in
    :func:`from_amber`.

    Returns
    -------
    OpenMMSystem or TorchForceField
    """
    from langevin_md.systems.openmm_system import OpenMMSystem

    check_engine(engine)
    built = OpenMMSystem.from_xml(system_xml_path, pdb_path_or_topology, None, temperature, platform, precision,
                                  device_index, trusted)
    return finish_molecule(built, engine, hydrogen_mass, openmm_options(platform, precision, device_index))


def from_amber(prmtop: PathLike, inpcrd: PathLike, temperature=300.0, strip=None,
               nonbonded_method: Optional[str] = None, nonbonded_cutoff=1.0, constraints: Optional[str] = None,
               implicit_solvent: Optional[str] = None, platform: str = "auto", precision: Optional[str] = None,
               device_index: Optional[int] = None, engine: str = "openmm", hydrogen_mass=None):
    """An :class:`OpenMMSystem` from Amber ``prmtop`` and ``inpcrd``/``rst7`` files.

    Parameters
    ----------
    prmtop, inpcrd : str or PathLike
        Topology/parameters and coordinates (box read from the coordinates when present).
    temperature : float or Quantity
        K.
    strip : "solvent" or list of str, optional
        Residue names to delete (see the module docstring); the rest runs in vacuum.
    nonbonded_method : {"NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME"}, optional
        Required when the input has waters, ions or a box and ``strip`` is not given.
    nonbonded_cutoff : float or Quantity
        nm, for cutoff methods.
    constraints : {None, "HBonds", "AllBonds", "HAngles"}
        None keeps every bond flexible (water too), as the torch executor needs.
    implicit_solvent : {None, "HCT", "OBC1", "OBC2", "GBn", "GBn2"}
        Amber generalized-Born model.
    platform, precision, device_index
        See :class:`~langevin_md.systems.openmm_system.OpenMMSystem`.
    engine : {"openmm", "auto", "torch"}
        Who evaluates energies and forces (:func:`~langevin_md.systems.engines.choose_engine`).
        The input builders default to ``"openmm"`` (any force OpenMM reads); ``"auto"`` and
        ``"torch"`` give the batched torch force field where it has every force.
    hydrogen_mass : float or openmm Quantity, optional
        amu: repartition hydrogen masses (:mod:`langevin_md.systems.hmr`).

    Returns
    -------
    OpenMMSystem or TorchForceField
    """
    from openmm import app

    check_engine(engine)
    strip = _check_common(nonbonded_method, constraints, strip)
    if implicit_solvent not in _IMPLICIT:
        raise ValueError(f"implicit_solvent must be one of {_IMPLICIT}, got {implicit_solvent!r}")
    prm = app.AmberPrmtopFile(_existing(prmtop, "prmtop"))
    crd = app.AmberInpcrdFile(_existing(inpcrd, "inpcrd"))
    topology = prm.topology
    box = crd.boxVectors if crd.boxVectors is not None else topology.getPeriodicBoxVectors()
    if has_box(box):
        topology.setPeriodicBoxVectors(box)
    if topology.getNumAtoms() != len(crd.positions):
        raise ValueError(f"{prmtop} has {topology.getNumAtoms()} atoms but {inpcrd} has {len(crd.positions)} positions")

    def create(method, cutoff):
        return prm.createSystem(nonbondedMethod=method, nonbondedCutoff=cutoff, constraints=_constraint(constraints),
                                rigidWater=constraints is not None,
                                implicitSolvent=None if implicit_solvent is None else getattr(app, implicit_solvent))

    return _finish(create, topology, crd.positions, box, strip, nonbonded_method, nonbonded_cutoff, temperature,
                   platform, precision, device_index, f"{os.fspath(prmtop)}/{os.fspath(inpcrd)}", engine,
                   hydrogen_mass)


def from_gromacs(top: PathLike, gro: PathLike, temperature=300.0, strip=None, nonbonded_method: Optional[str] = None,
                 nonbonded_cutoff=1.0, constraints: Optional[str] = None, include_dir: Optional[PathLike] = None,
                 platform: str = "auto", precision: Optional[str] = None, device_index: Optional[int] = None,
                 engine: str = "openmm", hydrogen_mass=None):
    """An :class:`OpenMMSystem` from GROMACS ``top`` and ``gro`` files.

    Every ``.gro`` file ends with a box line, so a molecule in vacuum needs
    ``nonbonded_method="NoCutoff"`` (or ``strip``) to say the box is not meant.

    Parameters
    ----------
    top, gro : str or PathLike
    include_dir : str or PathLike, optional
        Where ``#include`` files (force fields) are found; OpenMM's default is
        ``/usr/local/gromacs/share/gromacs/top``. Self-contained topologies need none.
    temperature, strip, nonbonded_method, nonbonded_cutoff, constraints, platform, precision, device_index, engine, hydrogen_mass
        As in :func:`from_amber`.
    """
    from openmm import app

    check_engine(engine)
    strip = _check_common(nonbonded_method, constraints, strip)
    gro_file = app.GromacsGroFile(_existing(gro, "gro"))
    box = gro_file.getPeriodicBoxVectors()
    inc = None if include_dir is None else os.fspath(include_dir)
    if inc is not None and not os.path.isdir(inc):
        raise FileNotFoundError(f"include_dir {inc!r} is not a directory")
    try:
        top_file = app.GromacsTopFile(_existing(top, "top"), periodicBoxVectors=box if has_box(box) else None,
                                      includeDir=inc)
    except (ValueError, OSError) as exc:
        raise ValueError(f"OpenMM could not read {os.fspath(top)!r}: {exc}. If it #includes force-field files, "
                         "pass include_dir=") from None
    topology = top_file.topology
    if topology.getNumAtoms() != len(gro_file.positions):
        raise ValueError(f"{top} has {topology.getNumAtoms()} atoms but {gro} has {len(gro_file.positions)} positions")

    def create(method, cutoff):
        return top_file.createSystem(nonbondedMethod=method, nonbondedCutoff=cutoff,
                                     constraints=_constraint(constraints), rigidWater=constraints is not None)

    return _finish(create, topology, gro_file.positions, box, strip, nonbonded_method, nonbonded_cutoff, temperature,
                   platform, precision, device_index, f"{os.fspath(top)}/{os.fspath(gro)}", engine, hydrogen_mass)


def from_charmm(psf: PathLike, parameter_files: Sequence[PathLike], coordinates: PathLike, temperature=300.0,
                strip=None, nonbonded_method: Optional[str] = None, nonbonded_cutoff=1.0,
                constraints: Optional[str] = None, box=None, platform: str = "auto", precision: Optional[str] = None,
                device_index: Optional[int] = None, engine: str = "openmm", hydrogen_mass=None):
    """An :class:`OpenMMSystem` from a CHARMM ``psf``, parameter files and coordinates.

    Parameters
    ----------
    psf : str or PathLike
    parameter_files : sequence of str or PathLike
        ``.prm``/``.par``, ``.rtf``/``.top`` and ``.str`` files, read by
        ``openmm.app.CharmmParameterSet``.
    coordinates : str or PathLike
        A CHARMM ``.crd`` or a ``.pdb`` file with the psf's atoms in order.
    box : sequence of 3 floats or Quantities, optional
        Rectangular box lengths a, b, c (nm); a psf has no box of its own.
    temperature, strip, nonbonded_method, nonbonded_cutoff, constraints, platform, precision, device_index, engine, hydrogen_mass
        As in :func:`from_amber`.
    """
    from openmm import Vec3, app, unit

    check_engine(engine)
    strip = _check_common(nonbonded_method, constraints, strip)
    if isinstance(parameter_files, (str, os.PathLike)):
        parameter_files = [parameter_files]
    files = [_existing(p, "CHARMM parameter file") for p in parameter_files]
    if not files:
        raise ValueError("parameter_files must name at least one CHARMM parameter file")
    psf_file = app.CharmmPsfFile(_existing(psf, "psf"))
    coords = _existing(coordinates, "coordinates")
    if coords.lower().endswith(".crd") or coords.lower().endswith(".cor"):
        positions = app.CharmmCrdFile(coords).positions
    else:
        positions = app.PDBFile(coords).positions
    box_vectors = None
    if box is not None:
        lengths = [strip_units(v, "nanometer") for v in box]
        if len(lengths) != 3 or not all(np.isfinite(v) and v > 0 for v in lengths):
            raise ValueError(f"box must be three positive lengths in nm (a, b, c), got {box!r}")
        psf_file.setBox(*(v * unit.nanometer for v in lengths))
        box_vectors = (Vec3(lengths[0], 0, 0), Vec3(0, lengths[1], 0), Vec3(0, 0, lengths[2])) * unit.nanometer
    topology = psf_file.topology
    if topology.getNumAtoms() != len(positions):
        raise ValueError(f"{psf} has {topology.getNumAtoms()} atoms but {coordinates} has {len(positions)} positions")
    params = app.CharmmParameterSet(*files)

    def create(method, cutoff):
        return psf_file.createSystem(params, nonbondedMethod=method, nonbondedCutoff=cutoff,
                                     constraints=_constraint(constraints), rigidWater=constraints is not None)

    return _finish(create, topology, positions, box_vectors, strip, nonbonded_method, nonbonded_cutoff, temperature,
                   platform, precision, device_index, f"{os.fspath(psf)}", engine, hydrogen_mass)
