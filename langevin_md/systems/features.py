"""Differentiable molecular features in torch: distances and dihedral angles.

These let a learned prior live on chemically meaningful coordinates (e.g. the backbone
dihedrals φ/ψ) while forces still reach every Cartesian coordinate through autograd. The
conventions are mdtraj's (``mdtraj.compute_distances``, ``mdtraj.compute_dihedrals``):
nm, radians in (−π, π], the IUPAC sign of the dihedral.

Index selection is kept separate from computation (mdtraj's style): :func:`ramachandran_indices`
finds the φ/ψ quadruples of a topology once; :func:`dihedral` evaluates them every step.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

Index = Union[int, np.integer, np.ndarray, torch.Tensor, list, tuple]


def _atoms(x: torch.Tensor, i: Index) -> torch.Tensor:
    """Positions of atom(s) ``i``: ``(..., 3)`` for an int, ``(..., m, 3)`` for m indices."""
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"positions must have shape (..., n_atoms, 3), got {tuple(x.shape)}")
    if isinstance(i, (int, np.integer)):
        if not -x.shape[-2] <= int(i) < x.shape[-2]:
            raise ValueError(f"atom index {int(i)} is out of range for {x.shape[-2]} atoms")
        return x[..., int(i), :]
    idx = torch.as_tensor(np.asarray(i) if not isinstance(i, torch.Tensor) else i, dtype=torch.long,
                          device=x.device)
    if idx.ndim != 1:
        raise ValueError(f"atom indices must be an int or a 1-D sequence, got shape {tuple(idx.shape)}")
    if idx.numel() and (idx.max() >= x.shape[-2] or idx.min() < -x.shape[-2]):
        raise ValueError(f"atom indices {idx.tolist()} are out of range for {x.shape[-2]} atoms")
    return x.index_select(-2, idx)


def distance(x: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
    """Distance between atoms i and j (as ``mdtraj.compute_distances``, no periodic images).

    Parameters
    ----------
    x : torch.Tensor, shape ``(..., n_atoms, 3)``
        Positions (nm).
    i, j : int or 1-D sequence of int (same length)
        Atom indices; sequences give m distances at once.

    Returns
    -------
    torch.Tensor, shape ``(...)`` for ints, ``(..., m)`` for sequences, nm.
    """
    d = _atoms(x, j) - _atoms(x, i)
    return torch.linalg.vector_norm(d, dim=-1)


def dihedral(x: torch.Tensor, i: Index, j: Index, k: Index, l: Index) -> torch.Tensor:
    """Dihedral angle i-j-k-l (as ``mdtraj.compute_dihedrals``), in radians, (−π, π].

    With b₁ = x_j − x_i, b₂ = x_k − x_j, b₃ = x_l − x_k:
    φ = atan2(|b₂| b₁·(b₂×b₃), (b₁×b₂)·(b₂×b₃)) (Blondel & Karplus 1996, J. Comput. Chem.
    17, 1132), which is smooth wherever b₁×b₂ and b₂×b₃ are non-zero (no arccos, whose
    gradient blows up at 0 and π).

    Parameters
    ----------
    x : torch.Tensor, shape ``(..., n_atoms, 3)``
    i, j, k, l : int or 1-D sequence of int (same length)

    Returns
    -------
    torch.Tensor, shape ``(...)`` for ints, ``(..., m)`` for sequences, radians.
    """
    p0, p1, p2, p3 = (_atoms(x, a) for a in (i, j, k, l))
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    c1 = torch.linalg.cross(b2, b3, dim=-1)
    c2 = torch.linalg.cross(b1, b2, dim=-1)
    y = (b1 * c1).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
    xx = (c1 * c2).sum(-1)
    return torch.atan2(y, xx)


def ramachandran_indices(topology) -> tuple[np.ndarray, np.ndarray]:
    """Atom quadruples of the backbone φ and ψ dihedrals, found with mdtraj.

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    phi, psi : numpy.ndarray of int, shape ``(n_phi, 4)`` and ``(n_psi, 4)``
        (C₋₁, N, Cα, C) and (N, Cα, C, N₊₁); one row each for alanine dipeptide.
    """
    import mdtraj

    if not isinstance(topology, mdtraj.Topology):
        raise TypeError(f"topology must be an mdtraj.Topology, got {type(topology).__name__}")
    traj = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    phi, _ = mdtraj.compute_phi(traj)
    psi, _ = mdtraj.compute_psi(traj)
    if len(phi) == 0 or len(psi) == 0:
        raise ValueError("the topology has no backbone φ/ψ dihedrals (is it a peptide?)")
    return phi, psi


class PhiPsi(torch.nn.Module):
    """Feature function ``(n_walkers, n_atoms, 3) -> (n_walkers, 2)``: (φ, ψ) in radians.

    A module (not a lambda) so that it can be composed, moved and ``torch.compile``d.

    Parameters
    ----------
    phi, psi : sequence of 4 int
        Atom quadruples, e.g. the first rows of :func:`ramachandran_indices`.
    """

    def __init__(self, phi, psi):
        super().__init__()
        phi, psi = np.asarray(phi, dtype=np.int64).reshape(-1), np.asarray(psi, dtype=np.int64).reshape(-1)
        if phi.shape != (4,) or psi.shape != (4,):
            raise ValueError(f"phi and psi must each be 4 atom indices, got {phi.tolist()} and {psi.tolist()}")
        self.phi = tuple(int(a) for a in phi)
        self.psi = tuple(int(a) for a in psi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([dihedral(x, *self.phi), dihedral(x, *self.psi)], dim=-1)
