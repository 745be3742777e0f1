"""ASE interoperability: systems as ASE calculators, ASE calculators as systems, extxyz export.

Units
-----
ASE works in Å, eV and amu (time in Å·sqrt(amu/eV) ≈ 10.18 fs). Molecular systems here use
nm, kJ/mol and amu, and are converted at this boundary with the constants of
:mod:`langevin_md.units`:

* positions: 1 Å = 0.1 nm;
* energies: 1 eV = 96.485 kJ/mol;
* forces: 1 eV/Å = 964.85 kJ/(mol nm).

Systems in reduced units (analytic potentials, :class:`~langevin_md.systems.lennard_jones.
LennardJonesCluster`) are passed through **as they are**: ASE then reads reduced lengths as
Å and reduced energies as eV. With masses of 1 amu, ASE's time unit is then the reduced
time unit sqrt(mσ²/ε), so ASE dynamics with ``temperature=kT`` (in "eV", i.e. reduced
energy) and ``timestep`` in reduced time sample the same distribution as our integrators.

A system counts as molecular when it has a topology (OpenMM systems, :class:`ASESystem`).

ASE is imported only when this module is.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .systems.base import System
from .units import KJ_PER_MOL_PER_EV, NM_PER_ANGSTROM, kT_from_temperature, strip

UNITS = ("molecular", "reduced")


class SystemCalculator(Calculator):
    """Any particle :class:`~langevin_md.systems.base.System` as an ASE calculator.

    ASE's dynamics (``ase.md.langevin.Langevin``, ``VelocityVerlet``...) and optimisers
    (``ase.optimize.BFGS``...) can then use our energies and forces.

    Parameters
    ----------
    system : System
        ``event_shape == (n_atoms, 3)``.
    units : {"molecular", "reduced"}, optional
        ``"molecular"``: the system works in nm and kJ/mol and ASE's Å and eV are converted;
        ``"reduced"``: values are passed through as they are. Default: molecular when the
        system has a topology, reduced otherwise.

    Notes
    -----
    Energies are evaluated in float64 on the CPU, one structure per call.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, system: System, units: Optional[str] = None):
        super().__init__()
        if not isinstance(system, System):
            raise TypeError(f"system must be a langevin_md System, got {type(system).__name__}")
        shape = tuple(system.event_shape)
        if len(shape) != 2 or shape[1] != 3:
            raise ValueError(f"SystemCalculator needs particles in 3-D, event_shape (n_atoms, 3); "
                             f"{type(system).__name__} has {shape}")
        units = system.units if units is None else units
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {units!r}")
        self.system = system
        self.units = units

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = self.system.event_shape[0]
        if len(self.atoms) != n:
            raise ValueError(f"the Atoms have {len(self.atoms)} atoms but {type(self.system).__name__} "
                             f"has {n} particles")
        length = NM_PER_ANGSTROM if self.units == "molecular" else 1.0   # system length per Å
        energy = 1.0 / KJ_PER_MOL_PER_EV if self.units == "molecular" else 1.0  # eV per system energy
        x = torch.as_tensor(self.atoms.get_positions() * length, dtype=torch.float64)[None]
        e, f = self.system.energy_and_forces(x)
        e = float(e[0]) * energy
        self.results["energy"] = e
        self.results["free_energy"] = e
        # F [eV/Å] = F [kJ/(mol nm)] · (eV per kJ/mol) · (nm per Å)
        self.results["forces"] = f[0].detach().cpu().numpy().astype(np.float64) * (energy * length)


class ASESystem(System):
    """A :class:`~langevin_md.systems.base.System` from ``ase.Atoms`` and any ASE calculator.

    Positions are in nm, energies in kJ/mol (converted from ASE's Å and eV), masses in amu
    from the Atoms, so every integrator and the OpenMM-style molecular units apply.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (copied); its positions are the walkers' starting point. Its cell and
        periodic boundary conditions are kept.
    calculator : ase.calculators.calculator.Calculator
        Any ASE calculator (EMT, LennardJones, a machine-learned potential...).
    temperature : float or openmm.unit.Quantity
        Kelvin.

    Notes
    -----
    ASE calculators evaluate one structure at a time, so walkers are evaluated in a Python
    loop on the CPU: use few walkers, or a native system where one exists.
    """

    units = "molecular"

    def __init__(self, atoms: Atoms, calculator, temperature=300.0):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
        if len(atoms) == 0:
            raise ValueError("atoms must hold at least one atom")
        if not isinstance(calculator, Calculator) and not hasattr(calculator, "get_potential_energy"):
            raise TypeError(f"calculator must be an ASE calculator, got {type(calculator).__name__}")
        self._atoms = atoms.copy()
        self._atoms.calc = calculator
        self.calculator = calculator
        self.temperature = strip(temperature, "kelvin")
        self.kT = kT_from_temperature(temperature)
        self.masses = np.asarray(atoms.get_masses(), dtype=np.float64)
        if np.any(self.masses <= 0):
            raise ValueError("every atom needs a positive mass (set them with atoms.set_masses)")
        self.event_shape = (len(atoms), 3)
        self.positions = np.asarray(atoms.get_positions(), dtype=np.float64) * NM_PER_ANGSTROM
        self._topology = None

    @property
    def topology(self):
        """An mdtraj topology with one residue per atom, elements from the chemical symbols."""
        if self._topology is None:
            import mdtraj
            from mdtraj.core import element as elem

            top = mdtraj.Topology()
            chain = top.add_chain()
            for i, sym in enumerate(self._atoms.get_chemical_symbols()):
                try:
                    element = elem.get_by_symbol(sym)
                except KeyError:
                    element = elem.virtual
                top.add_atom(sym, element, top.add_residue(sym.upper()[:3], chain, resSeq=i + 1))
            self._topology = top
        return self._topology

    def _energy_and_forces(self, x):
        xs = x.detach().cpu().numpy().astype(np.float64) / NM_PER_ANGSTROM
        energies = np.empty(xs.shape[0])
        forces = np.empty(xs.shape)
        for i, xi in enumerate(xs):
            self._atoms.set_positions(xi)
            energies[i] = self._atoms.get_potential_energy()
            forces[i] = self._atoms.get_forces()
        # eV -> kJ/mol; eV/Å -> kJ/(mol nm)
        e = torch.as_tensor(energies * KJ_PER_MOL_PER_EV, dtype=x.dtype, device=x.device)
        f = torch.as_tensor(forces * (KJ_PER_MOL_PER_EV / NM_PER_ANGSTROM), dtype=x.dtype, device=x.device)
        return e, f

    def initial_positions(self, n_walkers, generator):
        """Every walker starts at the Atoms' positions (nm)."""
        return torch.as_tensor(self.positions, dtype=torch.float64).expand((n_walkers,) + self.event_shape).clone()

    def __repr__(self) -> str:
        return (f"ASESystem({self._atoms.get_chemical_formula()}, {type(self.calculator).__name__}, "
                f"temperature={self.temperature:g})")


def to_atoms(system: System, positions, units: Optional[str] = None) -> Atoms:
    """One configuration of a particle system as ``ase.Atoms`` (Å for molecular systems).

    Parameters
    ----------
    system : System
        ``event_shape == (n_atoms, 3)``; symbols from its topology, else ``"X"``.
    positions : array_like, shape ``(n_atoms, 3)``
        In the system's units (nm or reduced).
    units : {"molecular", "reduced"}, optional
        Default as in :class:`SystemCalculator`.
    """
    units = system.units if units is None else units
    pos = np.asarray(positions, dtype=np.float64)
    scale = 1.0 / NM_PER_ANGSTROM if units == "molecular" else 1.0
    atoms = Atoms(symbols=_symbols(getattr(system, "topology", None), pos.shape[0]), positions=pos * scale)
    atoms.set_masses(np.broadcast_to(np.asarray(system.masses, dtype=np.float64), (pos.shape[0],)))
    return atoms


def _symbols(topology, n: int) -> list[str]:
    if topology is None:
        return ["X"] * n
    out = []
    for atom in topology.atoms:
        sym = getattr(atom.element, "symbol", None)
        out.append(sym if sym and sym != "VS" else "X")
    return out


def write_extxyz(result, walker: int, path) -> None:
    """Write one walker's frames to an extended-XYZ file that ``ase.io.read(path, ":")`` reads.

    Molecular runs are written in Å with energies in eV; reduced-unit runs as they are.
    Each frame's ``info`` holds ``step``, and its calculator the potential energy.

    Parameters
    ----------
    result : SampleResult
        From :func:`langevin_md.sample` or :func:`langevin_md.load_run`.
    walker : int
    path : str or PathLike
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    if len(result.event_shape) != 2 or result.event_shape[1] != 3:
        raise ValueError(f"extxyz needs particles in 3-D, event_shape (n_atoms, 3); this run has "
                         f"{result.event_shape}")
    if not 0 <= walker < result.n_walkers:
        raise ValueError(f"walker must be in [0, {result.n_walkers}), got {walker}")
    topology = result.metadata.get("topology") or getattr(result.system, "topology", None)
    units = result.metadata.get("units") or (result.system.units if result.system is not None else "reduced")
    length = 1.0 / NM_PER_ANGSTROM if units == "molecular" else 1.0
    energy = 1.0 / KJ_PER_MOL_PER_EV if units == "molecular" else 1.0
    symbols = _symbols(topology, result.event_shape[0])
    frames = []
    for k in range(result.n_frames):
        atoms = Atoms(symbols=symbols, positions=np.asarray(result.positions[k, walker], dtype=np.float64) * length)
        atoms.info["step"] = int(result.steps[k])
        atoms.info["units"] = "angstrom_eV" if units == "molecular" else "reduced"
        atoms.calc = SinglePointCalculator(atoms, energy=float(result.energies[k, walker]) * energy)
        frames.append(atoms)
    ase.io.write(str(path), frames, format="extxyz")
