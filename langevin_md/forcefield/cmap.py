"""``CMAPTorsionForce``: an energy tabulated on a grid of two dihedrals, as a bicubic spline.

OpenMM interpolates each map with a bicubic patch per grid cell (``CMAPTorsionForceImpl``):
the derivatives ∂U/∂φ, ∂U/∂ψ and ∂²U/∂φ∂ψ at the grid points come from periodic cubic
splines through the grid rows, columns, and through the ∂U/∂ψ values, and the 16 coefficients
of each cell follow from the standard bicubic-interpolation matrix (Press et al., Numerical
Recipes, 3rd ed., §3.6.3). This module computes the same coefficients (the periodic spline
through a row is unique, so its knot derivatives agree with OpenMM's up to rounding) and
evaluates patch (s, t) at the fractional offsets (a, b) as U = Σᵢⱼ cᵢⱼ aⁱ bʲ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from langevin_md.forcefield.batched import Dihedrals, WalkerLastTerm, dihedral_spread
from langevin_md.forcefield.openmm_params import md, refuse_periodic
from langevin_md.forcefield.registry import builds, term_kind

#: The bicubic-interpolation weight matrix (Numerical Recipes ``wt``), row-major 16 × 16:
#: coefficient k = Σₘ W[m, k] rhs[m] with rhs = (U, δ·U_φ, δ·U_ψ, δ²·U_φψ) at the four corners.
_W = np.array([
    1, 0, -3, 2, 0, 0, 0, 0, -3, 0, 9, -6, 2, 0, -6, 4,
    0, 0, 0, 0, 0, 0, 0, 0, 3, 0, -9, 6, -2, 0, 6, -4,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, -6, 0, 0, -6, 4,
    0, 0, 3, -2, 0, 0, 0, 0, 0, 0, -9, 6, 0, 0, 6, -4,
    0, 0, 0, 0, 1, 0, -3, 2, -2, 0, 6, -4, 1, 0, -3, 2,
    0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 3, -2, 1, 0, -3, 2,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3, 2, 0, 0, 3, -2,
    0, 0, 0, 0, 0, 0, 3, -2, 0, 0, -6, 4, 0, 0, 3, -2,
    0, 1, -2, 1, 0, 0, 0, 0, 0, -3, 6, -3, 0, 2, -4, 2,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, -6, 3, 0, -2, 4, -2,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3, 3, 0, 0, 2, -2,
    0, 0, -1, 1, 0, 0, 0, 0, 0, 0, 3, -3, 0, 0, -2, 2,
    0, 0, 0, 0, 0, 1, -2, 1, 0, -2, 4, -2, 0, 1, -2, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 2, -1, 0, 1, -2, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, -1, 0, 0, -1, 1,
    0, 0, 0, 0, 0, 0, -1, 1, 0, 0, 2, -2, 0, 0, -1, 1,
], dtype=np.float64).reshape(16, 16)


def periodic_spline_slopes(y: np.ndarray) -> np.ndarray:
    """Slopes at the knots of the periodic cubic spline through ``y`` on a uniform 2π grid.

    Parameters
    ----------
    y : numpy.ndarray, shape ``(..., size)``
        Values at φ = 2πk/size, k = 0…size−1 (periodic: the value at 2π equals ``y[..., 0]``).

    Returns
    -------
    numpy.ndarray, same shape: dy/dφ at the knots.
    """
    size = y.shape[-1]
    h = 2.0 * math.pi / size
    # second derivatives M: M[k-1] + 4 M[k] + M[k+1] = 6 (y[k+1] − 2 y[k] + y[k-1]) / h²
    a = 4.0 * np.eye(size) + np.roll(np.eye(size), 1, axis=1) + np.roll(np.eye(size), -1, axis=1)
    rhs = 6.0 * (np.roll(y, -1, axis=-1) - 2.0 * y + np.roll(y, 1, axis=-1)) / (h * h)
    m = np.linalg.solve(a, rhs.reshape(-1, size).T).T.reshape(y.shape)
    return (np.roll(y, -1, axis=-1) - y) / h - h * (2.0 * m + np.roll(m, -1, axis=-1)) / 6.0


def patch_coefficients(size: int, energy: np.ndarray) -> np.ndarray:
    """Bicubic coefficients of every cell of one map.

    Parameters
    ----------
    size : int
    energy : numpy.ndarray, shape ``(size * size,)``, kJ/mol
        OpenMM's order: ``energy[i + size * j]`` at φ = 2πi/size, ψ = 2πj/size.

    Returns
    -------
    numpy.ndarray, shape ``(size * size, 16)``
        Row ``s + size * t`` holds cell (s, t)'s coefficients, index ``4 i + j`` for aⁱ bʲ.
    """
    u = np.asarray(energy, dtype=np.float64).reshape(size, size).T  # u[i, j]: φ index i, ψ index j
    d1 = periodic_spline_slopes(u.T).T  # along φ (axis 0)
    d2 = periodic_spline_slopes(u)  # along ψ (axis 1)
    d12 = periodic_spline_slopes(d2.T).T  # ∂/∂φ of ∂U/∂ψ
    delta = 2.0 * math.pi / size
    i = np.arange(size)[:, None]
    j = np.arange(size)[None, :]
    ni, nj = (i + 1) % size, (j + 1) % size
    corners = [(i, j), (ni, j), (ni, nj), (i, nj)]
    rhs = np.stack(
        [u[c] for c in corners] + [d1[c] * delta for c in corners] + [d2[c] * delta for c in corners]
        + [d12[c] * delta * delta for c in corners], axis=-1)  # (size_i, size_j, 16)
    coeff = rhs @ _W  # (size_i, size_j, 16)
    # cell (s, t) at row s + size * t
    return coeff.transpose(1, 0, 2).reshape(size * size, 16)


@term_kind
class CMAPTorsions(WalkerLastTerm):
    """U = Σ U_map(φ, ψ) over CMAP torsion pairs, bicubic between grid points.

    Parameters
    ----------
    n_atoms : int
    atoms : torch.Tensor, shape ``(4, 2t)``, int64
        The t φ quadruples, then the t ψ quadruples.
    table : torch.Tensor, shape ``(16, total_cells)``
        Coefficients of all maps' cells, cell-major per map, concatenated.
    first_cell : torch.Tensor, shape ``(t, 1)``, int64
        Offset of each torsion's map in ``table``.
    size : torch.Tensor, shape ``(t, 1)``, int64
        Grid size of each torsion's map.
    """

    kind = "cmap_torsion"

    def __init__(self, n_atoms: int, atoms, table, first_cell, size):
        super().__init__()
        self.n_atoms = int(n_atoms)
        self.spread = dihedral_spread(atoms)
        self.register_buffer("atoms", atoms)
        self.register_buffer("table", table)
        self.register_buffer("first_cell", first_cell)
        self.register_buffer("size", size)

    def spec(self) -> dict[str, Any]:
        return {"n_atoms": self.n_atoms}

    @classmethod
    def from_spec(cls, spec, buffers):
        return cls(spec["n_atoms"], buffers["atoms"], buffers["table"], buffers["first_cell"], buffers["size"])

    def accumulate(self, xt, ft):
        t = self.first_cell.shape[0]
        dih = Dihedrals(xt, self.atoms, self.spread)
        two_pi = 2.0 * math.pi
        angle = torch.remainder(dih.phi, two_pi)
        size_f = self.size.to(angle.dtype)
        delta = two_pi / size_f
        scaled_a = angle[:t] / delta
        scaled_b = angle[t:] / delta
        s = torch.minimum(scaled_a.floor(), size_f - 1.0)
        u = torch.minimum(scaled_b.floor(), size_f - 1.0)
        a = scaled_a - s
        b = scaled_b - u
        cell = self.first_cell + s.long() + self.size * u.long()  # (t, n)
        c = self.table.index_select(1, cell.reshape(-1)).reshape(16, *cell.shape)
        # Horner in b for each power of a, then in a
        rows = [((c[4 * i + 3] * b + c[4 * i + 2]) * b + c[4 * i + 1]) * b + c[4 * i] for i in range(4)]
        e_map = ((rows[3] * a + rows[2]) * a + rows[1]) * a + rows[0]
        e = e_map.sum(0)
        if ft is not None:
            db_rows = [(3.0 * c[4 * i + 3] * b + 2.0 * c[4 * i + 2]) * b + c[4 * i + 1] for i in range(4)]
            dU_da = (3.0 * rows[3] * a + 2.0 * rows[2]) * a + rows[1]
            dU_db = ((db_rows[3] * a + db_rows[2]) * a + db_rows[1]) * a + db_rows[0]
            dih.add_forces(ft, torch.cat((dU_da / delta, dU_db / delta)))
        return e


@builds("CMAPTorsionForce")
def build_cmap(force, system) -> list:
    refuse_periodic(force)
    tables, offsets, sizes = [], [], []
    start = 0
    for m in range(force.getNumMaps()):
        size, energy = force.getMapParameters(m)
        energy = np.array([md(v) for v in energy], dtype=np.float64)
        if size < 2 or energy.size != size * size:
            raise ValueError(f"CMAPTorsionForce map {m} has size {size} but {energy.size} energies")
        tables.append(patch_coefficients(size, energy))
        offsets.append(start)
        sizes.append(size)
        start += size * size
    phi_rows, psi_rows, first, size_of = [], [], [], []
    for k in range(force.getNumTorsions()):
        m, a1, a2, a3, a4, b1, b2, b3, b4 = force.getTorsionParameters(k)
        phi_rows.append((a1, a2, a3, a4))
        psi_rows.append((b1, b2, b3, b4))
        first.append(offsets[m])
        size_of.append(sizes[m])
    if not phi_rows:
        return []
    atoms = torch.from_numpy(np.ascontiguousarray(np.asarray(phi_rows + psi_rows, dtype=np.int64).T))
    table = torch.from_numpy(np.ascontiguousarray(np.concatenate(tables).T))
    first_cell = torch.tensor(first, dtype=torch.int64).reshape(-1, 1)
    size_t = torch.tensor(size_of, dtype=torch.int64).reshape(-1, 1)
    return [CMAPTorsions(system.getNumParticles(), atoms, table, first_cell, size_t)]
