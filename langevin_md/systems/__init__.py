"""Boltzmann targets p(x) ∝ exp(−U(x)/kT): analytic potentials, OpenMM force fields, learned
models and weighted sums of these.

OpenMM, mdtraj and ASE are imported only when a system that needs them is built.
"""

from .base import SumSystem, System
from .box import UniformBox
from .double_well import DoubleWell
from .harmonic import FreeParticle, Harmonic
from .lennard_jones import LennardJonesCluster
from .mixture import GaussianMixture
from .molecules import CATALOGUE, CatalogueEntry, alanine_dipeptide, lennard_jones_fluid, list_systems
from .cg_model import CGEnergy, CGModel
from .cg_terms import CGPrior
from .muller_brown import MullerBrown
from .openmm_system import OpenMMSystem
from .inputs import from_amber, from_charmm, from_gromacs, from_pdb, from_xml
from .peptides import polyalanine
from .prior_sum import AtomSelection, ForceFieldWithPrior
from .torch_models import BayesianPosterior, FeaturePrior, MinibatchSystem, ScoreModel, TorchEnergy
from . import features
from .platforms import available_platforms
from .torch_forcefield import TorchForceField, load_forcefield

__all__ = [
    "System", "SumSystem",
    "Harmonic", "FreeParticle", "DoubleWell", "MullerBrown", "GaussianMixture", "UniformBox",
    "LennardJonesCluster", "OpenMMSystem", "from_pdb", "from_xml", "from_amber", "from_gromacs", "from_charmm", "alanine_dipeptide", "lennard_jones_fluid",
    "polyalanine",
    "CATALOGUE", "CatalogueEntry", "list_systems", "available_platforms",
    "TorchForceField", "load_forcefield",
    "TorchEnergy", "FeaturePrior", "ForceFieldWithPrior", "AtomSelection", "CGModel", "CGEnergy", "CGPrior", "ScoreModel", "MinibatchSystem", "BayesianPosterior", "features",
]
