"""The built-in systems as plain data, for ``langevin-md systems``.

Listing the systems must not import torch, scipy or OpenMM: building
:func:`langevin_md.run.choices.system_choices` imports every system class (about 2 s), while this
table is a literal. ``tests/test_system_table.py`` checks that it agrees exactly with what
``system_choices()`` builds — names, kinds, descriptions, argument names, order and
defaults — so that adding or changing a system without updating this table fails the tests.
This module imports nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class _Required:
    """Marks an argument without a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an argument the user must give.
REQUIRED: Any = _Required()


class SystemEntry(NamedTuple):
    """One built-in system as ``[system] name = ...`` selects it.

    Attributes
    ----------
    kind : str
        ``"analytic"`` or ``"molecular"``.
    description : str
        One line.
    arguments : tuple of (str, object)
        The constructor's keyword arguments in signature order, each with its default
        (:data:`REQUIRED` when there is none).
    """

    kind: str
    description: str
    arguments: tuple


# Shared argument lists of the OpenMM-backed systems.
_RUNTIME = (("platform", "auto"), ("precision", None), ("device_index", None))
_ALANINE = (("temperature", 300.0), ("platform", "auto"), ("constraints", None), ("precision", None),
            ("device_index", None), ("engine", "auto"), ("hydrogen_mass", None))
#: The engine keys of the builders that default to OpenMM (files, the argon fluid).
_ENGINE = (("engine", "openmm"), ("hydrogen_mass", None))
_POLYALANINE = (("n_residues", 20), ("fold", "helix"), ("nonbonded_cutoff", None)) + _ALANINE
_SOLVENT = (("temperature", 300.0), ("strip", None), ("nonbonded_method", None), ("nonbonded_cutoff", 1.0),
            ("constraints", None))

#: Config name -> :class:`SystemEntry`, in the order ``system_choices()`` lists them.
SYSTEMS: dict[str, SystemEntry] = {
    # ------------------------------------------------------------------ analytic
    "harmonic": SystemEntry(
        "analytic", "Independent harmonic wells, U(x) = Σ_i k_i (x_i − μ_i)² / 2.",
        (("dim", 1), ("k", 1.0), ("kT", 1.0), ("mean", 0.0), ("masses", 1.0))),
    "free_particle": SystemEntry(
        "analytic", "No potential, U = 0: free diffusion, the reference for Brownian dynamics.",
        (("dim", 1), ("kT", 1.0), ("masses", 1.0))),
    "double_well": SystemEntry(
        "analytic", "A double well in x₁ with harmonic transverse coordinates.",
        (("dim", 1), ("barrier", 3.0), ("kT", 1.0), ("tilt", 0.0), ("masses", 1.0))),
    "muller_brown": SystemEntry(
        "analytic", "The Müller–Brown potential (Müller & Brown 1979).",
        (("kT", 1.0), ("energy_scale", 1.0), ("masses", 1.0))),
    "gaussian_mixture": SystemEntry(
        "analytic", "A Gaussian-mixture energy, U(x) = −log Σ_j w_j N(x; μ_j, Σ_j).",
        (("means", REQUIRED), ("covariances", 1.0), ("weights", None), ("kT", 1.0), ("masses", 1.0))),
    "uniform_box": SystemEntry(
        "analytic", "Uniform density in the box [low, high] kept by soft quadratic walls.",
        (("low", -1.0), ("high", 1.0), ("wall_stiffness", 1000.0), ("kT", 1.0), ("dim", None),
         ("masses", 1.0))),
    "lennard_jones_cluster": SystemEntry(
        "analytic", "A cluster of ``n_atoms`` Lennard-Jones particles, optionally confined.",
        (("n_atoms", REQUIRED), ("epsilon", 1.0), ("sigma", 1.0), ("kT", 0.2), ("confinement", "wall"),
         ("confinement_stiffness", None), ("confinement_radius", None))),
    # ------------------------------------------------------------------ molecular
    "alanine_dipeptide_vacuum": SystemEntry(
        "molecular", "ACE-ALA-NME, 22 atoms, Amber ff14SB in vacuum (OpenMM)", _ALANINE),
    "alanine_dipeptide_implicit": SystemEntry(
        "molecular", "ACE-ALA-NME, 22 atoms, Amber ff14SB + OBC2 implicit water (OpenMM)", _ALANINE),
    "lj_fluid": SystemEntry(
        "molecular", "liquid argon, 125 Lennard-Jones atoms, periodic box, 120 K default (OpenMM)",
        (("n_per_side", 5), ("reduced_density", 0.8), ("temperature", 120.0)) + _RUNTIME + _ENGINE),
    "polyalanine_vacuum": SystemEntry(
        "molecular",
        "ACE-(ALA)n-NME, 10n+12 atoms (helix or 3-helix bundle), Amber ff14SB in vacuum, optional cutoff (OpenMM)",
        _POLYALANINE),
    "polyalanine_implicit": SystemEntry(
        "molecular",
        "ACE-(ALA)n-NME, 10n+12 atoms (helix or 3-helix bundle), Amber ff14SB + OBC2, optional cutoff (OpenMM)",
        _POLYALANINE),
    "openmm_pdb": SystemEntry(
        "molecular",
        "any PDB/PDBx structure with OpenMM force-field XML files (systems.inputs.from_pdb); waters, "
        "ions or a box need strip or nonbonded_method; set trusted = true to allow <Script> blocks in "
        "user XML",
        (("pdb_path", REQUIRED), ("forcefield", ("amber14-all.xml", "implicit/obc2.xml")),
         ("temperature", 300.0), ("constraints", None)) + _RUNTIME
        + (("trusted", False), ("strip", None), ("nonbonded_method", None)) + _ENGINE),
    "openmm_xml": SystemEntry(
        "molecular",
        "a serialized openmm.System plus a PDB structure (systems.inputs.from_xml); set trusted = true "
        "to allow <Script> blocks",
        (("system_xml_path", REQUIRED), ("pdb_path_or_topology", REQUIRED), ("temperature", 300.0))
        + _RUNTIME + (("trusted", False),) + _ENGINE),
    "amber": SystemEntry(
        "molecular",
        "Amber prmtop + inpcrd/rst7 (systems.inputs.from_amber); waters or a box need strip or "
        "nonbonded_method",
        (("prmtop", REQUIRED), ("inpcrd", REQUIRED)) + _SOLVENT + (("implicit_solvent", None),) + _RUNTIME + _ENGINE),
    "gromacs": SystemEntry(
        "molecular",
        "GROMACS top + gro (systems.inputs.from_gromacs); every .gro has a box, so give strip or "
        "nonbonded_method",
        (("top", REQUIRED), ("gro", REQUIRED)) + _SOLVENT + (("include_dir", None),) + _RUNTIME + _ENGINE),
    "charmm": SystemEntry(
        "molecular", "CHARMM psf + parameter files + pdb/crd coordinates (systems.inputs.from_charmm)",
        (("psf", REQUIRED), ("parameter_files", REQUIRED), ("coordinates", REQUIRED)) + _SOLVENT
        + (("box", None),) + _RUNTIME + _ENGINE),
}
