"""The names a run config can select: systems, integrators and the [sampler] keys.

:func:`system_choices` and :func:`integrator_choices` map config names onto constructors;
:func:`sampler_targets` maps each ``[sampler]`` key onto the callable and parameter it is
passed to, reading the options each executor declares (``OPTIONS``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Callable

from .. import integrators
from ..errors import ConfigError
from ..executors import Sampler, sample
from ..integrators.base import Integrator
from ..integrators.metric import ADAPTIVE_KINDS
from ..io.checkpoint import CheckpointReporter
from ..systems import inputs, molecules, peptides

__all__ = ["Choice", "system_choices", "integrator_choices", "sampler_targets", "call_choice"]

@dataclass(frozen=True)
class Choice:
    """A named constructor that a config table can select with ``name = ...``.

    Attributes
    ----------
    name : str
    factory : callable
        Called with the table's other keys as keyword arguments.
    kind : str
        ``"analytic"`` or ``"molecular"`` (systems), ``"integrator"``.
    description : str
    path_keys : tuple of str
        Keys holding file paths; relative paths are taken relative to the config file.
    dir_keys : tuple of str
        Keys holding folder paths, resolved the same way.
    path_keywords : tuple of str
        Words a path key may hold instead of a path (``preconditioner = "diagonal"``), kept as
        written (compared case-insensitively).
    """

    name: str
    factory: Callable
    kind: str
    description: str
    path_keys: tuple = ()
    dir_keys: tuple = ()
    path_keywords: tuple = ()


# Analytic systems: (name, module, class). Modules are imported only when listed or used.
_ANALYTIC = (
    ("harmonic", "harmonic", "Harmonic"),
    ("free_particle", "harmonic", "FreeParticle"),
    ("double_well", "double_well", "DoubleWell"),
    ("muller_brown", "muller_brown", "MullerBrown"),
    ("gaussian_mixture", "mixture", "GaussianMixture"),
    ("uniform_box", "box", "UniformBox"),
    ("lennard_jones_cluster", "lennard_jones", "LennardJonesCluster"),
)

# [sampler] keys taken from Sampler.run's signature.
_RUN_KEYS = ("n_steps", "record_every", "burn_in")

# Integrator names that are not simply the lower-cased class name.
_INTEGRATOR_ALIASES = {"RandomWalkMetropolis": "rwm"}


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _analytic_systems() -> dict[str, Choice]:
    out = {}
    for name, module, cls_name in _ANALYTIC:
        # A module or class missing here is a broken installation: let the error surface.
        cls = getattr(importlib.import_module(f"langevin_md.systems.{module}"), cls_name)
        out[name] = Choice(name, cls, "analytic", _first_line(cls))
    return out


def _molecular_systems() -> dict[str, Choice]:
    out = {}
    for name, entry in molecules.CATALOGUE.items():
        out[name] = Choice(name, entry.factory, "molecular", entry.description)
    for name, entry in peptides.CATALOGUE.items():
        out[name] = Choice(name, entry.factory, "molecular", entry.description)

    out["openmm_pdb"] = Choice(
        "openmm_pdb", inputs.from_pdb, "molecular",
        "any PDB/PDBx structure with OpenMM force-field XML files (systems.inputs.from_pdb); waters, "
        "ions or a box need strip or nonbonded_method; "
        "set trusted = true to allow <Script> blocks in user XML",
        path_keys=("pdb_path", "forcefield"))
    out["openmm_xml"] = Choice(
        "openmm_xml", inputs.from_xml, "molecular",
        "a serialized openmm.System plus a PDB structure (systems.inputs.from_xml); "
        "set trusted = true to allow <Script> blocks",
        path_keys=("system_xml_path", "pdb_path_or_topology"))
    out["amber"] = Choice(
        "amber", inputs.from_amber, "molecular",
        "Amber prmtop + inpcrd/rst7 (systems.inputs.from_amber); waters or a box need strip or "
        "nonbonded_method", path_keys=("prmtop", "inpcrd"))
    out["gromacs"] = Choice(
        "gromacs", inputs.from_gromacs, "molecular",
        "GROMACS top + gro (systems.inputs.from_gromacs); every .gro has a box, so give strip or "
        "nonbonded_method", path_keys=("top", "gro"), dir_keys=("include_dir",))
    out["charmm"] = Choice(
        "charmm", inputs.from_charmm, "molecular",
        "CHARMM psf + parameter files + pdb/crd coordinates (systems.inputs.from_charmm)",
        path_keys=("psf", "parameter_files", "coordinates"))
    return out


def system_choices() -> dict[str, Choice]:
    """Every built-in system by config name: analytic potentials and the molecular catalogue."""
    out = _analytic_systems()
    out.update(_molecular_systems())
    return out


def integrator_choices() -> dict[str, Choice]:
    """Every integrator by config name: the class name in snake case (``BAOAB`` -> ``baoab``,
    ``AnnealedLangevin`` -> ``annealed_langevin``), ``rwm`` for random-walk Metropolis."""
    out = {}
    for cls_name in integrators.__all__:
        cls = getattr(integrators, cls_name)
        # ReplicaExchange wraps another integrator, which a TOML table cannot hold: [tempering].
        if (isinstance(cls, type) and issubclass(cls, Integrator) and cls is not Integrator
                and cls_name != "ReplicaExchange"):
            name = _INTEGRATOR_ALIASES.get(cls_name, re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls_name).lower())
            # A preconditioner may be a file (M.npy): relative to the config file, like every path.
            has_metric = "preconditioner" in inspect.signature(cls).parameters
            out[name] = Choice(name, cls, "integrator", _first_line(cls),
                               path_keys=("preconditioner",) if has_metric else (),
                               path_keywords=("none",) + tuple(ADAPTIVE_KINDS) if has_metric else ())
    return out


def sampler_targets() -> dict[str, tuple[Callable, str]]:
    """[sampler] keys and the (callable, parameter) each one is passed to.

    ``backend`` is :func:`langevin_md.sample`'s; the executor keys are the ``OPTIONS`` the
    torch executor declares, a superset of every other backend's (whose ``OPTIONS`` are read
    when it is built: a key a backend does not declare must keep its default). The OpenMM
    executor is not imported here, so reading a config never imports OpenMM.
    """
    out = {}
    for p in Sampler.OPTIONS:
        out[p] = (Sampler.__init__, p)
    # The run's length and recording, with Sampler.run's defaults (the runner calls run_to).
    for p in _RUN_KEYS:
        out[p] = (Sampler.run, p)
    out["checkpoint_every"] = (CheckpointReporter.__init__, "every")
    out["backend"] = (sample, "backend")
    return out


def call_choice(where: str, choice: Choice, kwargs: dict):
    """``choice.factory(**kwargs)``; a TypeError or ValueError becomes a :class:`ConfigError`
    naming ``where`` and the choice."""
    try:
        return choice.factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} name = {choice.name!r}: {exc}") from None
