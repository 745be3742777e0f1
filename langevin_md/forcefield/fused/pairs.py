"""Fused kernel of ``NonbondedForce`` with ``NoCutoff``: Lennard-Jones + Coulomb over one pair list.

The pair list is the torch term's (:class:`~langevin_md.forcefield.nonbonded.PairInteractions`):
ordinary non-excluded pairs with combined parameters, then the exceptions (scaled 1–4 pairs)
with their own, all as k_e qᵢqⱼ, 4ε and σ². Per pair, U = 4ε[(σ/r)¹² − (σ/r)⁶] + k_e qᵢqⱼ/r and
F_i = (−r dU/dr) d / r², as the torch term computes it. Only ``NoCutoff`` terms are fused;
cutoff, switching and reaction field stay on the torch path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from langevin_md.forcefield.fused.recognise import is_pairs


@dataclass
class PairParameters:
    """All fused pairs: ``atoms`` ``(p, 2)`` int64, ``qq`` (kJ/mol nm), ``eps4`` (kJ/mol), ``sigma2`` (nm²), each ``(p,)``."""

    atoms: np.ndarray
    qq: np.ndarray
    eps4: np.ndarray
    sigma2: np.ndarray

    def arrays(self) -> tuple:
        return self.atoms, self.qq, self.eps4, self.sigma2


def is_fusable(term) -> bool:
    """Whether ``term`` is a ``PairInteractions`` without cutoff (the only kind fused here)."""
    return is_pairs(term)


def pack(terms, dtype) -> PairParameters:
    """Concatenate the pair lists of ``terms`` (each :func:`is_fusable`), parameters in ``dtype``."""
    def cat(name, width):
        blocks = [getattr(t, name).detach().cpu().numpy().reshape(width, -1) for t in terms]
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((width, 0))

    return PairParameters(np.ascontiguousarray(cat("atoms", 2).T, dtype=np.int64),
                          np.ascontiguousarray(cat("qq", 1)[0], dtype=dtype),
                          np.ascontiguousarray(cat("eps4", 1)[0], dtype=dtype),
                          np.ascontiguousarray(cat("sigma2", 1)[0], dtype=dtype))


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def block(x, f, e, atoms, qq, eps4, sigma2):
    """Pair energies of one block (``x``, ``f`` ``(n_atoms, 3, B)``, ``e`` ``(B,)``), added into ``f`` and ``e``."""
    lanes = x.shape[2]
    acc = np.zeros(lanes)  # summed apart and added once: the per-walker kernel's order
    for p in range(atoms.shape[0]):
        i, j = atoms[p, 0], atoms[p, 1]
        q, e4, s2p = qq[p], eps4[p], sigma2[p]
        xi0, xi1, xi2, xj0, xj1, xj2 = x[i, 0], x[i, 1], x[i, 2], x[j, 0], x[j, 1], x[j, 2]
        fi0, fi1, fi2, fj0, fj1, fj2 = f[i, 0], f[i, 1], f[i, 2], f[j, 0], f[j, 1], f[j, 2]
        for b in range(lanes):  # SIMD over walkers (see lanes.py)
            d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
            inv_r2 = 1.0 / (d0 * d0 + d1 * d1 + d2 * d2)
            inv_r = math.sqrt(inv_r2)
            s2 = s2p * inv_r2
            s6 = s2 * s2 * s2
            coul = q * inv_r
            acc[b] += e4 * (s6 * s6 - s6) + coul
            g = (e4 * (12.0 * s6 * s6 - 6.0 * s6) + coul) * inv_r2  # −r dU/dr / r²
            fi0[b] += g * d0
            fi1[b] += g * d1
            fi2[b] += g * d2
            fj0[b] -= g * d0
            fj1[b] -= g * d1
            fj2[b] -= g * d2
    for b in range(lanes):
        e[b] += acc[b]


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy")
def _parallel(x, f, e, atoms, qq, eps4, sigma2):
    for k in prange(x.shape[0]):  # one thread owns each block of walkers
        block(x[k], f[k], e[k], atoms, qq, eps4, sigma2)


@njit(cache=True, fastmath=False, error_model="numpy")
def _serial(x, f, e, atoms, qq, eps4, sigma2):
    for k in range(x.shape[0]):
        block(x[k], f[k], e[k], atoms, qq, eps4, sigma2)


def accumulate_lanes(x: np.ndarray, f: np.ndarray, e: np.ndarray, params: PairParameters, parallel: bool) -> None:
    """Add the pair energies to ``e`` ``(n_blocks, B)`` and forces to ``f`` ``(n_blocks, n_atoms, 3, B)``.

    ``x`` ``(n_blocks, n_atoms, 3, B)`` nm in the lanes layout (:mod:`.lanes`); ``parallel``:
    blocks over numba's pool. Per walker the operations are those of the per-walker formula
    in the module docstring, in that order.
    """
    (_parallel if parallel else _serial)(x, f, e, *params.arrays())
