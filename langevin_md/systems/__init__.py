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
from .muller_brown import MullerBrown
from .openmm_system import OpenMMSystem
from .peptides import polyalanine
from .inputs import from_amber, from_charmm, from_gromacs
from .torch_models import BayesianPosterior, FeaturePrior, MinibatchSystem, ScoreModel, TorchEnergy
from . import features
from .platforms import available_platforms
from .torch_forcefield import TorchForceField, load_forcefield

__all__ = [
    "System", "SumSystem",
    "Harmonic", "FreeParticle", "DoubleWell", "MullerBrown", "GaussianMixture", "UniformBox",
    "LennardJonesCluster", "OpenMMSystem", "from_amber", "from_gromacs", "from_charmm", "alanine_dipeptide", "lennard_jones_fluid",
    "polyalanine",
    "CATALOGUE", "CatalogueEntry", "list_systems", "available_platforms",
    "TorchForceField", "load_forcefield",
    "TorchEnergy", "FeaturePrior", "ScoreModel", "MinibatchSystem", "BayesianPosterior", "features",
]
