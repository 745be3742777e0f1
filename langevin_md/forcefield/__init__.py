"""Batched torch force fields compiled from an ``openmm.System``.

Every term of the force field is evaluated for all walkers in one tensor computation, on CPU
or CUDA, in float32 or float64, so a learned prior joins the same autograd graph and the whole
step can be compiled. OpenMM stays the source of truth: parameters are read from the
``openmm.System`` that OpenMM's ``ForceField`` built, and energies are tested against OpenMM's
Reference platform.
"""
