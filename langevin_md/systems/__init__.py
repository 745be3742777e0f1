"""Boltzmann targets p(x) ∝ exp(−U(x)/kT): analytic potentials, OpenMM force fields, learned
models and weighted sums of these."""

from .base import SumSystem, System
from .harmonic import FreeParticle, Harmonic

__all__ = ["System", "SumSystem", "Harmonic", "FreeParticle"]
