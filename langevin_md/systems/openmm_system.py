"""OpenMM force fields as Boltzmann targets for the torch executor.

:class:`OpenMMSystem` evaluates U(x) and F(x) = −∇U(x) with one ``openmm.Context`` on the
chosen platform (:mod:`langevin_md.systems.platforms`), looping over walkers. It also keeps
the ``openmm.System``, topology, positions and platform settings so the OpenMM executor can
build more Contexts with identical settings (:meth:`OpenMMSystem.make_context`).

Why one Context and a Python loop: measured on alanine dipeptide with 16 walkers, a pool of
two worker processes (one Context each, walkers split, numpy arrays over pipes) took 0.35 ms
vs 0.18 ms serial in vacuum on Reference, 21.2 vs 21.0 ms in implicit solvent on Reference,
and 2.5 vs 3.1 ms on the single-threaded CPU platform: inter-process round trips eat the
gain on small systems and large systems are already parallel inside OpenMM's CPU/GPU
platforms. Threads cannot help a Python loop.

The hot path calls the SWIG functions behind ``Context.setPositions`` and ``Context.getState``
directly with plain numpy arrays (no ``openmm.unit`` Quantities, forces copied straight into
the output array). Per energy + force call on alanine dipeptide in vacuum on Reference this
is 11.6 µs, against 23 µs through the public methods with ``._value`` and 35 µs with unit
conversion. If a future OpenMM renames those functions the public methods are used instead.
"""

from __future__ import annotations

import math
import os
import xml.parsers.expat
from xml.etree import ElementTree

# openmm and mdtraj are imported inside the functions that use them: they take seconds to
# import, and `import langevin_md.systems` must not pay that unless a molecule is built.
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

import langevin_md.systems.solvent as solvent
from langevin_md.systems.base import System
import langevin_md.systems.xml_trust as xml_trust
from langevin_md.systems.platforms import resolve_platform
from langevin_md.systems.torch_forcefield import TorchForceField
from langevin_md.units import bond_pairs, check_not_angstrom, kT_from_temperature, strip

PathLike = Union[str, os.PathLike]

#: OpenMM's ``createSystem`` constraint options accepted by the builders.
CONSTRAINTS = (None, "HBonds", "AllBonds", "HAngles")

#: Median bonded distance (nm) above which positions are taken to be in ångström. Covalent
#: bonds are 0.09–0.2 nm, i.e. 0.9–2 when written in Å.

#: Elements whose text OpenMM's ForceField executes as Python.
_SCRIPT_ELEMENTS = ("Script", "InitializationScript")


class _AllTrue:
    """Indexable stand-in for an all-True walker mask."""

    def __getitem__(self, i):
        return True


_ALL_TRUE = _AllTrue()


# --------------------------------------------------------------------------- fast OpenMM calls
def _make_evaluator():
    """Return ``eval_into(context, positions (n, 3) float64, forces_out (n, 3)) -> energy``."""
    import openmm

    swig = getattr(openmm, "_openmm", None)
    names = ("Context_setPositions", "Context_getState", "State_getPotentialEnergy", "State__getVectorAsNumpy")
    if swig is not None and all(hasattr(swig, n) for n in names):
        set_positions = swig.Context_setPositions
        get_state = swig.Context_getState
        get_energy = swig.State_getPotentialEnergy
        get_vector = swig.State__getVectorAsNumpy
        types = openmm.State.Energy | openmm.State.Forces
        forces_kind = openmm.State.Forces

        def eval_into(context, positions, forces_out):
            set_positions(context, positions)
            state = get_state(context, types, False, -1)  # -1: every force group
            get_vector(state, forces_kind, forces_out)
            return get_energy(state)

        return eval_into

    def eval_into_public(context, positions, forces_out):  # pragma: no cover - older/newer OpenMM
        context.setPositions(positions)
        state = context.getState(energy=True, forces=True)
        forces_out[...] = state.getForces(asNumpy=True)._value
        return state.getPotentialEnergy()._value

    return eval_into_public


# --------------------------------------------------------------------------- input checks
def _positions_nm(positions, n_expected: int, what: str) -> np.ndarray:
    """Positions as a float64 (n, 3) array in nm; Quantities are converted, plain arrays are nm."""
    if hasattr(positions, "value_in_unit"):
        from openmm import unit

        try:
            positions = positions.value_in_unit(unit.nanometer)
        except TypeError as exc:
            raise ValueError(f"{what} must be a length, got units {positions.unit} ({exc})") from None
    try:
        arr = np.array(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be an (n_particles, 3) array in nm or a Quantity ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{what} must have shape (n_particles, 3), got {arr.shape}")
    if arr.shape[0] != n_expected:
        raise ValueError(
            f"{what} hold {arr.shape[0]} particles but the topology and System have {n_expected}; "
            "positions must list every particle of the System in topology order"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.unique(np.nonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{what} contain non-finite values at particle indices {bad[:10].tolist()}")
    return arr


def _check_not_angstrom(positions: np.ndarray, topology, what: str) -> None:
    """Refuse coordinates whose bonded distances look like ångström (×10 too long)."""
    check_not_angstrom(positions, bond_pairs(topology), what)


def _topology_from(topology_or_pdb, positions, what: str):
    """(openmm Topology, positions or None) from a Topology or a PDB/PDBx file path."""
    from openmm import app

    if isinstance(topology_or_pdb, app.Topology):
        return topology_or_pdb, positions
    if isinstance(topology_or_pdb, (str, os.PathLike)):
        structure = _read_structure(topology_or_pdb)
        return structure.topology, structure.positions if positions is None else positions
    raise TypeError(f"{what} must be an openmm.app.Topology or a PDB/PDBx path, got {type(topology_or_pdb).__name__}")


def _read_structure(path: PathLike):
    from openmm import app

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
    pdbx = path.suffix.lower() in (".cif", ".pdbx", ".mmcif")
    kind = "PDBx/mmCIF" if pdbx else "PDB"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"structure file {str(path)!r} cannot be read ({exc.strerror}); a readable "
                         f"{kind} file is expected") from None
    try:
        structure = app.PDBxFile(str(path)) if pdbx else app.PDBFile(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenMM's parsers fail with any exception on bad input
        # The file's content is not quoted: it may be any file a config names (/etc/shadow).
        raise ValueError(f"structure file {str(path)!r} is not a {kind} file OpenMM can read "
                         f"({type(exc).__name__} while parsing it)") from None
    if structure.topology.getNumAtoms() == 0:
        raise ValueError(f"structure file {str(path)!r} holds no atoms; a {kind} file with ATOM/HETATM "
                         "records is expected")
    return structure


# --------------------------------------------------------------------------- force-field files
def _openmm_data_dirs() -> list[str]:
    """Directories of force fields shipped with installed packages (OpenMM and its plugins)."""
    from openmm.app import forcefield as ff_module

    try:
        dirs = list(ff_module._getDataDirectories())
    except AttributeError:  # pragma: no cover - private helper moved
        dirs = [os.path.join(os.path.dirname(ff_module.__file__), "data")]
    return [os.path.realpath(d) for d in dirs]


def _resolve_ff_file(name: str) -> str:
    """The file ``openmm.app.ForceField`` would read for ``name`` (same lookup order)."""
    if os.path.isfile(name):
        return name
    for d in _openmm_data_dirs():
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"force-field file {name!r} is neither a file nor one of OpenMM's built-in force fields "
        f"(searched {', '.join(_openmm_data_dirs())})"
    )


def _is_packaged(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d + os.sep) for d in _openmm_data_dirs())


def _parse_untrusted_xml(path: str, data: bytes, trusted: bool, what: str):
    """Parse XML bytes, refusing a DTD or entity declaration unless ``trusted``.

    The trust decision is taken on the parsed tree, never on raw bytes: the parser detects
    the encoding (UTF-8, UTF-16 with a byte-order mark, declared encodings), and a document
    type declaration, which could define entities whose expansion builds a ``<Script>``
    element or explodes in size, is refused before any entity is expanded.

    Returns
    -------
    xml.etree.ElementTree.Element
        The root element.
    """
    if not trusted:
        def refuse(*_args):
            raise ValueError(
                f"{what} {path!r} has a document type declaration (<!DOCTYPE> or <!ENTITY>); "
                "entities can build elements such as <Script> that OpenMM executes as Python, "
                "so untrusted files may not declare any. Remove the declaration, or pass "
                "trusted=True (config: trusted = true) only if you trust this file's author.")

        scanner = xml.parsers.expat.ParserCreate()
        scanner.StartDoctypeDeclHandler = refuse
        scanner.EntityDeclHandler = refuse
        try:
            scanner.Parse(data, True)
        except xml.parsers.expat.ExpatError as exc:
            raise ValueError(f"{what} {path!r} is not valid XML: {exc}") from None
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ValueError(f"{what} {path!r} is not valid XML: {exc}") from None


def _script_elements(root) -> list[str]:
    """Tags of every element (at any depth, namespace ignored) that OpenMM would run as code."""
    found = []
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        local = tag.rsplit("}", 1)[-1]
        if local in _SCRIPT_ELEMENTS:
            found.append(local)
    return found


def _check_forcefield_files(files: Sequence[str], trusted: bool) -> list[str]:
    """Refuse user force-field XML that could run code unless ``trusted``; follow Includes.

    A user file is refused when its parsed tree (after decoding in whatever encoding it is
    written) holds a ``<Script>`` or ``<InitializationScript>`` element, or when it declares a
    DTD or entities at all. Files shipped inside installed packages (OpenMM's data directory,
    plugins' directories) are trusted: Amber's ``implicit/obc2.xml`` itself carries a Script.
    Returns the resolved paths.
    """
    queue = [str(f) for f in files]
    seen: list[str] = []
    while queue:
        name = queue.pop(0)
        path = _resolve_ff_file(name)
        if path in seen:
            continue
        seen.append(path)
        data = Path(path).read_bytes()
        packaged = _is_packaged(path)
        root = _parse_untrusted_xml(path, data, trusted or packaged, "force-field file")
        scripts = _script_elements(root)
        if not (trusted or packaged):
            xml_trust.check_forcefield_xml(path, root)
        if scripts and not (trusted or packaged):
            raise ValueError(
                f"force-field file {path!r} contains a <{scripts[0]}> element, which OpenMM "
                "executes as Python code; refusing to load it. Pass trusted=True (config: "
                "trusted = true) only if you trust this file's author."
            )
        parent = os.path.dirname(path)
        for inc in root.iter("Include"):
            inc_file = inc.attrib.get("file", "")
            joined = os.path.join(parent, inc_file)
            queue.append(joined if os.path.isfile(joined) else inc_file)
    return seen


_FORCEFIELD_CACHE: dict = {}


def _load_forcefield(files: Sequence[str], trusted: bool):
    """An ``openmm.app.ForceField``; built-in-only combinations are cached (parsing takes ~1 s)."""
    from openmm import app

    resolved = _check_forcefield_files(files, trusted)
    key = tuple(files)
    if all(_is_packaged(p) for p in resolved):
        if key not in _FORCEFIELD_CACHE:
            _FORCEFIELD_CACHE[key] = app.ForceField(*files)
        return _FORCEFIELD_CACHE[key]
    return app.ForceField(*files)


def _create_system(forcefield, topology, files, constraints, nonbonded_method):
    from openmm import app

    kwargs = {}
    if nonbonded_method is not None:
        kwargs["nonbondedMethod"] = nonbonded_method
    try:
        return forcefield.createSystem(
            topology,
            constraints=getattr(app, constraints) if constraints is not None else None,
            # flexible water unless constraints were asked for: a constraint changes the
            # sampled law and which schemes may run, so none may appear behind the user's back
            rigidWater=constraints is not None,
            **kwargs,
        )
    except ValueError as exc:
        try:
            unmatched = forcefield.getUnmatchedResidues(topology)
        except Exception:
            unmatched = []
        if not unmatched:
            raise
        names = [f"{r.name} {r.id} (chain {r.chain.id}, residue index {r.index})" for r in unmatched[:10]]
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        raise ValueError(
            f"the force field {tuple(files)} has no template for residue(s) {'; '.join(names)}{more}. "
            "Common causes: missing hydrogens (add them with openmm.app.Modeller.addHydrogens), "
            "non-standard residue names, or a ligand that needs its own force-field file. "
            f"OpenMM said: {exc}"
        ) from None


# --------------------------------------------------------------------------- the system
class OpenMMSystem(System):
    """A Boltzmann target p(x) ∝ exp(−U(x)/kT) whose U and forces come from OpenMM.

    Parameters
    ----------
    system : openmm.System
    topology : openmm.app.Topology
        Must describe the same particles, in the same order, as ``system``.
    positions : array_like, shape ``(n_particles, 3)``, nm, or an openmm Quantity
        A reference structure (starting point for walkers).
    temperature : float or openmm.unit.Quantity
        Kelvin.
    platform : str
        ``"auto"`` (see :mod:`langevin_md.systems.platforms`) or an OpenMM platform name:
        ``"Reference"``, ``"CPU"``, ``"OpenCL"``, ``"CUDA"``, ``"HIP"``.
    precision : {None, "single", "mixed", "double"}
        Platform precision (CUDA/HIP/OpenCL; Reference is always double).
    device_index : int or None
        GPU device for CUDA/HIP/OpenCL.

    Attributes
    ----------
    event_shape : tuple ``(n_particles, 3)``
    kT : float
        kJ/mol.
    temperature : float
        K.
    masses : numpy.ndarray, shape ``(n_particles,)``
        amu (dalton), from the System.
    topology : mdtraj.Topology
    openmm_system : openmm.System
    openmm_topology : openmm.app.Topology
    positions : numpy.ndarray, shape ``(n_particles, 3)``
        nm, the reference structure.
    constrained : bool
        True when the System has constraints. Both executors enforce them: the OpenMM
        executor with OpenMM's own algorithms, the torch executor's BAOAB and OBABO with
        batched SHAKE/RATTLE on this System's constraint list (its other schemes refuse a
        constrained system by name).
    platform_name : str
    platform_properties : dict of str to str
        As passed to ``openmm.Context``; :meth:`make_context` reuses them.

    Notes
    -----
    Zero-mass particles (virtual sites, or particles OpenMM holds fixed) are refused: Langevin
    updates divide by the mass, and virtual-site positions would have to be rebuilt from their
    parents every step.
    """

    units = "molecular"

    def __init__(
        self,
        system,
        topology,
        positions,
        temperature=300.0,
        platform: str = "auto",
        precision: Optional[str] = None,
        device_index: Optional[int] = None,
    ):
        import mdtraj
        import openmm
        from openmm import app

        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        if not isinstance(topology, app.Topology):
            raise TypeError(f"topology must be an openmm.app.Topology, got {type(topology).__name__}")
        n = system.getNumParticles()
        if topology.getNumAtoms() != n:
            raise ValueError(
                f"the topology has {topology.getNumAtoms()} atoms but the System has {n} particles; "
                "they must describe the same particles"
            )
        if n == 0:
            raise ValueError("the System has no particles")
        self.positions = _positions_nm(positions, n, "positions")
        _check_not_angstrom(self.positions, topology, "positions")

        masses = np.array([strip(system.getParticleMass(i), "dalton") for i in range(n)], dtype=np.float64)
        massless = np.nonzero(masses <= 0)[0]
        if len(massless):
            vsites = [int(i) for i in massless if system.isVirtualSite(int(i))]
            atoms = list(topology.atoms())
            shown = ", ".join(f"{i} ({atoms[i].residue.name}:{atoms[i].name})" for i in massless[:5])
            raise ValueError(
                f"{len(massless)} particle(s) have zero mass ({len(vsites)} of them virtual sites), "
                f"e.g. {shown}. OpenMMSystem does not support massless particles: Langevin updates "
                "divide by the mass and virtual sites must be rebuilt from their parents each step. "
                "Use a force field without virtual sites (e.g. TIP3P instead of TIP4P-Ew), or run "
                "with the OpenMM executor."
            )

        self.openmm_system = system
        self.openmm_topology = topology
        self.topology = mdtraj.Topology.from_openmm(topology)
        self.temperature = strip(temperature, "kelvin")
        self.kT = kT_from_temperature(temperature)
        self.masses = masses
        self.event_shape = (n, 3)
        self.constrained = system.getNumConstraints() > 0

        self._platform, self.platform_properties = resolve_platform(platform, system, precision, device_index)
        self.platform_name = self._platform.getName()
        self.precision = precision
        self.device_index = device_index
        # The integrator never steps; a Context needs one.
        self._integrator = openmm.VerletIntegrator(0.001)
        self._context = self.make_context(self._integrator)
        self._eval_into = _make_evaluator()
        self._staging: dict = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pdb(
        cls,
        pdb_path: PathLike,
        forcefield: Sequence[str] = ("amber14-all.xml", "implicit/obc2.xml"),
        temperature=300.0,
        constraints: Optional[str] = None,
        platform: str = "auto",
        precision: Optional[str] = None,
        device_index: Optional[int] = None,
        trusted: bool = False,
        strip=None,
        nonbonded_method: Optional[str] = None,
    ) -> "OpenMMSystem":
        """Build from a PDB (or PDBx/mmCIF) file and OpenMM force-field XML files.

        A molecule without waters, ions or a periodic box (CRYST1) uses ``NoCutoff``. A
        structure with any of them must say what to simulate (a box record alone never
        switches on PME): ``strip`` the solvent and sample the rest in vacuum, or give an
        explicit ``nonbonded_method`` (see
        :func:`langevin_md.systems.solvent.require_solvent_choice`). Cutoff methods use
        OpenMM's default 1 nm cutoff. Water is flexible unless ``constraints`` is given.

        Parameters
        ----------
        pdb_path : str or PathLike
        forcefield : sequence of str
            Force-field XML files: OpenMM's built-in names (``"amber14-all.xml"``) or paths.
            User files containing ``<Script>`` blocks are refused unless ``trusted``.
        temperature : float or Quantity
            Kelvin.
        constraints : {None, "HBonds", "AllBonds", "HAngles"}
        platform, precision, device_index
            See :class:`OpenMMSystem`.
        trusted : bool
            Allow force-field files that carry Python ``<Script>`` blocks.
        strip : "solvent" or list of str, optional
            Residue names to delete before the system is built (``"solvent"``: every water and
            ion); the rest runs with ``NoCutoff`` unless ``nonbonded_method`` says otherwise.
        nonbonded_method : {"NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME"}, optional
            Required when the structure has waters, ions or a box and ``strip`` is not given.

        Raises
        ------
        ValueError
            For solvent or a box with neither ``strip`` nor ``nonbonded_method`` (the message
            lists both choices), unknown residue names in ``strip``, an unknown method.
        """
        from openmm import app

        if isinstance(forcefield, (str, os.PathLike)):
            forcefield = (forcefield,)
        files = [os.fspath(f) for f in forcefield]
        if constraints not in CONSTRAINTS:
            raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
        methods = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME")
        if nonbonded_method is not None and nonbonded_method not in methods:
            raise ValueError(f"nonbonded_method must be one of {methods} or None, got {nonbonded_method!r}")
        if strip is not None and not (strip == "solvent" or (isinstance(strip, (list, tuple)) and strip
                                                             and all(isinstance(n, str) for n in strip))):
            raise ValueError(f"strip must be 'solvent' or a list of residue names, got {strip!r}")
        structure = _read_structure(pdb_path)
        topology, positions = structure.topology, structure.positions
        solvent.require_solvent_choice(topology, topology.getPeriodicBoxVectors(), strip, nonbonded_method,
                                      os.fspath(pdb_path))
        if strip is not None:
            names = set(solvent.solvent_residues(topology)) if strip == "solvent" else set(strip)
            present = {r.name for r in topology.residues()}
            if strip != "solvent" and not names <= present:
                raise ValueError(f"strip names residues {sorted(names - present)} that {os.fspath(pdb_path)} does "
                                 f"not have; its residues: {sorted(present)}")
            modeller = app.Modeller(topology, positions)
            modeller.delete([r for r in topology.residues() if r.name in names])
            topology, positions = modeller.topology, modeller.positions
        method = getattr(app, nonbonded_method) if nonbonded_method is not None else app.NoCutoff
        system = _create_system(_load_forcefield(files, trusted), topology, files, constraints, method)
        return cls(system, topology, positions, temperature, platform, precision, device_index)

    @classmethod
    def from_xml(
        cls,
        system_xml_path: PathLike,
        pdb_path_or_topology,
        positions=None,
        temperature=300.0,
        platform: str = "auto",
        precision: Optional[str] = None,
        device_index: Optional[int] = None,
        trusted: bool = False,
    ) -> "OpenMMSystem":
        """Build from a serialized ``openmm.System`` (``XmlSerializer``) and a structure.

        Parameters
        ----------
        system_xml_path : str or PathLike
            XML written by ``openmm.XmlSerializer.serialize(system)``. Files containing
            ``<Script>`` blocks are refused unless ``trusted``.
        pdb_path_or_topology : str, PathLike or openmm.app.Topology
            A PDB/PDBx file (gives topology and positions) or a Topology (then ``positions``
            is required).
        positions : array_like (n, 3) nm or Quantity, optional
            Overrides the file's positions.
        """
        import openmm

        path = Path(system_xml_path)
        if not path.is_file():
            raise FileNotFoundError(f"serialized System {str(path)!r} does not exist")
        data = path.read_bytes()
        root = _parse_untrusted_xml(str(path), data, trusted, "serialized System")
        if not trusted and _script_elements(root):
            raise ValueError(
                f"serialized System {str(path)!r} contains a <Script> element; refusing to load it. "
                "Pass trusted=True only if you trust this file's author."
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"serialized System {str(path)!r} is not UTF-8 text: {exc}") from None
        if not trusted:
            xml_trust.check_serialized_xml(str(path), text, root)
        try:
            system = openmm.XmlSerializer.deserialize(text)
        except Exception as exc:
            raise ValueError(f"could not deserialize {str(path)!r} as an OpenMM System: {exc}") from None
        if not isinstance(system, openmm.System):
            raise TypeError(f"{str(path)!r} holds a serialized {type(system).__name__}, not an openmm.System")
        topology, positions = _topology_from(pdb_path_or_topology, positions, "pdb_path_or_topology")
        if positions is None:
            raise ValueError("positions are required when pdb_path_or_topology is a Topology")
        return cls(system, topology, positions, temperature, platform, precision, device_index)

    # ------------------------------------------------------------------ OpenMM side
    def make_context(self, integrator):
        """A new ``openmm.Context`` for this System on the same platform and properties.

        Positions are set to :attr:`positions`; the caller owns the Context and integrator.
        """
        import openmm

        context = openmm.Context(self.openmm_system, integrator, self._platform, dict(self.platform_properties))
        context.setPositions(self.positions)
        return context

    # ------------------------------------------------------------------ energy and forces
    def _energy_and_forces(self, x: torch.Tensor):
        n_walkers = x.shape[0]
        xs = x.detach()
        out_direct = xs.dtype == torch.float64 and xs.device.type == "cpu"
        if not out_direct:
            xs = xs.to(device="cpu", dtype=torch.float64)
        xs = xs.contiguous().numpy()
        if out_direct:
            # fresh arrays: returned tensors share their memory, and callers keep them
            energy = np.empty(n_walkers, dtype=np.float64)
            forces = np.empty(xs.shape, dtype=np.float64)
        else:
            # reused staging buffers: the dtype/device conversion below copies out of them
            if self._staging.get("n") != n_walkers:
                self._staging = {"n": n_walkers, "e": np.empty(n_walkers), "f": np.empty(xs.shape)}
            energy, forces = self._staging["e"], self._staging["f"]
        # one reduction on the common path: a finite sum means every coordinate is finite
        if math.isfinite(float(xs.sum())):
            finite = _ALL_TRUE
        else:
            finite = np.isfinite(xs).reshape(n_walkers, -1).all(axis=1)
        context, eval_into = self._context, self._eval_into
        for i in range(n_walkers):
            if finite[i]:
                energy[i] = eval_into(context, xs[i], forces[i])
            else:
                # never hand OpenMM NaN/inf positions (neighbour lists can crash); report NaN
                # so the sampler's finiteness check names the walker
                energy[i] = np.nan
                forces[i] = np.nan
        e = torch.from_numpy(energy)
        f = torch.from_numpy(forces)
        if not out_direct:
            e = e.to(device=x.device, dtype=x.dtype)
            f = f.to(device=x.device, dtype=x.dtype)
        return e, f

    def initial_positions(self, n_walkers: int, generator=None) -> torch.Tensor:
        """The reference structure for every walker, float64 CPU tensor ``(n_walkers, n, 3)`` nm.

        ``generator`` is accepted for the System protocol and not used.
        """
        if isinstance(n_walkers, bool) or not isinstance(n_walkers, (int, np.integer)) or n_walkers < 1:
            raise ValueError(f"n_walkers must be a positive int, got {n_walkers!r}")
        base = torch.from_numpy(self.positions)
        return base.unsqueeze(0).repeat(int(n_walkers), 1, 1)

    def to_torch(self, precision: str = "double"):
        """This force field compiled to a batched torch force field (no OpenMM at run time).

        Parameters
        ----------
        precision : {"double", "mixed"}
            ``"mixed"``: terms in float32, integrator state in float64 (like OpenMM's
            "mixed"; see :class:`~langevin_md.systems.TorchForceField`).

        Returns
        -------
        langevin_md.systems.TorchForceField
            Same topology, masses, temperature and reference positions; energies equal this
            System's (OpenMM Reference) to about 1e-12 relative in float64.

        Raises
        ------
        ValueError
            When the System has a force or setting the torch force field does not support
            (e.g. PME, virtual sites); the message names it. Keep using this OpenMMSystem then.
        """
        return TorchForceField.from_openmm(self.openmm_system, self.topology, self.positions, self.temperature,
                                           precision=precision)

    def __repr__(self) -> str:
        return (
            f"OpenMMSystem(n_particles={self.event_shape[0]}, temperature={self.temperature:g} K, "
            f"platform={self.platform_name!r}, constrained={self.constrained})"
        )
