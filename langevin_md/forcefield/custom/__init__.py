"""OpenMM's custom forces as batched torch terms, through one expression translator.

Every custom force's energy expression is parsed by :mod:`langevin_md.forcefield.expression`
and evaluated on tensors that hold, for all walkers at once, the geometric variables (``r``,
``theta``, ``x``...), the per-particle / per-term parameters and the global parameters.

Layout and forces: the terms are walker-last
(:class:`~langevin_md.forcefield.batched.WalkerLastTerm`): positions ``(n_atoms, 3,
n_walkers)``, so gathers copy contiguous rows and every operation is a long loop over walkers.
Forces are not taken by autograd through the gathers: each expression is differentiated
symbolically (Lepton's rules) with respect to its geometric variables and computed values, the
derivatives are evaluated in the same pass as the energy (shared subexpressions once), and the
chain rule to positions is written out: ``dE/dr * (r_vec / r)`` for pairs, closed forms for
angles and dihedrals, and for CustomGBForce a reverse sweep over the computed values as in
OpenMM's Reference ``calculateChainRuleForces``. The energy alone (``energy``) stays an
ordinary differentiable torch computation, for use inside larger autograd graphs.

Closed-form versus autograd forces, measured for the ``implicit/obc2.xml`` CustomGBForce on
alanine dipeptide, 1024 walkers, float32, one CPU thread of a heavily loaded 2-core machine
(best of 7-9, so only ratios within one run mean much): eager closed form 44-65 ms, eager
autograd through the same energy 50-60 ms, energy alone 19-23 ms; compiled (inductor) closed
form 6-15 ms, compiled autograd 12-31 ms (2x slower in every run). Releasing each
intermediate tensor after its last use mattered most in eager mode (2-3x: large temporaries
that stay alive force fresh, page-faulting allocations). The closed form is one graph with no
``autograd.grad`` inside, so ``torch.compile`` fuses it whole (``fullgraph=True`` works;
with a cutoff, the neighbour-list update is a graph break between the pieces).
Walkers are processed in chunks when a term has many pairs (see ``common.ELEMENTS_PER_CHUNK``),
which bounds the memory of large molecules at many walkers.

Terms
-----
- :class:`CustomBondedTerm` (``kind = "custom_bonded"``): ``CustomBondForce`` (``r``),
  ``CustomAngleForce`` (``theta``), ``CustomTorsionForce`` (``theta``, the dihedral in
  ``[-pi, pi]`` with OpenMM's sign), ``CustomExternalForce`` (``x, y, z``) and
  ``CustomCompoundBondForce`` (``x1, y1, z1, ...``, ``distance(p1,p2)``, ``angle(p1,p2,p3)``,
  ``dihedral(p1,p2,p3,p4)``).
- :class:`CustomNonbondedTerm` (``kind = "custom_nonbonded"``): ``CustomNonbondedForce`` with
  ``NoCutoff`` or ``CutoffNonPeriodic``, exclusions, interaction groups, switching function,
  per-particle parameters (``name1``, ``name2``) and computed values.
- :class:`CustomGBTerm` (``kind = "custom_gb"``): ``CustomGBForce`` (computed values of type
  ``SingleParticle`` / ``ParticlePair`` / ``ParticlePairNoExclusions``, energy terms of the same
  types, exclusions, non-periodic cutoff). This is what ``implicit/obc2.xml``, ``gbn2.xml`` etc.
  produce.

Pair interactions use a fixed list of particle pairs (all pairs minus exclusions, or the
interaction groups' pairs), evaluated densely for all walkers; with a cutoff, only the pairs of
a neighbour list on a skin (:mod:`langevin_md.forcefield.neighbours`) are evaluated, and
those beyond the cutoff are masked.

Semantics follow OpenMM's Reference platform. Global parameters take their default values
from the ``openmm.System``. Not supported (ValueError naming the force and the feature):
periodic boundary conditions (``CutoffPeriodic``, ``periodicdistance``, bonded forces set to use
periodic boundaries), ``Continuous3DFunction``, and any function the expression language does
not have. Energy-parameter derivatives requested on a force are
ignored (they do not change the energy).

Pair order: with a cutoff and no interaction groups OpenMM takes pairs from its neighbour list,
whose order of the two particles is unspecified; for the (physically usual) symmetric
expressions this does not matter. Without a cutoff, particle 1 is the lower index; within an
interaction group, particle 1 comes from the first set.
"""

from __future__ import annotations

from .bonded import (CustomBondedTerm, build_custom_angle, build_custom_bond, build_custom_compound_bond,
                     build_custom_external, build_custom_torsion)
from .gb import CustomGBTerm, build_custom_gb
from .nonbonded import CustomNonbondedTerm, build_custom_nonbonded

__all__ = ["CustomBondedTerm", "CustomNonbondedTerm", "CustomGBTerm", "build_custom_bond", "build_custom_angle",
           "build_custom_torsion", "build_custom_external", "build_custom_compound_bond", "build_custom_nonbonded",
           "build_custom_gb"]
