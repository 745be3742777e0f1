"""Fused kernels of the bonded terms: harmonic bonds, harmonic angles, periodic torsions.

One pass per walker computes every bonded energy and adds its closed-form forces straight into
that walker's force rows, so there is no gather, no intermediate ``(items, 3, walkers)`` block
and no ``index_add_`` scatter. The formulas are those of the torch terms in
:mod:`langevin_md.forcefield.bonded` (same parameters, same closed-form forces, torsions as
one Fourier series per quadruple), so results agree with them to rounding.

Every kernel that a top-level driver calls lives in this file: numba's on-disk cache
(``cache=True``) invalidates a compiled driver only when the driver's own file changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from langevin_md.forcefield.bonded import HarmonicAngles, HarmonicBonds, PeriodicTorsions
from langevin_md.forcefield.fused.recognise import is_bonded


@dataclass
class BondedParameters:
    """Parameters of all fused bonded terms, as contiguous numpy arrays.

    Attributes
    ----------
    bond_atoms : ndarray, shape ``(n_bonds, 2)``, int64
    bond_length, bond_k : ndarray, shape ``(n_bonds,)``
        r₀ in nm; k in kJ/mol/nm².
    angle_atoms : ndarray, shape ``(n_angles, 3)``, int64 (vertex second)
    angle_theta, angle_k : ndarray, shape ``(n_angles,)``
        θ₀ in rad; k in kJ/mol/rad².
    torsion_atoms : ndarray, shape ``(n_quads, 4)``, int64
    torsion_a, torsion_b : ndarray, shape ``(n_quads, K)``, kJ/mol
        Fourier coefficients of cos nφ and sin nφ, n = 1…K.
    torsion_c0 : ndarray, shape ``(n_quads,)``, kJ/mol
    """

    bond_atoms: np.ndarray
    bond_length: np.ndarray
    bond_k: np.ndarray
    angle_atoms: np.ndarray
    angle_theta: np.ndarray
    angle_k: np.ndarray
    torsion_atoms: np.ndarray
    torsion_a: np.ndarray
    torsion_b: np.ndarray
    torsion_c0: np.ndarray

    def arrays(self) -> tuple:
        return (self.bond_atoms, self.bond_length, self.bond_k, self.angle_atoms, self.angle_theta, self.angle_k,
                self.torsion_atoms, self.torsion_a, self.torsion_b, self.torsion_c0)


def is_fusable(term) -> bool:
    """Whether ``term`` is a bonded term these kernels evaluate (exact classes only)."""
    return is_bonded(term)


def pack(terms, dtype) -> BondedParameters:
    """Concatenate the parameters of bonded ``terms`` (each :func:`is_fusable`) in ``dtype``.

    Parameters
    ----------
    terms : sequence of Term
    dtype : numpy dtype of the positions the kernels will see (float32 or float64)
    """
    def rows(term, name):
        return getattr(term, name).detach().cpu().numpy()

    def atoms(ts):
        blocks = [rows(t, "atoms").T for t in ts]
        return np.ascontiguousarray(np.concatenate(blocks) if blocks else np.zeros((0, 1)), dtype=np.int64)

    def column(ts, name):
        blocks = [rows(t, name).reshape(-1) for t in ts]
        return np.ascontiguousarray(np.concatenate(blocks) if blocks else np.zeros(0), dtype=dtype)

    bonds = [t for t in terms if type(t) is HarmonicBonds]
    angles = [t for t in terms if type(t) is HarmonicAngles]
    torsions = [t for t in terms if type(t) is PeriodicTorsions]
    k_max = max([rows(t, "a").shape[0] for t in torsions], default=1)
    a_blocks, b_blocks = [], []
    for t in torsions:  # pad every term's series to the longest (zero coefficients add nothing)
        for name, blocks in (("a", a_blocks), ("b", b_blocks)):
            c = rows(t, name)[..., 0].T  # (q, K)
            blocks.append(np.pad(c, ((0, 0), (0, k_max - c.shape[1]))))

    def series(blocks):
        return np.ascontiguousarray(np.concatenate(blocks) if blocks else np.zeros((0, k_max)), dtype=dtype)

    return BondedParameters(
        atoms(bonds).reshape(-1, 2), column(bonds, "length"), column(bonds, "k"),
        atoms(angles).reshape(-1, 3), column(angles, "angle"), column(angles, "k"),
        atoms(torsions).reshape(-1, 4), series(a_blocks), series(b_blocks), column(torsions, "c0"))


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def block(x, f, e, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
          torsion_b, torsion_c0):
    """Bonded energies of one block (``x``, ``f`` ``(n_atoms, 3, B)``, ``e`` ``(B,)``), added into ``f`` and ``e``.

    Lanes innermost (:mod:`.lanes`). The angle's atan2 is a scalar call, so each angle takes
    three lane loops (geometry, atan2, forces) and the torsion's Fourier series one loop per
    order: every loop but the atan2 one vectorises. Per lane the operations and their order
    are those of the formulas in the comments.
    """
    lanes = x.shape[2]
    t0, t1, t2, t3 = np.empty(lanes), np.empty(lanes), np.empty(lanes), np.empty(lanes)
    acc = np.zeros(lanes)  # summed apart and added once: the per-walker kernels' order
    # ---- bonds: U = ½ k (r − r₀)², F_i = −k (r − r₀) d / r
    for n in range(bond_atoms.shape[0]):
        i, j = bond_atoms[n, 0], bond_atoms[n, 1]
        length, k = bond_length[n], bond_k[n]
        xi0, xi1, xi2, xj0, xj1, xj2 = x[i, 0], x[i, 1], x[i, 2], x[j, 0], x[j, 1], x[j, 2]
        fi0, fi1, fi2, fj0, fj1, fj2 = f[i, 0], f[i, 1], f[i, 2], f[j, 0], f[j, 1], f[j, 2]
        for b in range(lanes):
            d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
            r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            dr = r - length
            acc[b] += 0.5 * k * dr * dr
            g = -k * dr / r
            fi0[b] += g * d0
            fi1[b] += g * d1
            fi2[b] += g * d2
            fj0[b] -= g * d0
            fj1[b] -= g * d1
            fj2[b] -= g * d2
    # ---- angles: θ = atan2(|u × v|, u·v); F_i = g/|u|² u × c, F_k = g/|v|² c × v, g = −k Δθ/|c|
    c_norm, dot, dtheta = t0, t1, t2
    for n in range(angle_atoms.shape[0]):
        i, j, l = angle_atoms[n, 0], angle_atoms[n, 1], angle_atoms[n, 2]
        theta0, k = angle_theta[n], angle_k[n]
        xi0, xi1, xi2, xj0, xj1, xj2 = x[i, 0], x[i, 1], x[i, 2], x[j, 0], x[j, 1], x[j, 2]
        xl0, xl1, xl2 = x[l, 0], x[l, 1], x[l, 2]
        for b in range(lanes):
            u0, u1, u2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
            v0, v1, v2 = xl0[b] - xj0[b], xl1[b] - xj1[b], xl2[b] - xj2[b]
            c0, c1, c2 = u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0
            c_norm[b] = math.sqrt(c0 * c0 + c1 * c1 + c2 * c2)
            dot[b] = u0 * v0 + u1 * v1 + u2 * v2
        for b in range(lanes):  # scalar libm calls
            dtheta[b] = math.atan2(c_norm[b], dot[b]) - theta0
        fi0, fi1, fi2, fj0, fj1, fj2 = f[i, 0], f[i, 1], f[i, 2], f[j, 0], f[j, 1], f[j, 2]
        fl0, fl1, fl2 = f[l, 0], f[l, 1], f[l, 2]
        for b in range(lanes):
            u0, u1, u2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
            v0, v1, v2 = xl0[b] - xj0[b], xl1[b] - xj1[b], xl2[b] - xj2[b]
            c0, c1, c2 = u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0
            dt = dtheta[b]
            acc[b] += 0.5 * k * dt * dt
            g = -k * dt / c_norm[b]
            gi = g / (u0 * u0 + u1 * u1 + u2 * u2)
            gk = g / (v0 * v0 + v1 * v1 + v2 * v2)
            a0, a1, a2 = gi * (u1 * c2 - u2 * c1), gi * (u2 * c0 - u0 * c2), gi * (u0 * c1 - u1 * c0)
            k0, k1, k2 = gk * (c1 * v2 - c2 * v1), gk * (c2 * v0 - c0 * v2), gk * (c0 * v1 - c1 * v0)
            fi0[b] += a0
            fi1[b] += a1
            fi2[b] += a2
            fl0[b] += k0
            fl1[b] += k1
            fl2[b] += k2
            fj0[b] -= a0 + k0
            fj1[b] -= a1 + k1
            fj2[b] -= a2 + k2
    # ---- torsions: U = c₀ + Σₙ aₙ cos nφ + bₙ sin nφ, Bekker's forces (see batched.Dihedrals)
    cos1, sin1, cn, sn = t0, t1, t2, t3
    u, du = np.empty(lanes), np.empty(lanes)
    n_series = torsion_a.shape[1]
    for n in range(torsion_atoms.shape[0]):
        i, j, k, l = torsion_atoms[n, 0], torsion_atoms[n, 1], torsion_atoms[n, 2], torsion_atoms[n, 3]
        xi0, xi1, xi2, xj0, xj1, xj2 = x[i, 0], x[i, 1], x[i, 2], x[j, 0], x[j, 1], x[j, 2]
        xk0, xk1, xk2, xl0, xl1, xl2 = x[k, 0], x[k, 1], x[k, 2], x[l, 0], x[l, 1], x[l, 2]
        c00, a00, b00 = torsion_c0[n], torsion_a[n, 0], torsion_b[n, 0]
        for b in range(lanes):
            a0, a1, a2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]  # r_ij
            b0, b1, b2 = xk0[b] - xj0[b], xk1[b] - xj1[b], xk2[b] - xj2[b]  # r_kj
            c0, c1, c2 = xk0[b] - xl0[b], xk1[b] - xl1[b], xk2[b] - xl2[b]  # r_kl
            m0, m1, m2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0  # r_ij × r_kj
            n0, n1, n2 = b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0  # r_kj × r_kl
            kj = math.sqrt(b0 * b0 + b1 * b1 + b2 * b2)
            inv = 1.0 / math.sqrt((m0 * m0 + m1 * m1 + m2 * m2) * (n0 * n0 + n1 * n1 + n2 * n2))
            c = (m0 * n0 + m1 * n1 + m2 * n2) * inv
            s = kj * (a0 * n0 + a1 * n1 + a2 * n2) * inv
            cos1[b], sin1[b], cn[b], sn[b] = c, s, c, s
            u[b] = c00 + a00 * c + b00 * s
            du[b] = b00 * c - a00 * s
        for p in range(1, n_series):
            ap, bp, order = torsion_a[n, p], torsion_b[n, p], p + 1
            for b in range(lanes):
                c, s = cn[b] * cos1[b] - sn[b] * sin1[b], sn[b] * cos1[b] + cn[b] * sin1[b]  # of (p+1)φ
                cn[b], sn[b] = c, s
                u[b] += ap * c + bp * s
                du[b] += order * (bp * c - ap * s)
        fi0, fi1, fi2, fj0, fj1, fj2 = f[i, 0], f[i, 1], f[i, 2], f[j, 0], f[j, 1], f[j, 2]
        fk0, fk1, fk2, fl0, fl1, fl2 = f[k, 0], f[k, 1], f[k, 2], f[l, 0], f[l, 1], f[l, 2]
        for b in range(lanes):
            a0, a1, a2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
            b0, b1, b2 = xk0[b] - xj0[b], xk1[b] - xj1[b], xk2[b] - xj2[b]
            c0, c1, c2 = xk0[b] - xl0[b], xk1[b] - xl1[b], xk2[b] - xl2[b]
            m0, m1, m2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0
            n0, n1, n2 = b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0
            kj2 = b0 * b0 + b1 * b1 + b2 * b2
            kj = math.sqrt(kj2)
            mm = m0 * m0 + m1 * m1 + m2 * m2
            nn = n0 * n0 + n1 * n1 + n2 * n2
            acc[b] += u[b]
            gi = -du[b] * kj / mm
            gl = du[b] * kj / nn
            q0, q1, q2 = gi * m0, gi * m1, gi * m2  # f_i
            w0, w1, w2 = gl * n0, gl * n1, gl * n2  # f_l
            p_ = (a0 * b0 + a1 * b1 + a2 * b2) / kj2
            q_ = (c0 * b0 + c1 * b1 + c2 * b2) / kj2
            s0, s1, s2 = p_ * q0 - q_ * w0, p_ * q1 - q_ * w1, p_ * q2 - q_ * w2
            # atoms i, j, k, l receive f_i, s − f_i, −f_l − s, f_l
            fi0[b] += q0
            fi1[b] += q1
            fi2[b] += q2
            fj0[b] += s0 - q0
            fj1[b] += s1 - q1
            fj2[b] += s2 - q2
            fk0[b] -= w0 + s0
            fk1[b] -= w1 + s1
            fk2[b] -= w2 + s2
            fl0[b] += w0
            fl1[b] += w1
            fl2[b] += w2
    for b in range(lanes):
        e[b] += acc[b]


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def _parallel(x, f, e, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
              torsion_b, torsion_c0):
    for w in prange(x.shape[0]):  # one thread owns each block of walkers
        block(x[w], f[w], e[w], bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms,
              torsion_a, torsion_b, torsion_c0)


@njit(cache=True, fastmath=False, error_model="numpy")
def _serial(x, f, e, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
            torsion_b, torsion_c0):
    for w in range(x.shape[0]):
        block(x[w], f[w], e[w], bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms,
              torsion_a, torsion_b, torsion_c0)


def accumulate_lanes(x: np.ndarray, f: np.ndarray, e: np.ndarray, params: BondedParameters, parallel: bool) -> None:
    """Add the bonded energies to ``e`` and forces to ``f``, in place, in the lanes layout (:mod:`.lanes`).

    Parameters
    ----------
    x : ndarray, shape ``(n_blocks, n_atoms, 3, B)``, nm
    f : ndarray, same shape and dtype, kJ/mol/nm
    e : ndarray, shape ``(n_blocks, B)``, kJ/mol
    params : BondedParameters
    parallel : bool
        Blocks over numba's thread pool (``prange``) or on the calling thread only.
    """
    (_parallel if parallel else _serial)(x, f, e, *params.arrays())
