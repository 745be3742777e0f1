"""Batched torch force fields compiled from an ``openmm.System``.

Every term of the force field is evaluated for all walkers in one tensor computation, on CPU
or CUDA, in float32 or float64, so a learned prior joins the same autograd graph and the whole
step can be compiled. OpenMM stays the source of truth: parameters are read from the
``openmm.System`` that OpenMM's ``ForceField`` built, and energies are tested against OpenMM's
Reference platform.

Use :meth:`langevin_md.systems.OpenMMSystem.to_torch` (or a molecule builder's ``engine``) to
get a :class:`TorchForceField`; :func:`load_forcefield` reads a saved one without OpenMM.
"""

from langevin_md.forcefield.build import compile_forcefield, unsupported_forces
from langevin_md.forcefield.system import TorchForceField, load_forcefield

__all__ = ["TorchForceField", "load_forcefield", "compile_forcefield", "unsupported_forces"]
