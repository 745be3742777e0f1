"""Invariant coordinates and prior energy terms of coarse-grained (CG) bead models.

Everything here acts on bead positions ``R`` of shape ``(n, n_beads, 3)`` (nm) with index
arrays chosen once (mdtraj's style: selection apart from computation):

* :func:`bond_lengths`, :func:`bond_angles`, :func:`dihedral_angles`: batched geometry,
  smooth everywhere it is defined (angles by atan2 of |u×v| and u·v, not arccos).
* :class:`CGPrior`: the physical prior of CGnet and mlcg (Wang et al. 2019; Charron et al.
  2023): harmonic bonds ½k_b(r − r₀)², harmonic angles ½k_θ(θ − θ₀)², a dihedral Fourier
  series Σ_n a_n cos nφ + b_n sin nφ and a soft repulsion ε (σ/r)⁶ between beads not joined by
  a bond or an angle. Its parameters are buffers (fitted, not trained): see
  :func:`langevin_md.training.cg_priors.boltzmann_inversion`.
* :class:`InvariantFeatures`: the network's inputs, all pair distances, the angles, and each
  dihedral as (cos φ, sin φ), invariant under rotations and translations of the beads.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _index(name: str, idx, width: int, n_beads: int) -> torch.Tensor:
    a = np.asarray(idx if not isinstance(idx, torch.Tensor) else idx.cpu().numpy())
    if a.size == 0:
        return torch.zeros((0, width), dtype=torch.long)
    if a.ndim != 2 or a.shape[1] != width or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer bead indices of shape (m, {width}), got shape {a.shape}")
    if a.min() < 0 or a.max() >= n_beads:
        raise ValueError(f"{name} index {int(a.max() if a.max() >= n_beads else a.min())} is out of range "
                         f"for {n_beads} beads")
    for row in a:
        if len(set(row.tolist())) != width:
            raise ValueError(f"{name} row {row.tolist()} repeats a bead")
    return torch.tensor(a, dtype=torch.long)  # a copy: no buffer may share memory (safetensors)


def bond_lengths(R: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """|R_j − R_i| for rows (i, j) of ``pairs`` (m, 2): shape ``(n, m)``, nm."""
    d = R[:, pairs[:, 1]] - R[:, pairs[:, 0]]
    return torch.linalg.vector_norm(d, dim=-1)


def bond_angles(R: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    """Angle i-j-k at bead j for rows of ``triples`` (m, 3): shape ``(n, m)``, radians in [0, π]."""
    u = R[:, triples[:, 0]] - R[:, triples[:, 1]]
    v = R[:, triples[:, 2]] - R[:, triples[:, 1]]
    cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1)
    return torch.atan2(cross, (u * v).sum(-1))


def dihedral_angles(R: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """Dihedral i-j-k-l for rows of ``quads`` (m, 4): shape ``(n, m)``, radians in (−π, π].

    mdtraj's convention (IUPAC sign), as :func:`langevin_md.systems.features.dihedral`.
    """
    p0, p1, p2, p3 = (R[:, quads[:, a]] for a in range(4))
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    c1 = torch.linalg.cross(b2, b3, dim=-1)
    c2 = torch.linalg.cross(b1, b2, dim=-1)
    y = (b1 * c1).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
    return torch.atan2(y, (c1 * c2).sum(-1))


def chain_terms(n_beads: int) -> dict:
    """Bonds, angles and dihedrals of a linear chain of beads 0-1-…-(n−1), as int64 arrays."""
    if isinstance(n_beads, bool) or not isinstance(n_beads, (int, np.integer)) or n_beads < 2:
        raise ValueError(f"a chain needs an integer number of beads >= 2, got {n_beads!r}")
    i = np.arange(n_beads)
    return {"bonds": np.stack([i[:-1], i[1:]], 1),
            "angles": np.stack([i[:-2], i[1:-1], i[2:]], 1).reshape(-1, 3),
            "dihedrals": np.stack([i[:-3], i[1:-2], i[2:-1], i[3:]], 1).reshape(-1, 4)}


def nonbonded_pairs(n_beads: int, bonds, angles) -> np.ndarray:
    """Pairs (i < j) joined neither by a bond nor as the ends of an angle, shape ``(m, 2)``."""
    excluded = {tuple(sorted(map(int, b))) for b in np.asarray(bonds).reshape(-1, 2)}
    excluded |= {tuple(sorted((int(a[0]), int(a[2])))) for a in np.asarray(angles).reshape(-1, 3)}
    pairs = [(i, j) for i in range(n_beads) for j in range(i + 1, n_beads) if (i, j) not in excluded]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


class CGPrior(nn.Module):
    """Prior energy of a bead model, U_prior(R), shape ``(n,)``, kJ/mol.

    Parameters
    ----------
    n_beads : int
    bonds : int array (m_b, 2); bond_r0, bond_k : float arrays (m_b,) in nm and kJ/mol/nm²
    angles : int array (m_a, 3); angle_theta0, angle_k : float arrays (m_a,), rad and kJ/mol/rad²
    dihedrals : int array (m_d, 4); dihedral_cos, dihedral_sin : float arrays (m_d, n_fourier)
        Coefficients a_n, b_n (kJ/mol) of Σ_{n=1}^{n_fourier} a_n cos nφ + b_n sin nφ.
    repulsion : int array (m_r, 2); repulsion_sigma : float array (m_r,) nm; repulsion_epsilon : float
        ε (σ/r)⁶ on each pair (kJ/mol).

    Every parameter is a buffer: saved with the model, never trained by :func:`fit_forces`.
    """

    def __init__(self, n_beads: int, bonds, bond_r0, bond_k, angles, angle_theta0, angle_k,
                 dihedrals, dihedral_cos, dihedral_sin, repulsion, repulsion_sigma, repulsion_epsilon: float):
        super().__init__()
        self.n_beads = int(n_beads)
        f64 = lambda v, shape, name: _values(name, v, shape)  # noqa: E731
        self.register_buffer("bonds", _index("bonds", bonds, 2, self.n_beads))
        self.register_buffer("angles", _index("angles", angles, 3, self.n_beads))
        self.register_buffer("dihedrals", _index("dihedrals", dihedrals, 4, self.n_beads))
        self.register_buffer("repulsion", _index("repulsion", repulsion, 2, self.n_beads))
        nb, na, nd, nr = (len(getattr(self, k)) for k in ("bonds", "angles", "dihedrals", "repulsion"))
        self.register_buffer("bond_r0", f64(bond_r0, (nb,), "bond_r0"))
        self.register_buffer("bond_k", f64(bond_k, (nb,), "bond_k"))
        self.register_buffer("angle_theta0", f64(angle_theta0, (na,), "angle_theta0"))
        self.register_buffer("angle_k", f64(angle_k, (na,), "angle_k"))
        dc = np.asarray(dihedral_cos, dtype=np.float64)
        n_f = dc.shape[1] if dc.ndim == 2 else 0
        self.register_buffer("dihedral_cos", f64(dc, (nd, n_f), "dihedral_cos"))
        self.register_buffer("dihedral_sin", f64(dihedral_sin, (nd, n_f), "dihedral_sin"))
        self.register_buffer("repulsion_sigma", f64(repulsion_sigma, (nr,), "repulsion_sigma"))
        self.repulsion_epsilon = float(repulsion_epsilon)
        self.n_fourier = n_f

    def forward(self, R: torch.Tensor) -> torch.Tensor:
        u = R.new_zeros(R.shape[0])
        if len(self.bonds):
            r = bond_lengths(R, self.bonds)
            u = u + (0.5 * self.bond_k * (r - self.bond_r0) ** 2).sum(-1)
        if len(self.angles):
            t = bond_angles(R, self.angles)
            u = u + (0.5 * self.angle_k * (t - self.angle_theta0) ** 2).sum(-1)
        if len(self.dihedrals) and self.n_fourier:
            phi = dihedral_angles(R, self.dihedrals)
            n = torch.arange(1, self.n_fourier + 1, dtype=R.dtype, device=R.device)
            nphi = phi.unsqueeze(-1) * n
            u = u + (self.dihedral_cos * torch.cos(nphi) + self.dihedral_sin * torch.sin(nphi)).sum((-1, -2))
        if len(self.repulsion):
            r = bond_lengths(R, self.repulsion)
            u = u + self.repulsion_epsilon * ((self.repulsion_sigma / r) ** 6).sum(-1)
        return u

    def settings(self) -> dict:
        """JSON-able constructor settings that are not tensors."""
        return {"n_beads": self.n_beads, "repulsion_epsilon": self.repulsion_epsilon}


def _values(name: str, v, shape: tuple) -> torch.Tensor:
    a = np.asarray(v, dtype=np.float64).reshape(shape) if np.size(v) == int(np.prod(shape)) else None
    if a is None:
        raise ValueError(f"{name} must have shape {shape}, got shape {np.shape(v)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return torch.as_tensor(a)


class InvariantFeatures(nn.Module):
    """Rotation- and translation-invariant features of beads, shape ``(n, n_features)``.

    All n_beads(n_beads−1)/2 distances (nm), the given angles (rad) and, for each dihedral,
    cos φ and sin φ (so the features are continuous across ±π).
    """

    def __init__(self, n_beads: int, angles, dihedrals):
        super().__init__()
        iu = np.triu_indices(int(n_beads), 1)
        self.register_buffer("pairs", torch.as_tensor(np.stack(iu, 1), dtype=torch.long))
        self.register_buffer("angles", _index("angles", angles, 3, int(n_beads)))
        self.register_buffer("dihedrals", _index("dihedrals", dihedrals, 4, int(n_beads)))
        self.n_features = len(self.pairs) + len(self.angles) + 2 * len(self.dihedrals)

    def forward(self, R: torch.Tensor) -> torch.Tensor:
        parts = [bond_lengths(R, self.pairs)]
        if len(self.angles):
            parts.append(bond_angles(R, self.angles))
        if len(self.dihedrals):
            phi = dihedral_angles(R, self.dihedrals)
            parts += [torch.cos(phi), torch.sin(phi)]
        return torch.cat(parts, dim=-1)
