""":class:`TorchForceField`: a compiled OpenMM force field as a langevin_md System.

The compiler (:mod:`langevin_md.forcefield`) turns an ``openmm.System`` into torch terms and
knows nothing of systems; this module makes those terms a Boltzmann target (masses, kT,
topology, reference positions, constraints) and saves and loads it.

Saved force fields are one safetensors file: the terms' buffers (and masses, reference
positions) as tensors, and a JSON header with each term's kind and settings, the temperature and
the topology. Loading needs torch and safetensors only (mdtraj, when installed, rebuilds the
topology); no pickle, no OpenMM.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Union

import numpy as np
import torch
from safetensors.torch import save_file

import langevin_md.forcefield.saved_format as saved_format
from langevin_md.forcefield.build import compile_forcefield, load_term_kinds
from langevin_md.forcefield.fused import fusable_kinds, numba_available
from langevin_md.forcefield.module import ForceFieldModule
from langevin_md.safe_paths import write_via_temp
from langevin_md.systems.base import System
from langevin_md.systems.constraints import Constraints
from langevin_md.units import kT_from_temperature, strip

PathLike = Union[str, os.PathLike]

_FORMAT = "langevin_md.forcefield"
_VERSION = 1

#: Precisions of the torch force field (OpenMM's names). ``"double"``: terms evaluated in the
#: dtype of the positions. ``"mixed"``: float64 positions are evaluated in float32 (every
#: term's energy and forces, as OpenMM's "mixed" computes forces in single precision) and
#: the results handed back in float64, so the integrator's positions, velocities, kinetic
#: energy and constraint solve stay float64. Positions of another dtype are evaluated in it.
PRECISIONS = ("double", "mixed")

#: How :meth:`TorchForceField.energy_and_forces` evaluates the terms. ``"torch"``: the batched
#: torch terms (the differentiable reference). ``"fused"``: numba kernels
#: (:mod:`langevin_md.forcefield.fused`) for the standard terms they recognise, torch for the
#: rest, on CPU positions that need no gradient. ``"auto"`` (default): ``"fused"`` where it
#: applies (numba installed, a recognised term, CPU, no gradient, not inside ``torch.compile``),
#: else ``"torch"``. :meth:`TorchForceField.energy` always uses torch.
KERNELS = ("auto", "torch", "fused")


class TorchForceField(System):
    """A force field evaluated in torch for all walkers at once.

    Build one with :meth:`from_openmm` or ``OpenMMSystem.to_torch()``; load a saved one with
    :func:`load_forcefield`. It adds to other systems (``ff + 0.5 * prior``) like any System.

    Parameters
    ----------
    module : ForceFieldModule
        float64 terms (copies for other dtypes and devices are made on first use).
    masses : array_like, shape ``(n_atoms,)``, amu
    temperature : float
        K.
    topology : mdtraj.Topology, optional
    positions : array_like, shape ``(n_atoms, 3)``, nm, optional
        Reference structure, the walkers' default starting point.
    constrained : bool
        Whether the source System had constraints. Ignored when ``constraints`` is given.
    constraints : langevin_md.systems.constraints.Constraints, optional
        The source System's distance constraints (bonds to hydrogen, rigid water), read from
        the ``openmm.System`` so OpenMM and the torch executor enforce the same ones; BAOAB
        and OBABO enforce them with SHAKE/RATTLE.
    precision : {"double", "mixed"}
        ``"double"`` (default) evaluates the terms in the dtype of the positions (float64
        exact to OpenMM Reference); ``"mixed"`` evaluates float64 positions in float32 and
        returns float64 energies and forces (see :data:`PRECISIONS`), about the speed of
        float32 with a float64 integrator state. Compare :meth:`with_precision`.
    kernels : {"auto", "torch", "fused"}
        How forces are evaluated (see :data:`KERNELS`). The fused kernels agree with the torch
        terms to rounding (about 1e-15 relative in float64), not bit for bit; ``"torch"``
        reproduces the torch path exactly. Compare :meth:`with_kernels`.

    Attributes
    ----------
    event_shape : ``(n_atoms, 3)``
    kT : float
        kJ/mol.
    kernels_used : {"fused", "torch"} or None
        Which path the last :meth:`energy_and_forces` call took (None before the first).
    """

    units = "molecular"

    def __init__(self, module: ForceFieldModule, masses, temperature: float, topology=None, positions=None,
                 constrained: bool = False, constraints=None, precision: str = "double", kernels: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        if not isinstance(module, ForceFieldModule):
            raise TypeError(f"module must be a ForceFieldModule, got {type(module).__name__}")
        n = module.n_atoms
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (n,):
            raise ValueError(f"masses have shape {masses.shape}; expected ({n},) for {n} atoms")
        if np.any(~np.isfinite(masses)) or np.any(masses <= 0):
            bad = np.nonzero(~(masses > 0))[0]
            raise ValueError(
                f"particles {bad[:10].tolist()} have zero or invalid mass; Langevin updates divide by "
                "the mass, so the torch force field needs every particle massive"
            )
        self._module = module.to(torch.float64)
        self.masses = masses
        self.temperature = float(temperature)
        self.kT = kT_from_temperature(self.temperature)
        self.event_shape = (n, 3)
        self.topology = topology
        self.positions = None if positions is None else np.asarray(positions, dtype=np.float64).reshape(n, 3)
        if constraints is not None:
            if not isinstance(constraints, Constraints):
                raise TypeError(f"constraints must be a Constraints, got {type(constraints).__name__}")
            if len(constraints) and int(constraints.atoms.max()) >= n:
                raise ValueError(f"a constraint names atom {int(constraints.atoms.max())}, but there are {n} atoms")
            constrained = len(constraints) > 0
        self.constraints = constraints
        self.constrained = bool(constrained)
        # per (dtype, device) copies of the terms; the float64 CPU entry is there from the start
        # so that a torch.compile trace never sees the dict change (that would force a recompile)
        self._copies: dict = {(torch.float64, torch.device("cpu")): self._module}
        self.precision = precision
        if precision == "mixed":  # the copy mixed precision evaluates in, made now for the same reason
            self._copies[torch.float32, torch.device("cpu")] = _copy_module(self._module).to(torch.float32)
        #: The ``openmm.System`` this force field was compiled from (:meth:`from_openmm`), or None.
        self.source_openmm_system = None
        self.kernels = kernels
        self.kernels_used = None
        self._fused: dict = {}  # dtype -> FusedForceField or None (built on first use)
        if kernels == "fused":
            _check_fusable(self._module)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_openmm(cls, openmm_system, topology=None, positions=None, temperature=300.0,
                    precision: str = "double") -> "TorchForceField":
        """Compile an ``openmm.System``.

        Parameters
        ----------
        openmm_system : openmm.System
        topology : openmm.app.Topology or mdtraj.Topology, optional
        positions : array_like (n, 3) nm or openmm Quantity, optional
        temperature : float or openmm Quantity, K
        precision : {"double", "mixed"}
        """
        module = compile_forcefield(openmm_system)
        n = openmm_system.getNumParticles()
        masses = np.array([strip(openmm_system.getParticleMass(i), "dalton") for i in range(n)])
        if topology is not None and not hasattr(topology, "to_openmm"):
            import mdtraj  # optional and slow to import: only when a topology is converted

            topology = mdtraj.Topology.from_openmm(topology)
        if positions is not None and hasattr(positions, "value_in_unit"):
            from openmm import unit  # optional: only for a Quantity, which means OpenMM is loaded

            positions = positions.value_in_unit(unit.nanometer)
        ff = cls(module, masses, strip(temperature, "kelvin"), topology, positions,
                 constraints=Constraints.from_openmm(openmm_system), precision=precision)
        # Kept (not used for energies) so backend="auto" can run the same System in OpenMM.
        ff.source_openmm_system = openmm_system
        return ff

    def with_precision(self, precision: str) -> "TorchForceField":
        """The same force field evaluated in another precision (terms shared, not copied).

        Parameters
        ----------
        precision : {"double", "mixed"}
        """
        ff = TorchForceField(self._module, self.masses, self.temperature, self.topology, self.positions,
                             self.constrained, self.constraints, precision, self.kernels)
        ff.source_openmm_system = self.source_openmm_system
        return ff

    def with_kernels(self, kernels: str) -> "TorchForceField":
        """The same force field with another force evaluation (terms shared, not copied).

        Parameters
        ----------
        kernels : {"auto", "torch", "fused"}
            See :data:`KERNELS`.
        """
        ff = TorchForceField(self._module, self.masses, self.temperature, self.topology, self.positions,
                             self.constrained, self.constraints, self.precision, kernels)
        ff.source_openmm_system = self.source_openmm_system
        return ff

    @property
    def module(self) -> ForceFieldModule:
        """The float64 CPU :class:`ForceFieldModule`."""
        return self._module

    # ------------------------------------------------------------------ energy and forces
    def _module_for(self, x: torch.Tensor) -> ForceFieldModule:
        key = (x.dtype, x.device)
        module = self._copies.get(key)
        if module is None:
            module = _copy_module(self._module).to(device=x.device, dtype=x.dtype)
            self._copies[key] = module
        return module

    def _fused_for(self, x: torch.Tensor):
        """The :class:`FusedForceField` that evaluates ``x``, or None where the torch path must."""
        if self.kernels == "torch" or _is_compiling():
            return None  # a numba call cannot be traced; compiled graphs keep the torch terms
        if x.requires_grad and torch.is_grad_enabled():
            return None  # gradients of the forces come only from the torch terms
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            if self.kernels == "fused":
                raise ValueError(f"kernels='fused' evaluates float32 or float64 CPU positions; got {x.dtype} "
                                 f"on {x.device} (use kernels='auto' or 'torch')")
            return None
        if x.dtype not in self._fused:
            fused = None
            if fusable_kinds(self._module) and numba_available():
                try:
                    from langevin_md.forcefield.fused.module import FusedForceField  # imports numba (~0.5 s)
                except ImportError as exc:  # numba installed but broken (e.g. built for another numpy)
                    if self.kernels == "fused":
                        raise ValueError(f"kernels='fused' needs numba, which failed to import: {exc}") from exc
                else:
                    fused = FusedForceField(self._module_for(x))
            self._fused[x.dtype] = fused
        return self._fused[x.dtype]

    def lanes_kernels(self, x: torch.Tensor):
        """The :class:`FusedForceField` for positions like ``x`` when every term runs in a lanes kernel, else None.

        An integrator that keeps its state in the kernels' lanes layout
        (:mod:`langevin_md.integrators.lanes_langevin`) asks this; None means it must use
        :meth:`energy_and_forces`: torch kernels chosen or needed (a gradient, a device,
        compiling), a term without a fused kernel, or ``precision="mixed"`` (the kernels would
        see float32 copies of float64 positions).
        """
        if self.precision != "double":
            return None
        fused = self._fused_for(x)
        if fused is None or not fused.lanes_ready:
            return None
        self.kernels_used = "fused"
        return fused

    def _evaluate(self, x: torch.Tensor):
        fused = self._fused_for(x)
        if fused is None:
            if not _is_compiling():
                self.kernels_used = "torch"
            return self._module_for(x)(x)
        self.kernels_used = "fused"
        return fused(x)

    def _energy_and_forces(self, x: torch.Tensor):
        if self.precision == "mixed" and x.dtype == torch.float64:
            x32 = x.to(torch.float32)
            energy, forces = self._evaluate(x32)
            return energy.to(x.dtype), forces.to(x.dtype)
        return self._evaluate(x)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """U(x), shape ``(n_walkers,)``, without computing forces; differentiable by autograd."""
        self.check_positions(x)
        if self.precision == "mixed" and x.dtype == torch.float64:
            x32 = x.to(torch.float32)
            return self._module_for(x32).energy(x32).to(x.dtype)
        return self._module_for(x).energy(x)

    def initial_positions(self, n_walkers: int, generator=None) -> torch.Tensor:
        """The reference structure for every walker, float64 CPU ``(n_walkers, n_atoms, 3)`` nm."""
        if isinstance(n_walkers, bool) or not isinstance(n_walkers, (int, np.integer)) or n_walkers < 1:
            raise ValueError(f"n_walkers must be a positive int, got {n_walkers!r}")
        if self.positions is None:
            raise ValueError("this TorchForceField has no reference positions; pass initial_positions")
        return torch.from_numpy(self.positions).unsqueeze(0).repeat(int(n_walkers), 1, 1)

    # ------------------------------------------------------------------ save
    def save(self, path: PathLike) -> None:
        """Write the force field to one safetensors file (no pickle; loads without OpenMM).

        Parameters
        ----------
        path : str or PathLike
        """
        tensors: dict[str, torch.Tensor] = {"masses": torch.from_numpy(self.masses.copy())}
        if self.positions is not None:
            tensors["positions"] = torch.from_numpy(self.positions.copy())
        if self.constraints is not None and len(self.constraints):
            tensors["constraints.atoms"] = torch.from_numpy(self.constraints.atoms.copy())
            tensors["constraints.distances"] = torch.from_numpy(self.constraints.distances.copy())
        terms = []
        for k, term in enumerate(self._module.terms):
            names = []
            # the state dict: persistent buffers, including those of sub-modules (dotted names)
            for name, buf in term.state_dict().items():
                tensors[f"terms.{k}.{name}"] = buf.detach().cpu().contiguous()
                names.append(name)
            terms.append({"kind": term.kind, "spec": term.spec(), "buffers": names})
        header = {
            "format": _FORMAT, "version": _VERSION, "n_atoms": self._module.n_atoms,
            "temperature": self.temperature, "constrained": self.constrained, "terms": terms,
            "precision": self.precision,
            "topology": None if self.topology is None else topology_to_dict(self.topology),
        }
        # through a fresh temporary file: never written through a link planted at ``path``
        write_via_temp(path, lambda tmp: save_file(tensors, tmp, metadata={_FORMAT: json.dumps(header)}))

    def __repr__(self) -> str:
        kinds = ", ".join(t.kind for t in self._module.terms)
        mixed = ", precision='mixed'" if self.precision == "mixed" else ""
        kernels = "" if self.kernels == "auto" else f", kernels={self.kernels!r}"
        return (f"TorchForceField(n_atoms={self.event_shape[0]}, temperature={self.temperature:g} K, "
                f"terms=[{kinds}]{mixed}{kernels})")


def _copy_module(module: ForceFieldModule) -> ForceFieldModule:
    return copy.deepcopy(module)


def _is_compiling() -> bool:
    """Whether torch.compile is tracing this call (``torch.compiler.is_compiling`` from torch 2.3 on)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check()) if check is not None else bool(torch._dynamo.is_compiling())


def _check_fusable(module: ForceFieldModule) -> None:
    """Raise unless ``kernels="fused"`` can work: numba installed and some term recognised."""
    if not numba_available():
        raise ValueError("kernels='fused' needs numba, which is not installed (pip install numba); "
                         "use kernels='auto' or 'torch'")
    if not fusable_kinds(module):
        kinds = ", ".join(t.kind for t in module.terms) or "none"
        raise ValueError(f"kernels='fused': no term of this force field has a fused kernel (terms: {kinds}); "
                         "use kernels='auto' or 'torch'")


def load_forcefield(path: PathLike) -> TorchForceField:
    """Load a force field written by :meth:`TorchForceField.save` (torch + safetensors only).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    TorchForceField
        The topology is rebuilt when mdtraj is installed, otherwise it is None.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"force-field file {path!r} does not exist")
    header, tensors = saved_format.read_checked(path, _FORMAT, _VERSION)  # schema before building
    kinds = load_term_kinds()
    terms = []
    for k, entry in enumerate(header["terms"]):
        cls = kinds.get(entry["kind"])
        if cls is None:
            raise ValueError(f"{path!r} has a term of kind {entry['kind']!r}, which this langevin_md does not know")
        buffers = {name: tensors[f"terms.{k}.{name}"] for name in entry["buffers"]}
        try:
            terms.append(cls.from_spec(entry["spec"], buffers))
        except (ValueError, KeyError, TypeError) as exc:  # a spec the schema cannot know (expressions)
            raise ValueError(f"saved force field {path!r}: header field terms[{k}] ({entry['kind']}): {exc}") from None
    module = ForceFieldModule(terms, header["n_atoms"])
    topology = None
    if header.get("topology") is not None:
        try:
            topology = topology_from_dict(header["topology"])
        except ImportError:
            topology = None
    positions = tensors["positions"].numpy() if "positions" in tensors else None
    constraints = None
    if "constraints.atoms" in tensors:
        constraints = Constraints(tensors["constraints.atoms"].numpy(), tensors["constraints.distances"].numpy())
    return TorchForceField(module, tensors["masses"].numpy(), header["temperature"], topology, positions,
                           header["constrained"], constraints, header.get("precision", "double"))


# --------------------------------------------------------------------------- topology as JSON
def topology_to_dict(topology) -> dict[str, Any]:
    """An mdtraj Topology as JSON-able chains → residues → atoms, plus bonds."""
    chains = []
    for chain in topology.chains:
        residues = []
        for res in chain.residues:
            atoms = [[a.name, None if a.element is None else a.element.symbol] for a in res.atoms]
            residues.append({"name": res.name, "resSeq": int(res.resSeq),
                             "segment_id": getattr(res, "segment_id", ""), "atoms": atoms})
        chains.append(residues)
    bonds = [[int(a.index), int(b.index)] for a, b in topology.bonds]
    return {"chains": chains, "bonds": bonds}


def topology_from_dict(data: dict[str, Any]):
    """Inverse of :func:`topology_to_dict` (needs mdtraj)."""
    import mdtraj  # optional and slow to import: a saved force field loads without it
    from mdtraj.core import element

    top = mdtraj.Topology()
    atoms = []
    for residues in data["chains"]:
        chain = top.add_chain()
        for res in residues:
            r = top.add_residue(res["name"], chain, resSeq=res["resSeq"], segment_id=res["segment_id"])
            for name, symbol in res["atoms"]:
                el = element.virtual if symbol is None else element.get_by_symbol(symbol)
                atoms.append(top.add_atom(name, el, r))
    for a, b in data["bonds"]:
        top.add_bond(atoms[a], atoms[b])
    return top
