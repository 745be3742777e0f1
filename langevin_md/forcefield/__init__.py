"""Batched torch force fields compiled from an ``openmm.System``.

Every term of the force field is evaluated for all walkers in one tensor computation, on CPU
or CUDA, in float32 or float64, so a learned prior joins the same autograd graph and the whole
step can be compiled. OpenMM stays the source of truth: parameters are read from the
``openmm.System`` that OpenMM's ``ForceField`` built, and energies are tested against OpenMM's
Reference platform.

This package is a pure compiler: it imports nothing from the rest of langevin_md but
:mod:`langevin_md.units`. The System built on its terms, :class:`TorchForceField`, lives in
:mod:`langevin_md.systems.torch_forcefield` (``langevin_md.systems.TorchForceField``,
``langevin_md.systems.load_forcefield``): get one with
:meth:`langevin_md.systems.OpenMMSystem.to_torch` (or a molecule builder's ``engine``), or read
a saved one without OpenMM with ``load_forcefield``.
"""

from langevin_md.forcefield.build import compile_forcefield, unsupported_forces

__all__ = ["compile_forcefield", "unsupported_forces"]
