"""SHAKE and RATTLE on blocks of walkers in the lanes layout: numba kernels for the fused BAOAB step.

The same equations as :class:`langevin_md.integrators.constraints.ConstraintSolver` (read its
module docstring for the derivation), written for one block of B walkers stored as
``(n_atoms, 3, B)`` with the walkers innermost (the layout of
``langevin_md/forcefield/fused/lanes.py``), so that every loop over walkers is a unit-stride
loop LLVM can vectorise:

* **SHAKE** (:func:`shake_block`): x' = x̃ + M⁻¹ G(x₀)ᵀ λ with g(x') = 0, by Newton's method
  on each cluster's b×b system (M-SHAKE). In bond space the update is linear in λ, so the
  current bonds S are updated by ΔS_k = Σ_l c_kl Δλ_l R_l (c = C M⁻¹ Cᵀ, R the reference
  bonds) and the residual after a step is exactly |ΔS_k|²; atoms move once, at the end.
  :func:`shake_block_with_velocities` also adds the drift's velocity correction (x' − x̃)/h.
* **RATTLE** (:func:`project_block`): v ← v − M⁻¹Gᵀμ with (G M⁻¹ Gᵀ) μ = G v, G at x.

Clusters are the connected components of the constraint graph (for ``HBonds`` a heavy atom
with its one to three hydrogens, a star; for rigid water a triangle). Each cluster is solved
over chunks of :data:`CHUNK` lanes; a chunk iterates while any of its lanes is above the
tolerance, and a lane that has met it takes zero steps from then on, so every lane stops at
its own convergence and its result does not depend on the other walkers of its block (the
same bits for any block size). Sizes b ≤ 3 are solved in closed form (cofactors, as the torch
solver) with the per-lane quantities in registers; larger clusters take a per-lane Gaussian
elimination with partial pivoting (correct, not fast). Results agree with the torch solver to
round-off of the tolerance (~1e-13 nm in float64), not bitwise: the torch solver iterates
every walker until all have converged.

Cost (alanine dipeptide, HBonds, 2 fs, 1024 walkers, one thread; ``bench_constraints.py
--kernels``): one SHAKE plus one projection per step is about 0.16–0.19 µs per walker in
float64, 13–16× less than the torch solver and about 6 % of a (per-walker, fused) force
evaluation.

Kernels are compiled with ``fastmath=False`` (no FMA contraction or reassociation, so results
are reproducible) and ``error_model='numpy'`` (no ZeroDivisionError check per division, which
would stop the vectoriser); a singular system gives inf/NaN lanes, which never meet the
tolerance and are counted as failures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from langevin_md.integrators.constraints import DEFAULT_TOLERANCE, MAX_ITERATIONS, ConstraintError
from langevin_md.systems.constraints import Constraints

__all__ = ["LaneConstraints", "pack_clusters", "shake_block", "shake_block_with_velocities", "project_block",
           "shake_lanes", "project_lanes", "shake_velocities_lanes_parallel", "shake_velocities_lanes_serial",
           "project_lanes_parallel", "shake", "project", "default_tolerance"]

_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}


def default_tolerance(dtype) -> float:
    """SHAKE's relative bond-length tolerance for a numpy float dtype (1e-12 float64, 2e-6 float32)."""
    key = np.dtype(dtype)
    if key not in _DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {key}")
    return DEFAULT_TOLERANCE[_DTYPES[key]]


@dataclass(frozen=True)
class LaneConstraints:
    """Constraint clusters packed for the lanes kernels (contiguous numpy arrays).

    Slots are the constraints reordered cluster by cluster (clusters sorted by size, as the
    torch solver groups them); slot ``slot_start[c] + k`` is constraint k of cluster c.

    Attributes
    ----------
    slot_start : numpy.ndarray, int64, shape ``(n_clusters + 1,)``
        First slot of each cluster; cluster c has ``b = slot_start[c+1] − slot_start[c]`` constraints.
    coupling_start : numpy.ndarray, int64, shape ``(n_clusters + 1,)``
        Offset of cluster c's b×b coupling matrix (row-major) in ``coupling``.
    atoms : numpy.ndarray, int64, shape ``(n_slots, 2)``
        Atoms i, j of each slot (the bond vector is x_i − x_j).
    dist2 : numpy.ndarray, dtype, shape ``(n_slots,)``
        Squared constrained distance d² (nm²).
    inv_dist2 : numpy.ndarray, dtype, shape ``(n_slots,)``
        1/d² (nm⁻²).
    inv_mass : numpy.ndarray, dtype, shape ``(n_slots, 2)``
        1/m_i and 1/m_j (amu⁻¹).
    coupling : numpy.ndarray, dtype, shape ``(Σ_c b_c²,)``
        (C M⁻¹ Cᵀ)_kl = Σ_a C_ka C_la / m_a per cluster, C = +1 at i, −1 at j (amu⁻¹).
    n_atoms : int
    dtype : numpy.dtype
    cluster_sizes : dict[int, int]
        Number of clusters per size b.
    """

    slot_start: np.ndarray
    coupling_start: np.ndarray
    atoms: np.ndarray
    dist2: np.ndarray
    inv_dist2: np.ndarray
    inv_mass: np.ndarray
    coupling: np.ndarray
    n_atoms: int
    dtype: np.dtype
    cluster_sizes: dict

    def arrays(self) -> tuple:
        """The arrays the kernels take, in their order:
        ``(slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling)``."""
        return (self.slot_start, self.coupling_start, self.atoms, self.dist2, self.inv_dist2, self.inv_mass,
                self.coupling)


def pack_clusters(constraints: Constraints, masses, dtype=np.float64) -> LaneConstraints:
    """Pack a constraint list and per-atom masses into :class:`LaneConstraints`.

    Parameters
    ----------
    constraints : Constraints
        At least one constraint.
    masses : array_like, shape ``(n_atoms,)``
        Particle masses (amu); every constrained atom must be massive.
    dtype : numpy float dtype
        ``float64`` or ``float32``, the dtype of the positions the kernels will see.
    """
    if not isinstance(constraints, Constraints):
        raise ValueError(f"constraints must be a Constraints, got {type(constraints).__name__}")
    dtype = np.dtype(dtype)
    default_tolerance(dtype)  # validates the dtype
    masses = np.asarray(masses, dtype=np.float64).reshape(-1)
    n_atoms = masses.shape[0]
    if len(constraints) == 0:
        raise ValueError("packing constraints needs at least one constraint, got none")
    if constraints.atoms.max() >= n_atoms:
        raise ValueError(f"a constraint names atom {int(constraints.atoms.max())}, but there are {n_atoms} masses")
    bad = constraints.atoms[~(masses[constraints.atoms] > 0)]
    if bad.size:
        raise ValueError(f"constrained atoms need positive masses; atom {int(bad[0])} has mass "
                         f"{float(masses[int(bad[0])])!r}")
    inv_m = 1.0 / np.where(masses > 0, masses, 1.0)
    clusters = sorted(constraints.components(), key=len)
    slots = np.concatenate([np.asarray(c, dtype=np.int64) for c in clusters])
    sizes = np.array([len(c) for c in clusters], dtype=np.int64)
    slot_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    coupling_start = np.concatenate([[0], np.cumsum(sizes ** 2)]).astype(np.int64)
    atoms = constraints.atoms[slots]
    blocks = []
    for c in range(len(clusters)):
        a = atoms[slot_start[c]:slot_start[c + 1]]
        si, sj = a[:, 0], a[:, 1]
        # (C M⁻¹ Cᵀ)_kl: +1/m where bonds k and l share an atom on the same side, −1/m on opposite sides
        wi, wj = inv_m[si][:, None], inv_m[sj][:, None]
        block = ((si[:, None] == si[None, :]) * wi + (sj[:, None] == sj[None, :]) * wj
                 - (si[:, None] == sj[None, :]) * wi - (sj[:, None] == si[None, :]) * wj)
        blocks.append(block.reshape(-1))
    d2 = constraints.distances[slots] ** 2
    counts: dict[int, int] = {}
    for b in sizes.tolist():
        counts[b] = counts.get(b, 0) + 1

    def real(a):
        return np.ascontiguousarray(a, dtype=dtype)

    return LaneConstraints(slot_start=slot_start, coupling_start=coupling_start,
                           atoms=np.ascontiguousarray(atoms, dtype=np.int64), dist2=real(d2), inv_dist2=real(1.0 / d2),
                           inv_mass=real(inv_m[atoms]), coupling=real(np.concatenate(blocks)), n_atoms=n_atoms,
                           dtype=dtype, cluster_sizes=dict(sorted(counts.items())))


# ---------------------------------------------------------------------------- work rows
# Lanes are processed in chunks of CHUNK walkers. A cluster of n constraints keeps its per-lane
# state in one flat scratch array W, row r at W[r·CHUNK : (r+1)·CHUNK], eight rows per constraint k:
# reference bond R_k at rows 8k + xyz, current bond S_k at 8k + 3 + xyz, residual g_k at 8k + 6 and
# multiplier λ_k at 8k + 7. CHUNK is a compile-time constant, so every row offset in the
# size-specialised loops is a constant offset from one pointer: LLVM then sees that rows never
# overlap and vectorises without runtime alias checks (with one array per row, the ~24 rows of a
# 3-constraint cluster need several hundred pairwise checks, beyond LLVM's limit, and the loop
# stays scalar).
CHUNK = 32


# ---------------------------------------------------------------------------- Newton steps per size
# One Newton step on lanes [0, nl) of W for a cluster of n constraints (n = 1, 2, 3 specialised);
# returns the number of lanes with some relative residual |ΔS_k|²/d_k² not below ``thr`` (NaN counts).
# J_kl = 2 c_kl (S_k · R_l); Δλ = J⁻¹(−g); ΔS_k = Σ_l c_kl Δλ_l R_l; the new residual is |ΔS_k|².
# A lane whose residuals already meet ``thr`` takes a zero step (a select, so the loop stays
# vectorised): each lane stops at its own convergence, and its result does not depend on which
# other walkers share its block or chunk (the same for any block size B).

@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _newton1(W, nl, c, cs, inv_d2, s0, thr, one, zero):
    c00 = c[cs]
    t00 = c00 + c00
    e0 = inv_d2[s0]
    C = CHUNK
    bad = 0
    for b in range(nl):
        ax, ay, az = W[b], W[C + b], W[2 * C + b]
        px, py, pz = W[3 * C + b], W[4 * C + b], W[5 * C + b]
        g0 = W[6 * C + b]
        live = not abs(g0) * e0 < thr
        mu0 = -g0 / (t00 * (px * ax + py * ay + pz * az))
        mu0 = mu0 if live else zero
        w = c00 * mu0
        dx, dy, dz = w * ax, w * ay, w * az
        W[3 * C + b] = px + dx
        W[4 * C + b] = py + dy
        W[5 * C + b] = pz + dz
        h0 = dx * dx + dy * dy + dz * dz
        W[6 * C + b] = h0
        W[7 * C + b] += mu0
        bad += 0 if h0 * e0 < thr else 1
    return bad


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _newton2(W, nl, c, cs, inv_d2, s0, thr, one, zero):
    c00, c01, c10, c11 = c[cs], c[cs + 1], c[cs + 2], c[cs + 3]
    t00, t01, t10, t11 = c00 + c00, c01 + c01, c10 + c10, c11 + c11
    e0, e1 = inv_d2[s0], inv_d2[s0 + 1]
    C = CHUNK
    bad = 0
    for b in range(nl):
        ax, ay, az, bx, by, bz = W[b], W[C + b], W[2 * C + b], W[8 * C + b], W[9 * C + b], W[10 * C + b]
        px, py, pz, qx, qy, qz = W[3 * C + b], W[4 * C + b], W[5 * C + b], W[11 * C + b], W[12 * C + b], W[13 * C + b]
        m00 = t00 * (px * ax + py * ay + pz * az)
        m01 = t01 * (px * bx + py * by + pz * bz)
        m10 = t10 * (qx * ax + qy * ay + qz * az)
        m11 = t11 * (qx * bx + qy * by + qz * bz)
        r0, r1 = -W[6 * C + b], -W[14 * C + b]
        live = not ((abs(r0) * e0 < thr) & (abs(r1) * e1 < thr))
        inv_det = one / (m00 * m11 - m01 * m10)
        mu0 = (m11 * r0 - m01 * r1) * inv_det
        mu1 = (m00 * r1 - m10 * r0) * inv_det
        mu0, mu1 = (mu0, mu1) if live else (zero, zero)
        w00, w01, w10, w11 = c00 * mu0, c01 * mu1, c10 * mu0, c11 * mu1
        d0x, d0y, d0z = w00 * ax + w01 * bx, w00 * ay + w01 * by, w00 * az + w01 * bz
        d1x, d1y, d1z = w10 * ax + w11 * bx, w10 * ay + w11 * by, w10 * az + w11 * bz
        W[3 * C + b] = px + d0x
        W[4 * C + b] = py + d0y
        W[5 * C + b] = pz + d0z
        W[11 * C + b] = qx + d1x
        W[12 * C + b] = qy + d1y
        W[13 * C + b] = qz + d1z
        h0 = d0x * d0x + d0y * d0y + d0z * d0z
        h1 = d1x * d1x + d1y * d1y + d1z * d1z
        W[6 * C + b] = h0
        W[14 * C + b] = h1
        W[7 * C + b] += mu0
        W[15 * C + b] += mu1
        bad += 0 if (h0 * e0 < thr) & (h1 * e1 < thr) else 1
    return bad


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _newton3(W, nl, c, cs, inv_d2, s0, thr, one, zero):
    c00, c01, c02 = c[cs], c[cs + 1], c[cs + 2]
    c10, c11, c12 = c[cs + 3], c[cs + 4], c[cs + 5]
    c20, c21, c22 = c[cs + 6], c[cs + 7], c[cs + 8]
    t00, t01, t02, t10, t11, t12 = c00 + c00, c01 + c01, c02 + c02, c10 + c10, c11 + c11, c12 + c12
    t20, t21, t22 = c20 + c20, c21 + c21, c22 + c22
    e0, e1, e2 = inv_d2[s0], inv_d2[s0 + 1], inv_d2[s0 + 2]
    C = CHUNK
    bad = 0
    for b in range(nl):
        ax, ay, az = W[b], W[C + b], W[2 * C + b]
        bx, by, bz = W[8 * C + b], W[9 * C + b], W[10 * C + b]
        cx, cy, cz = W[16 * C + b], W[17 * C + b], W[18 * C + b]
        px, py, pz = W[3 * C + b], W[4 * C + b], W[5 * C + b]
        qx, qy, qz = W[11 * C + b], W[12 * C + b], W[13 * C + b]
        ux, uy, uz = W[19 * C + b], W[20 * C + b], W[21 * C + b]
        m00 = t00 * (px * ax + py * ay + pz * az)
        m01 = t01 * (px * bx + py * by + pz * bz)
        m02 = t02 * (px * cx + py * cy + pz * cz)
        m10 = t10 * (qx * ax + qy * ay + qz * az)
        m11 = t11 * (qx * bx + qy * by + qz * bz)
        m12 = t12 * (qx * cx + qy * cy + qz * cz)
        m20 = t20 * (ux * ax + uy * ay + uz * az)
        m21 = t21 * (ux * bx + uy * by + uz * bz)
        m22 = t22 * (ux * cx + uy * cy + uz * cz)
        r0, r1, r2 = -W[6 * C + b], -W[14 * C + b], -W[22 * C + b]
        live = not ((abs(r0) * e0 < thr) & (abs(r1) * e1 < thr) & (abs(r2) * e2 < thr))
        # cofactors cof[i, j] = m[i+1, j+1] m[i+2, j+2] − m[i+1, j+2] m[i+2, j+1] (indices mod 3)
        k00 = m11 * m22 - m12 * m21
        k01 = m12 * m20 - m10 * m22
        k02 = m10 * m21 - m11 * m20
        k10 = m21 * m02 - m22 * m01
        k11 = m22 * m00 - m20 * m02
        k12 = m20 * m01 - m21 * m00
        k20 = m01 * m12 - m02 * m11
        k21 = m02 * m10 - m00 * m12
        k22 = m00 * m11 - m01 * m10
        inv_det = one / (m00 * k00 + m01 * k01 + m02 * k02)  # one division, not three: divisions dominate
        mu0 = (k00 * r0 + k10 * r1 + k20 * r2) * inv_det
        mu1 = (k01 * r0 + k11 * r1 + k21 * r2) * inv_det
        mu2 = (k02 * r0 + k12 * r1 + k22 * r2) * inv_det
        mu0, mu1, mu2 = (mu0, mu1, mu2) if live else (zero, zero, zero)
        w00, w01, w02 = c00 * mu0, c01 * mu1, c02 * mu2
        w10, w11, w12 = c10 * mu0, c11 * mu1, c12 * mu2
        w20, w21, w22 = c20 * mu0, c21 * mu1, c22 * mu2
        d0x, d0y, d0z = w00 * ax + w01 * bx + w02 * cx, w00 * ay + w01 * by + w02 * cy, w00 * az + w01 * bz + w02 * cz
        d1x, d1y, d1z = w10 * ax + w11 * bx + w12 * cx, w10 * ay + w11 * by + w12 * cy, w10 * az + w11 * bz + w12 * cz
        d2x, d2y, d2z = w20 * ax + w21 * bx + w22 * cx, w20 * ay + w21 * by + w22 * cy, w20 * az + w21 * bz + w22 * cz
        W[3 * C + b] = px + d0x
        W[4 * C + b] = py + d0y
        W[5 * C + b] = pz + d0z
        W[11 * C + b] = qx + d1x
        W[12 * C + b] = qy + d1y
        W[13 * C + b] = qz + d1z
        W[19 * C + b] = ux + d2x
        W[20 * C + b] = uy + d2y
        W[21 * C + b] = uz + d2z
        h0 = d0x * d0x + d0y * d0y + d0z * d0z
        h1 = d1x * d1x + d1y * d1y + d1z * d1z
        h2 = d2x * d2x + d2y * d2y + d2z * d2z
        W[6 * C + b] = h0
        W[14 * C + b] = h1
        W[22 * C + b] = h2
        W[7 * C + b] += mu0
        W[15 * C + b] += mu1
        W[23 * C + b] += mu2
        bad += 0 if (h0 * e0 < thr) & (h1 * e1 < thr) & (h2 * e2 < thr) else 1
    return bad


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _dense_solve(m, r, n):
    """Solve m μ = r in place (μ left in r) for one lane: Gaussian elimination, partial pivoting."""
    for p in range(n):
        piv = p
        for i in range(p + 1, n):
            if abs(m[i, p]) > abs(m[piv, p]):
                piv = i
        if piv != p:
            for j in range(n):
                m[p, j], m[piv, j] = m[piv, j], m[p, j]
            r[p], r[piv] = r[piv], r[p]
        for i in range(p + 1, n):
            f = m[i, p] / m[p, p]
            for j in range(p, n):
                m[i, j] -= f * m[p, j]
            r[i] -= f * r[p]
    for p in range(n - 1, -1, -1):
        acc = r[p]
        for j in range(p + 1, n):
            acc -= m[p, j] * r[j]
        r[p] = acc / m[p, p]


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _newton_general(W, nl, c, cs, inv_d2, s0, thr, n, m, r):
    """One Newton step for a cluster of n > 3 constraints, lane by lane (m ``(n, n)``, r ``(n,)`` scratch)."""
    C = CHUNK
    bad = 0
    for b in range(nl):
        live = False
        for k in range(n):
            live = live | (not abs(W[(8 * k + 6) * C + b]) * inv_d2[s0 + k] < thr)
        if not live:
            continue  # this lane has converged: it keeps its state
        for k in range(n):
            sk = (8 * k + 3) * C + b
            for l in range(n):
                rl = 8 * l * C + b
                dot = W[sk] * W[rl] + W[sk + C] * W[rl + C] + W[sk + 2 * C] * W[rl + 2 * C]
                ckl = c[cs + k * n + l]
                m[k, l] = (ckl + ckl) * dot
            r[k] = -W[(8 * k + 6) * C + b]
        _dense_solve(m, r, n)
        ok = True
        for k in range(n):
            dx, dy, dz = 0.0, 0.0, 0.0
            for l in range(n):
                w = c[cs + k * n + l] * r[l]
                rl = 8 * l * C + b
                dx += w * W[rl]
                dy += w * W[rl + C]
                dz += w * W[rl + 2 * C]
            sk = (8 * k + 3) * C + b
            W[sk] += dx
            W[sk + C] += dy
            W[sk + 2 * C] += dz
            h = dx * dx + dy * dy + dz * dz
            W[(8 * k + 6) * C + b] = h
            W[(8 * k + 7) * C + b] += r[k]
            ok = ok & (h * inv_d2[s0 + k] < thr)
        bad += 0 if ok else 1
    return bad


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _constants(X, thr):
    """1, 0 and ``thr`` as scalars of X's dtype: float64 literals would widen float32 lanes to float64."""
    k = np.empty(3, dtype=X.dtype)
    k[0], k[1], k[2] = 1.0, 0.0, thr
    return k[0], k[1], k[2]


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _max_size(slot_start):
    n = 1
    for c in range(slot_start.shape[0] - 1):
        n = max(n, slot_start[c + 1] - slot_start[c])
    return n


# ---------------------------------------------------------------------------- block kernels
@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def _shake(X0, X, V, inv_h, with_velocities, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling,
           tol, max_iter):
    """SHAKE (see :func:`shake_block`), with ``V += (x' − x̃)·inv_h`` where ``with_velocities``."""
    B = X.shape[2]
    C = CHUNK
    nb = _max_size(slot_start)
    W = np.empty(8 * nb * C, dtype=X.dtype)
    m = np.empty((nb, nb), dtype=X.dtype)
    r = np.empty(nb, dtype=X.dtype)
    failed = np.zeros(B, dtype=np.bool_)
    one, zero, thr = _constants(X, tol + tol)
    inv_h = one * inv_h
    for cl in range(slot_start.shape[0] - 1):
        s0 = slot_start[cl]
        n = slot_start[cl + 1] - s0
        cs = coupling_start[cl]
        for st in range(0, B, C):
            nl = min(C, B - st)
            bad = 0
            for k in range(n):
                i, j = atoms[s0 + k, 0], atoms[s0 + k, 1]
                d2, e = dist2[s0 + k], inv_dist2[s0 + k]
                Wk = W[8 * k * C:8 * (k + 1) * C]
                # lane slices, so indices start at 0 (no wraparound arithmetic) and each loop
                # reads few arrays (few runtime alias checks): both keep the loops vectorised
                ix, iy, iz = X0[i, 0, st:st + nl], X0[i, 1, st:st + nl], X0[i, 2, st:st + nl]
                jx, jy, jz = X0[j, 0, st:st + nl], X0[j, 1, st:st + nl], X0[j, 2, st:st + nl]
                for b in range(nl):
                    Wk[b] = ix[b] - jx[b]
                    Wk[C + b] = iy[b] - jy[b]
                    Wk[2 * C + b] = iz[b] - jz[b]
                ix, iy, iz = X[i, 0, st:st + nl], X[i, 1, st:st + nl], X[i, 2, st:st + nl]
                jx, jy, jz = X[j, 0, st:st + nl], X[j, 1, st:st + nl], X[j, 2, st:st + nl]
                for b in range(nl):
                    px, py, pz = ix[b] - jx[b], iy[b] - jy[b], iz[b] - jz[b]
                    Wk[3 * C + b] = px
                    Wk[4 * C + b] = py
                    Wk[5 * C + b] = pz
                    g = px * px + py * py + pz * pz - d2
                    Wk[6 * C + b] = g
                    Wk[7 * C + b] = zero
                    bad += 0 if abs(g) * e < thr else 1
            it = 0
            while bad > 0 and it < max_iter:
                if n == 1:
                    bad = _newton1(W, nl, coupling, cs, inv_dist2, s0, thr, one, zero)
                elif n == 2:
                    bad = _newton2(W, nl, coupling, cs, inv_dist2, s0, thr, one, zero)
                elif n == 3:
                    bad = _newton3(W, nl, coupling, cs, inv_dist2, s0, thr, one, zero)
                else:
                    bad = _newton_general(W, nl, coupling, cs, inv_dist2, s0, thr, n, m, r)
                it += 1
            if bad > 0:
                for k in range(n):
                    e, oG = inv_dist2[s0 + k], (8 * k + 6) * C
                    for b in range(nl):
                        if not (abs(W[oG + b]) * e < thr):
                            failed[st + b] = True
            if it == 0:
                continue  # already on the manifold: λ = 0, nothing moves
            # x_i += λ_k R_k / m_i, x_j −= λ_k R_k / m_j (this cluster's atoms only: clusters are disjoint)
            for k in range(n):
                i, j = atoms[s0 + k, 0], atoms[s0 + k, 1]
                wi, wj = inv_mass[s0 + k, 0], inv_mass[s0 + k, 1]
                Wk = W[8 * k * C:8 * (k + 1) * C]
                for a in range(3):
                    xi, xj, oR = X[i, a, st:st + nl], X[j, a, st:st + nl], a * C
                    for b in range(nl):
                        f = Wk[7 * C + b] * Wk[oR + b]
                        xi[b] += f * wi
                        xj[b] -= f * wj
                    if with_velocities:  # v += (x' − x̃)/h, in its own loop (fewer arrays per loop)
                        vi, vj = V[i, a, st:st + nl], V[j, a, st:st + nl]
                        for b in range(nl):
                            f = Wk[7 * C + b] * Wk[oR + b]
                            vi[b] += (f * wi) * inv_h
                            vj[b] -= (f * wj) * inv_h
    n_failed = 0
    for b in range(B):
        if failed[b]:
            n_failed += 1
    return n_failed


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def shake_block(X0, X, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling, tol, max_iter):
    """SHAKE one block of B walkers in place: X ← X + M⁻¹ G(X0)ᵀ λ with every bond at its length.

    Parameters
    ----------
    X0 : numpy.ndarray, shape ``(n_atoms, 3, B)``
        Constrained positions the unconstrained update started from (nm); read only (may be X).
    X : numpy.ndarray, shape ``(n_atoms, 3, B)``, same dtype
        The unconstrained update (nm), corrected in place.
    slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling
        :meth:`LaneConstraints.arrays`, in the dtype of X.
    tol : float
        Relative tolerance: a lane stops iterating a cluster when |r_k² − d_k²|/d_k² < 2·tol
        (≈ |r_k − d_k|/d_k < tol) for all its constraints k.
    max_iter : int
        Newton steps per cluster before giving up.

    Returns
    -------
    int
        Number of lanes in which some cluster did not converge (0 on success); those lanes of
        X hold the last iterate (possibly inf/NaN).
    """
    return _shake(X0, X, X, 0.0, False, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling,
                  tol, max_iter)


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def shake_block_with_velocities(X0, X, V, inv_h, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass,
                                coupling, tol, max_iter):
    """:func:`shake_block`, and V ← V + (x' − x̃)/h in the same pass: the velocity correction of a
    constrained drift (as in OpenMM's ``LangevinMiddleIntegrator`` and
    :func:`~langevin_md.integrators.underdamped.drift_ou_drift`).

    Parameters
    ----------
    X0, X
        As :func:`shake_block`.
    V : numpy.ndarray, shape ``(n_atoms, 3, B)``, same dtype
        Velocities (nm/ps), corrected in place; only constrained atoms change.
    inv_h : float
        1/h for the drift's time h (1/ps).
    slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling, tol, max_iter
        As :func:`shake_block`.

    Returns
    -------
    int
        Number of lanes that did not converge, as :func:`shake_block`.
    """
    return _shake(X0, X, V, inv_h, True, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling,
                  tol, max_iter)


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def project_block(X, V, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling):
    """RATTLE's velocity projection of one block in place: V ← V − M⁻¹G(X)ᵀμ, (G M⁻¹ Gᵀ) μ = G V.

    Parameters
    ----------
    X : numpy.ndarray, shape ``(n_atoms, 3, B)``
        Positions on the constraint manifold (nm).
    V : numpy.ndarray, same shape and dtype
        Velocities (or any vector field: forces/m, noise), projected in place so that G(X) V = 0.
    slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling
        :meth:`LaneConstraints.arrays` (``dist2``, ``inv_dist2`` unused: the projection is linear).
    """
    B = X.shape[2]
    C = CHUNK
    nb = _max_size(slot_start)
    one, _, _ = _constants(X, 0.0)
    W = np.empty(4 * nb * C, dtype=X.dtype)  # per bond k: r_k at rows 4k + xyz, then u_k (later μ_k) at 4k + 3
    m = np.empty((nb, nb), dtype=X.dtype)
    r = np.empty(nb, dtype=X.dtype)
    for cl in range(slot_start.shape[0] - 1):
        s0 = slot_start[cl]
        n = slot_start[cl + 1] - s0
        cs = coupling_start[cl]
        for st in range(0, B, C):
            nl = min(C, B - st)
            # bonds r_k = x_i − x_j and rates u_k = r_k · (v_i − v_j)
            for k in range(n):
                i, j = atoms[s0 + k, 0], atoms[s0 + k, 1]
                Wk = W[4 * k * C:4 * (k + 1) * C]
                ix, iy, iz = X[i, 0, st:st + nl], X[i, 1, st:st + nl], X[i, 2, st:st + nl]
                jx, jy, jz = X[j, 0, st:st + nl], X[j, 1, st:st + nl], X[j, 2, st:st + nl]
                for b in range(nl):
                    Wk[b] = ix[b] - jx[b]
                    Wk[C + b] = iy[b] - jy[b]
                    Wk[2 * C + b] = iz[b] - jz[b]
                ix, iy, iz = V[i, 0, st:st + nl], V[i, 1, st:st + nl], V[i, 2, st:st + nl]
                jx, jy, jz = V[j, 0, st:st + nl], V[j, 1, st:st + nl], V[j, 2, st:st + nl]
                for b in range(nl):
                    Wk[3 * C + b] = (Wk[b] * (ix[b] - jx[b]) + Wk[C + b] * (iy[b] - jy[b])
                                     + Wk[2 * C + b] * (iz[b] - jz[b]))
            # μ = (c ⊙ R Rᵀ)⁻¹ u, left in place of u
            if n == 1:
                c00 = coupling[cs]
                for b in range(nl):
                    ax, ay, az = W[b], W[C + b], W[2 * C + b]
                    W[3 * C + b] = W[3 * C + b] / (c00 * (ax * ax + ay * ay + az * az))
            elif n == 2:
                c00, c01, c10, c11 = coupling[cs], coupling[cs + 1], coupling[cs + 2], coupling[cs + 3]
                for b in range(nl):
                    ax, ay, az, bx, by, bz = W[b], W[C + b], W[2 * C + b], W[4 * C + b], W[5 * C + b], W[6 * C + b]
                    m00 = c00 * (ax * ax + ay * ay + az * az)
                    m01 = c01 * (ax * bx + ay * by + az * bz)
                    m10 = c10 * (bx * ax + by * ay + bz * az)
                    m11 = c11 * (bx * bx + by * by + bz * bz)
                    u0, u1 = W[3 * C + b], W[7 * C + b]
                    inv_det = one / (m00 * m11 - m01 * m10)
                    W[3 * C + b] = (m11 * u0 - m01 * u1) * inv_det
                    W[7 * C + b] = (m00 * u1 - m10 * u0) * inv_det
            elif n == 3:
                c00, c01, c02 = coupling[cs], coupling[cs + 1], coupling[cs + 2]
                c10, c11, c12 = coupling[cs + 3], coupling[cs + 4], coupling[cs + 5]
                c20, c21, c22 = coupling[cs + 6], coupling[cs + 7], coupling[cs + 8]
                for b in range(nl):
                    ax, ay, az = W[b], W[C + b], W[2 * C + b]
                    bx, by, bz = W[4 * C + b], W[5 * C + b], W[6 * C + b]
                    cx, cy, cz = W[8 * C + b], W[9 * C + b], W[10 * C + b]
                    aa = ax * ax + ay * ay + az * az
                    ab = ax * bx + ay * by + az * bz
                    ac = ax * cx + ay * cy + az * cz
                    bb = bx * bx + by * by + bz * bz
                    bc = bx * cx + by * cy + bz * cz
                    cc = cx * cx + cy * cy + cz * cz
                    m00, m01, m02 = c00 * aa, c01 * ab, c02 * ac
                    m10, m11, m12 = c10 * ab, c11 * bb, c12 * bc
                    m20, m21, m22 = c20 * ac, c21 * bc, c22 * cc
                    k00 = m11 * m22 - m12 * m21
                    k01 = m12 * m20 - m10 * m22
                    k02 = m10 * m21 - m11 * m20
                    k10 = m21 * m02 - m22 * m01
                    k11 = m22 * m00 - m20 * m02
                    k12 = m20 * m01 - m21 * m00
                    k20 = m01 * m12 - m02 * m11
                    k21 = m02 * m10 - m00 * m12
                    k22 = m00 * m11 - m01 * m10
                    inv_det = one / (m00 * k00 + m01 * k01 + m02 * k02)
                    u0, u1, u2 = W[3 * C + b], W[7 * C + b], W[11 * C + b]
                    W[3 * C + b] = (k00 * u0 + k10 * u1 + k20 * u2) * inv_det
                    W[7 * C + b] = (k01 * u0 + k11 * u1 + k21 * u2) * inv_det
                    W[11 * C + b] = (k02 * u0 + k12 * u1 + k22 * u2) * inv_det
            else:
                for b in range(nl):
                    for k in range(n):
                        for l in range(n):
                            rk, rl = 4 * k * C + b, 4 * l * C + b
                            m[k, l] = coupling[cs + k * n + l] * (W[rk] * W[rl] + W[rk + C] * W[rl + C]
                                                                  + W[rk + 2 * C] * W[rl + 2 * C])
                        r[k] = W[(4 * k + 3) * C + b]
                    _dense_solve(m, r, n)
                    for k in range(n):
                        W[(4 * k + 3) * C + b] = r[k]
            # v_i −= μ_k r_k / m_i, v_j += μ_k r_k / m_j
            for k in range(n):
                i, j = atoms[s0 + k, 0], atoms[s0 + k, 1]
                wi, wj = inv_mass[s0 + k, 0], inv_mass[s0 + k, 1]
                Wk = W[4 * k * C:4 * (k + 1) * C]
                for a in range(3):
                    vi, vj, oR = V[i, a, st:st + nl], V[j, a, st:st + nl], a * C
                    for b in range(nl):
                        f = Wk[3 * C + b] * Wk[oR + b]
                        vi[b] -= f * wi
                        vj[b] += f * wj


# ---------------------------------------------------------------------------- drivers over blocks
@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def shake_lanes(X0, X, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling, tol, max_iter):
    """:func:`shake_block` over every block of ``(nb, n_atoms, 3, B)`` arrays; returns the failed-lane count."""
    n_failed = 0
    for blk in range(X.shape[0]):
        n_failed += shake_block(X0[blk], X[blk], slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass,
                                coupling, tol, max_iter)
    return n_failed


@njit(cache=True, fastmath=False, error_model='numpy', boundscheck=False)
def project_lanes(X, V, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling):
    """:func:`project_block` over every block of ``(nb, n_atoms, 3, B)`` arrays."""
    for blk in range(X.shape[0]):
        project_block(X[blk], V[blk], slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling)


@njit(parallel=True, cache=True, fastmath=False, error_model='numpy')
def shake_velocities_lanes_parallel(X0, X, V, inv_h, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass,
                                    coupling, tol, max_iter):
    """:func:`shake_block_with_velocities` over every block, blocks over numba's pool; the failed-lane count."""
    failed = np.zeros(X.shape[0], dtype=np.int64)
    for blk in prange(X.shape[0]):
        failed[blk] = shake_block_with_velocities(X0[blk], X[blk], V[blk], inv_h, slot_start, coupling_start, atoms,
                                                  dist2, inv_dist2, inv_mass, coupling, tol, max_iter)
    return failed.sum()


@njit(cache=True, fastmath=False, error_model='numpy')
def shake_velocities_lanes_serial(X0, X, V, inv_h, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass,
                                  coupling, tol, max_iter):
    """:func:`shake_block_with_velocities` over every block on the calling thread; the failed-lane count."""
    failed = 0
    for blk in range(X.shape[0]):
        failed += shake_block_with_velocities(X0[blk], X[blk], V[blk], inv_h, slot_start, coupling_start, atoms,
                                              dist2, inv_dist2, inv_mass, coupling, tol, max_iter)
    return failed


@njit(parallel=True, cache=True, fastmath=False, error_model='numpy')
def project_lanes_parallel(X, V, slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling):
    """:func:`project_block` over every block, blocks over numba's pool."""
    for blk in prange(X.shape[0]):
        project_block(X[blk], V[blk], slot_start, coupling_start, atoms, dist2, inv_dist2, inv_mass, coupling)


# ---------------------------------------------------------------------------- (N, A, 3) wrappers
def _as_lanes(name: str, a, lc: LaneConstraints) -> np.ndarray:
    """``(N, A, 3)`` walkers as one block ``(A, 3, N)`` (a contiguous copy), after checking shape and dtype."""
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[1:] != (lc.n_atoms, 3):
        raise ValueError(f"{name} must have shape (n_walkers, {lc.n_atoms}, 3), got {a.shape}")
    if a.dtype != lc.dtype:
        raise ValueError(f"{name} has dtype {a.dtype}, but the constraints were packed for {lc.dtype}")
    return np.ascontiguousarray(a.transpose(1, 2, 0))


def shake(x0, x, lc: LaneConstraints, tol=None, max_iter: int = MAX_ITERATIONS) -> np.ndarray:
    """SHAKE walkers ``(N, A, 3)`` through :func:`shake_block` (all N as one block); for tests.

    Parameters
    ----------
    x0, x : numpy.ndarray, shape ``(n_walkers, n_atoms, 3)``, dtype ``lc.dtype``
        Constrained reference positions and the unconstrained update (nm).
    lc : LaneConstraints
    tol : float, optional
        Relative tolerance (default :func:`default_tolerance` of ``lc.dtype``).
    max_iter : int

    Returns
    -------
    numpy.ndarray, shape ``(n_walkers, n_atoms, 3)``: the constrained positions.

    Raises
    ------
    ConstraintError
        When some walker did not converge (``walkers`` lists those whose bonds are off by more than ``tol``).
    """
    tol = default_tolerance(lc.dtype) if tol is None else float(tol)
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    X0, X = _as_lanes("x0", x0, lc), _as_lanes("x", x, lc)
    if X0.shape != X.shape:
        raise ValueError(f"x0 and x must have the same shape, got {np.shape(x0)} and {np.shape(x)}")
    n_failed = shake_block(X0, X, *lc.arrays(), tol, int(max_iter))
    out = np.ascontiguousarray(X.transpose(2, 0, 1))
    if n_failed:
        i, j = lc.atoms[:, 0], lc.atoms[:, 1]
        r = np.linalg.norm(out[:, i] - out[:, j], axis=-1)
        err = np.abs(r * np.sqrt(lc.inv_dist2) - 1.0)
        bad = np.flatnonzero(~(err.max(axis=1) < tol)).tolist()
        raise ConstraintError(f"SHAKE did not reach relative tolerance {tol:g} in {max_iter} iterations for "
                              f"{n_failed} walker(s), e.g. {bad[:10]}", walkers=bad)
    return out


def project(x, v, lc: LaneConstraints) -> np.ndarray:
    """RATTLE-project velocities ``(N, A, 3)`` at positions ``x`` through :func:`project_block`; for tests.

    Returns
    -------
    numpy.ndarray, shape ``(n_walkers, n_atoms, 3)``: P(x) v, with G(x) P(x) v = 0.
    """
    X, V = _as_lanes("x", x, lc), _as_lanes("v", v, lc)
    if X.shape != V.shape:
        raise ValueError(f"x and v must have the same shape, got {np.shape(x)} and {np.shape(v)}")
    project_block(X, V, *lc.arrays())
    return np.ascontiguousarray(V.transpose(2, 0, 1))
