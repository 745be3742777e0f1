"""Linear coarse-graining maps: bead positions and the mapped forces (Noid et al. 2008).

A linear map sends atomistic positions r (n_atoms, 3) to bead positions

.. math::  R_I = \\sum_i c_{Ii}\\, r_i ,\\qquad \\sum_i c_{Ii} = 1 ,

(the row sums of 1 make the map commute with translations). The forces on the beads that
force matching fits are a second linear map of the atomistic forces F (kJ/mol/nm),

.. math::  f_I = \\sum_i d_{Ii}\\, F_i .

Noid et al. (2008, eqs. 12–15) show that the force-matching minimiser is the many-body
potential of mean force (PMF) of the beads when, for every bead I,

1. ``Σ_i c_Ii d_Ji = δ_IJ`` (the force map is dual to the coordinate map), and
2. an atom contributing to the force of bead I contributes to no other bead's coordinates
   (the atoms with d_Ii ≠ 0 are *specific* to site I).

For sites that share no atoms (a selection of atoms, CGnet's slice of the backbone, or
non-overlapping weighted beads such as centres of mass) the standard choice is the **sum**
rule: ``d_Ii = 1`` for every atom i of bead I and 0 otherwise, so f_I = Σ_{i∈I} F_i, the total
force on the atoms of the bead. Condition 1 then holds because each row of c sums to 1. For
a selection (one atom per bead), f_I is the force on that atom. Averaging the forces
(d_Ii = 1/n_I) instead breaks condition 1 (Σ_i c_Ii d_Ii = 1/n_I) and fits n_I times too
weak a potential; :class:`CGMap` refuses such force weights.

Reference: W. G. Noid, J.-W. Chu, G. S. Ayton, V. Krishna, S. Izvekov, G. A. Voth, A. Das,
H. C. Andersen, "The multiscale coarse-graining method. I. A rigorous bridge between
atomistic and coarse-grained models", J. Chem. Phys. 128, 244114 (2008).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: Largest atom count accepted (the map is a dense (n_beads, n_atoms) matrix).
MAX_ATOMS = 1 << 20


class CGMap:
    """A linear map from atoms to beads, with its mapped-force rule.

    Parameters
    ----------
    weights : array_like, shape ``(n_beads, n_atoms)``
        Coordinate weights c (non-negative, each row summing to 1).
    force_weights : array_like, shape ``(n_beads, n_atoms)``, optional
        Force weights d. Default: the sum rule, d_Ii = 1 where c_Ii ≠ 0 (requires beads that
        share no atoms). Given weights are checked against Noid's conditions (see the module
        notes) and refused with the failing bead named.

    Attributes
    ----------
    n_beads, n_atoms : int
    weights, force_weights : numpy.ndarray, float64, shape ``(n_beads, n_atoms)``
    """

    def __init__(self, weights, force_weights=None):
        c = np.asarray(weights, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1 or c.shape[1] > MAX_ATOMS:
            raise ValueError(f"weights must have shape (n_beads, n_atoms), got {c.shape}")
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError("weights must be finite and non-negative")
        rows = c.sum(1)
        bad = np.flatnonzero(np.abs(rows - 1.0) > 1e-9)
        if bad.size:
            raise ValueError(f"the coordinate weights of bead {int(bad[0])} sum to {rows[bad[0]]:.6g}; "
                             "each bead's weights must sum to 1 (translation invariance)")
        support = c != 0
        if force_weights is None:
            shared = np.flatnonzero(support.sum(0) > 1)
            if shared.size:
                raise ValueError(f"atom {int(shared[0])} belongs to more than one bead; the sum rule for "
                                 "forces needs beads that share no atoms (pass force_weights)")
            d = support.astype(np.float64)
        else:
            d = np.asarray(force_weights, dtype=np.float64)
            if d.shape != c.shape:
                raise ValueError(f"force_weights must have the shape of weights {c.shape}, got {d.shape}")
            if not np.all(np.isfinite(d)):
                raise ValueError("force_weights must be finite")
            dual = c @ d.T
            off = np.abs(dual - np.eye(c.shape[0]))
            if off.max() > 1e-9:
                i, j = np.unravel_index(int(off.argmax()), off.shape)
                raise ValueError(
                    f"force_weights break Noid et al.'s condition Σ_i c_Ii d_Ji = δ_IJ at beads ({i}, {j}): "
                    f"got {dual[i, j]:.6g}, expected {float(i == j):g}. For beads sharing no atoms use the "
                    "sum rule (d_Ii = 1 for the atoms of bead I): averaging forces is wrong")
            for j in range(c.shape[0]):
                others = np.delete(support, j, axis=0).any(0)
                clash = np.flatnonzero((d[j] != 0) & others)
                if clash.size:
                    raise ValueError(f"atom {int(clash[0])} carries force to bead {j} but is part of another "
                                     "bead's coordinates (Noid et al.'s specificity condition)")
        self.weights = c
        self.force_weights = d
        self.n_beads, self.n_atoms = c.shape

    @classmethod
    def selection(cls, indices: Sequence[int], n_atoms: int) -> "CGMap":
        """Beads at single atoms (CGnet's slice map): R_I = r_{indices[I]}, f_I = F_{indices[I]}."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError(f"indices must be a non-empty 1-D sequence of atom indices, got {indices!r}")
        n_atoms = _count(n_atoms)
        if idx.min() < 0 or idx.max() >= n_atoms:
            raise ValueError(f"atom indices {idx.tolist()} are out of range for {n_atoms} atoms")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"atom indices {idx.tolist()} repeat an atom")
        c = np.zeros((idx.size, n_atoms))
        c[np.arange(idx.size), idx] = 1.0
        return cls(c)

    @classmethod
    def centre_of_mass(cls, groups: Sequence[Sequence[int]], masses) -> "CGMap":
        """Beads at the centres of mass of disjoint atom groups; forces by the sum rule."""
        m = np.asarray(masses, dtype=np.float64)
        if m.ndim != 1 or not np.all(m > 0):
            raise ValueError(f"masses must be a 1-D array of positive numbers (amu), got shape {m.shape}")
        c = np.zeros((len(groups), m.size))
        for bead, g in enumerate(groups):
            g = np.asarray(g)
            if g.ndim != 1 or g.size == 0 or g.dtype.kind not in "iu" or g.min() < 0 or g.max() >= m.size:
                raise ValueError(f"group {bead} must be a non-empty list of atom indices below {m.size}, got {g!r}")
            c[bead, g] = m[g] / m[g].sum()
        return cls(c)

    def bead_masses(self, masses) -> np.ndarray:
        """Bead masses (amu), shape ``(n_beads,)``: the total mass of each bead's atoms."""
        m = np.asarray(masses, dtype=np.float64)
        if m.shape != (self.n_atoms,):
            raise ValueError(f"masses must have shape ({self.n_atoms},), got {m.shape}")
        return (self.force_weights != 0).astype(np.float64) @ m

    def _apply(self, matrix: np.ndarray, x, what: str):
        t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
        if t.ndim != 3 or t.shape[1] != self.n_atoms or t.shape[2] != 3:
            raise ValueError(f"{what} must have shape (n_frames, {self.n_atoms}, 3), got {tuple(t.shape)}")
        if not t.is_floating_point():
            t = t.to(torch.float64)
        m = torch.as_tensor(matrix, dtype=t.dtype, device=t.device)
        out = torch.einsum("ia,nad->nid", m, t)
        return out if isinstance(x, torch.Tensor) else out.numpy()

    def map_positions(self, positions):
        """Bead positions R = c r: ``(n_frames, n_atoms, 3)`` -> ``(n_frames, n_beads, 3)``, nm.

        Numpy in, numpy out; a tensor in, a tensor out (same dtype and device).
        """
        return self._apply(self.weights, positions, "positions")

    def map_forces(self, forces):
        """Mapped forces f = d F: ``(n_frames, n_atoms, 3)`` -> ``(n_frames, n_beads, 3)``, kJ/mol/nm."""
        return self._apply(self.force_weights, forces, "forces")

    def __repr__(self) -> str:
        return f"CGMap(n_beads={self.n_beads}, n_atoms={self.n_atoms})"


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_ATOMS:
        raise ValueError(f"n_atoms must be an integer in [1, {MAX_ATOMS}], got {n!r}")
    return int(n)
