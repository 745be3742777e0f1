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


@njit(cache=True, fastmath=False)
def _walker(x, f, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
            torsion_b, torsion_c0):
    """Bonded energy of one walker (``x`` ``(n_atoms, 3)``), adding its forces into ``f``."""
    energy = 0.0
    # ---- bonds: U = ½ k (r − r₀)², F_i = −k (r − r₀) d / r
    for b in range(bond_atoms.shape[0]):
        i, j = bond_atoms[b, 0], bond_atoms[b, 1]
        d0, d1, d2 = x[i, 0] - x[j, 0], x[i, 1] - x[j, 1], x[i, 2] - x[j, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        dr = r - bond_length[b]
        energy += 0.5 * bond_k[b] * dr * dr
        g = -bond_k[b] * dr / r
        f[i, 0] += g * d0
        f[i, 1] += g * d1
        f[i, 2] += g * d2
        f[j, 0] -= g * d0
        f[j, 1] -= g * d1
        f[j, 2] -= g * d2
    # ---- angles: θ = atan2(|u × v|, u·v); F_i = g/|u|² u × c, F_k = g/|v|² c × v, g = −k Δθ/|c|
    for a in range(angle_atoms.shape[0]):
        i, j, k = angle_atoms[a, 0], angle_atoms[a, 1], angle_atoms[a, 2]
        u0, u1, u2 = x[i, 0] - x[j, 0], x[i, 1] - x[j, 1], x[i, 2] - x[j, 2]
        v0, v1, v2 = x[k, 0] - x[j, 0], x[k, 1] - x[j, 1], x[k, 2] - x[j, 2]
        c0, c1, c2 = u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0
        c_norm = math.sqrt(c0 * c0 + c1 * c1 + c2 * c2)
        dtheta = math.atan2(c_norm, u0 * v0 + u1 * v1 + u2 * v2) - angle_theta[a]
        energy += 0.5 * angle_k[a] * dtheta * dtheta
        g = -angle_k[a] * dtheta / c_norm
        gi = g / (u0 * u0 + u1 * u1 + u2 * u2)
        gk = g / (v0 * v0 + v1 * v1 + v2 * v2)
        fi0, fi1, fi2 = gi * (u1 * c2 - u2 * c1), gi * (u2 * c0 - u0 * c2), gi * (u0 * c1 - u1 * c0)
        fk0, fk1, fk2 = gk * (c1 * v2 - c2 * v1), gk * (c2 * v0 - c0 * v2), gk * (c0 * v1 - c1 * v0)
        f[i, 0] += fi0
        f[i, 1] += fi1
        f[i, 2] += fi2
        f[k, 0] += fk0
        f[k, 1] += fk1
        f[k, 2] += fk2
        f[j, 0] -= fi0 + fk0
        f[j, 1] -= fi1 + fk1
        f[j, 2] -= fi2 + fk2
    # ---- torsions: U = c₀ + Σₙ aₙ cos nφ + bₙ sin nφ, Bekker's forces (see batched.Dihedrals)
    n_series = torsion_a.shape[1]
    for t in range(torsion_atoms.shape[0]):
        i, j, k, l = torsion_atoms[t, 0], torsion_atoms[t, 1], torsion_atoms[t, 2], torsion_atoms[t, 3]
        a0, a1, a2 = x[i, 0] - x[j, 0], x[i, 1] - x[j, 1], x[i, 2] - x[j, 2]  # r_ij
        b0, b1, b2 = x[k, 0] - x[j, 0], x[k, 1] - x[j, 1], x[k, 2] - x[j, 2]  # r_kj
        c0, c1, c2 = x[k, 0] - x[l, 0], x[k, 1] - x[l, 1], x[k, 2] - x[l, 2]  # r_kl
        m0, m1, m2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0  # r_ij × r_kj
        n0, n1, n2 = b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0  # r_kj × r_kl
        kj2 = b0 * b0 + b1 * b1 + b2 * b2
        kj = math.sqrt(kj2)
        mm = m0 * m0 + m1 * m1 + m2 * m2
        nn = n0 * n0 + n1 * n1 + n2 * n2
        inv = 1.0 / math.sqrt(mm * nn)
        cos1 = (m0 * n0 + m1 * n1 + m2 * n2) * inv
        sin1 = kj * (a0 * n0 + a1 * n1 + a2 * n2) * inv
        u = torsion_c0[t] + torsion_a[t, 0] * cos1 + torsion_b[t, 0] * sin1
        du = torsion_b[t, 0] * cos1 - torsion_a[t, 0] * sin1
        cn, sn = cos1, sin1
        for p in range(1, n_series):
            cn, sn = cn * cos1 - sn * sin1, sn * cos1 + cn * sin1  # cos, sin of (p+1)φ
            u += torsion_a[t, p] * cn + torsion_b[t, p] * sn
            du += (p + 1) * (torsion_b[t, p] * cn - torsion_a[t, p] * sn)
        energy += u
        gi = -du * kj / mm
        gl = du * kj / nn
        fi0, fi1, fi2 = gi * m0, gi * m1, gi * m2
        fl0, fl1, fl2 = gl * n0, gl * n1, gl * n2
        p_ = (a0 * b0 + a1 * b1 + a2 * b2) / kj2
        q_ = (c0 * b0 + c1 * b1 + c2 * b2) / kj2
        s0, s1, s2 = p_ * fi0 - q_ * fl0, p_ * fi1 - q_ * fl1, p_ * fi2 - q_ * fl2
        # atoms i, j, k, l receive f_i, s − f_i, −f_l − s, f_l
        f[i, 0] += fi0
        f[i, 1] += fi1
        f[i, 2] += fi2
        f[j, 0] += s0 - fi0
        f[j, 1] += s1 - fi1
        f[j, 2] += s2 - fi2
        f[k, 0] -= fl0 + s0
        f[k, 1] -= fl1 + s1
        f[k, 2] -= fl2 + s2
        f[l, 0] += fl0
        f[l, 1] += fl1
        f[l, 2] += fl2
    return energy


@njit(parallel=True, cache=True, fastmath=False)
def _parallel(x, f, e, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
              torsion_b, torsion_c0):
    for w in prange(x.shape[0]):  # walkers are independent: one thread owns each walker's rows
        e[w] += _walker(x[w], f[w], bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k,
                        torsion_atoms, torsion_a, torsion_b, torsion_c0)


@njit(cache=True, fastmath=False)
def _serial(x, f, e, bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k, torsion_atoms, torsion_a,
            torsion_b, torsion_c0):
    for w in range(x.shape[0]):
        e[w] += _walker(x[w], f[w], bond_atoms, bond_length, bond_k, angle_atoms, angle_theta, angle_k,
                        torsion_atoms, torsion_a, torsion_b, torsion_c0)


def accumulate(x: np.ndarray, f: np.ndarray, e: np.ndarray, params: BondedParameters, parallel: bool) -> None:
    """Add the bonded energies to ``e`` and forces to ``f``, in place.

    Parameters
    ----------
    x : ndarray, shape ``(n_walkers, n_atoms, 3)``, nm, C-contiguous
    f : ndarray, same shape and dtype, kJ/mol/nm
    e : ndarray, shape ``(n_walkers,)``, kJ/mol
    params : BondedParameters
    parallel : bool
        Walkers over numba's thread pool (``prange``) or on the calling thread only.
    """
    (_parallel if parallel else _serial)(x, f, e, *params.arrays())
