"""Holonomic distance constraints as data: which atoms are held at which distance.

A :class:`Constraints` is read from an ``openmm.System`` (bonds to hydrogen, rigid water, ...)
and carried by the molecular systems, so OpenMM and the torch executor enforce the same list.
Solving them (SHAKE/RATTLE) is :mod:`langevin_md.integrators.constraints`; this module only
describes them, which is why the force field and the systems can import it without importing
an integrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Constraints", "constraints_of"]


@dataclass(frozen=True)
class Constraints:
    """A set of distance constraints (numpy, host side).

    Attributes
    ----------
    atoms : numpy.ndarray, int64, shape ``(n_constraints, 2)``
        The two atoms of each constraint.
    distances : numpy.ndarray, float64, shape ``(n_constraints,)``
        Constrained distances (nm for molecules).
    """

    atoms: np.ndarray
    distances: np.ndarray

    def __post_init__(self):
        atoms = np.asarray(self.atoms, dtype=np.int64).reshape(-1, 2)
        distances = np.asarray(self.distances, dtype=np.float64).reshape(-1)
        if atoms.shape[0] != distances.shape[0]:
            raise ValueError(f"constraints have {atoms.shape[0]} atom pairs but {distances.shape[0]} distances")
        if np.any(atoms < 0):
            raise ValueError(f"constraint atom indices must be non-negative, got {atoms[atoms.min(1) < 0][:5].tolist()}")
        if np.any(atoms[:, 0] == atoms[:, 1]):
            raise ValueError("a constraint joins an atom to itself")
        if np.any(~np.isfinite(distances)) or np.any(distances <= 0):
            raise ValueError(f"constraint distances must be finite and positive, got {distances[:5].tolist()} ...")
        object.__setattr__(self, "atoms", atoms)
        object.__setattr__(self, "distances", distances)

    def __len__(self) -> int:
        return int(self.distances.shape[0])

    @classmethod
    def from_openmm(cls, openmm_system) -> "Constraints":
        """The constraints of an ``openmm.System`` (distances in nm)."""
        from ..units import strip

        n = openmm_system.getNumConstraints()
        atoms = np.zeros((n, 2), dtype=np.int64)
        distances = np.zeros(n, dtype=np.float64)
        for k in range(n):
            i, j, d = openmm_system.getConstraintParameters(k)
            atoms[k] = (i, j)
            distances[k] = strip(d, "nanometer")
        return cls(atoms, distances)

    def components(self) -> list[list[int]]:
        """Constraint indices grouped by connected component of the constraint graph.

        For ``HBonds`` a component is a heavy atom with its one to three hydrogens; for a
        rigid water, its three distances.
        """
        parent: dict[int, int] = {}

        def find(a: int) -> int:
            parent.setdefault(a, a)
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for i, j in self.atoms.tolist():
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
        groups: dict[int, list[int]] = {}
        for k, (i, _) in enumerate(self.atoms.tolist()):
            groups.setdefault(find(i), []).append(k)
        return list(groups.values())


def constraints_of(system) -> Optional[Constraints]:
    """The distance constraints of a system, or None when it has none.

    Read from, in order: a ``constraints`` attribute holding :class:`Constraints` (the torch
    force field carries the ``openmm.System``'s list), an ``openmm_system`` attribute (the
    OpenMM bridge), or the first term of a sum that has either. So OpenMM and the torch
    executor see the same constraints: the ``openmm.System``'s.
    """
    c = getattr(system, "constraints", None)
    if isinstance(c, Constraints):
        return c if len(c) else None
    omm = getattr(system, "openmm_system", None)
    if omm is not None and hasattr(omm, "getNumConstraints"):
        return Constraints.from_openmm(omm) if omm.getNumConstraints() else None
    for _, term in getattr(system, "terms", ()):
        found = constraints_of(term)
        if found is not None:
            return found
    if getattr(system, "constrained", False):
        raise ValueError(
            f"{type(system).__name__} says it is constrained but exposes no constraint list (a "
            "`constraints` attribute of type Constraints, or an `openmm_system`), so the torch "
            "executor cannot enforce its constraints; give it one, or run an OpenMM system with "
            "backend='openmm'"
        )
    return None
