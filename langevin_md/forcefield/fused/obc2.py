"""Fused kernel of OBC2 generalized Born as Amber's ``implicit/obc2.xml`` writes it (a ``CustomGBForce``).

OpenMM's ``app.internal.customgbforces.GBSAOBC2Force`` (used by ``implicit/obc2.xml``) builds a
``CustomGBForce`` with per-particle parameters ``charge``, ``or`` (offset radius ρ = R − 0.009
nm) and ``sr`` (scaled offset radius), and these expressions, which :func:`~langevin_md.forcefield.fused.recognise.recognise_obc2`
matches text for text (numbers read from the text):

- computed value ``I`` (ParticlePairNoExclusions): Σ_{j≠i} of
  ``select(step(r+sr2-or1), 0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r), 0)``
  with U = r + sⱼ, L = max(ρᵢ, |r − sⱼ|);
- computed value ``B`` (SingleParticle): 1/(1/ρ − tanh(ψ − 0.8ψ² + 4.85ψ³)/R), ψ = Iρ,
  R = ρ + offset;
- energy terms: −½·138.935485 (1/ε_in − 1/ε_out) q²/B per particle; optionally the ACE term
  28.3919551 (R + 0.14)² (R/B)⁶ per particle; −138.935485 (1/ε_in − 1/ε_out) qᵢqⱼ/f over all
  pairs i < j, f = √(r² + BᵢBⱼ exp(−r²/(4BᵢBⱼ))).

Anything else (salt, ``kappa`` ≠ 0; a cutoff; other expressions, globals or functions) is not
recognised and stays on the torch path. The forces are the exact gradient of these
expressions, as the torch ``CustomGBTerm`` differentiates them (including the derivative of
L = |r − sⱼ| that OpenMM's built-in ``GBSAOBCForce`` leaves out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from langevin_md.forcefield.fused.recognise import recognise_obc2


@dataclass
class OBC2Parameters:
    """One recognised OBC2 ``CustomGBForce``.

    Attributes
    ----------
    charge, offset_radius, scaled_radius : ndarray, shape ``(n_atoms,)``
        q (e), ρ (nm), sⱼ (nm): the force's ``charge``, ``or`` and ``sr``.
    born_offset : float
        nm, the ``offset`` of the Born-radius expression (R = ρ + offset).
    self_prefactor, pair_prefactor : float
        −½·138.935485 (1/ε_in − 1/ε_out) and −138.935485 (1/ε_in − 1/ε_out), kJ/mol nm e⁻².
    ace_offset : float
        nm, the ``offset`` of the ACE term's R; NaN when the force has no ACE term.
    """

    charge: np.ndarray
    offset_radius: np.ndarray
    scaled_radius: np.ndarray
    born_offset: float
    self_prefactor: float
    pair_prefactor: float
    ace_offset: float

    def arrays(self) -> tuple:
        return (self.charge, self.offset_radius, self.scaled_radius, self.born_offset, self.self_prefactor,
                self.pair_prefactor, self.ace_offset)


def is_fusable(term) -> bool:
    """Whether ``term`` is a ``CustomGBTerm`` with Amber's OBC2 expressions (see :func:`recognise_obc2`)."""
    return recognise_obc2(term) is not None


def pack(term, dtype) -> OBC2Parameters:
    """Parameters of one recognised OBC2 term, per-particle arrays in ``dtype``."""
    settings = recognise_obc2(term)
    if settings is None:
        raise ValueError(f"{term!r} is not the OBC2 CustomGBForce of implicit/obc2.xml; it stays on the torch path")
    params = term.params.detach().cpu().numpy()
    return OBC2Parameters(*(np.ascontiguousarray(params[:, c], dtype=dtype) for c in range(3)), **settings)


@njit(cache=True, fastmath=False)
def _born_term(r, inv_r, or1, sr2):
    """One pair's contribution to I of particle 1 and its derivative in r (0, 0 when inactive)."""
    if r + sr2 - or1 < 0.0:  # step(r+sr2-or1) is 1 at 0
        return 0.0, 0.0
    u = r + sr2
    dist = abs(r - sr2)
    if dist > or1:
        low, dlow = dist, (1.0 if r > sr2 else -1.0)
    else:
        low, dlow = or1, 0.0
    inv_u, inv_l = 1.0 / u, 1.0 / low
    inv_u2, inv_l2 = inv_u * inv_u, inv_l * inv_l
    log_ratio = math.log(low * inv_u)  # one log per ordered pair: most of this kernel's time
    h = r - sr2 * sr2 * inv_r
    value = 0.5 * (inv_l - inv_u + 0.25 * h * (inv_u2 - inv_l2) + 0.5 * log_ratio * inv_r)
    dh = 1.0 + sr2 * sr2 * inv_r * inv_r
    dvalue = 0.5 * (-dlow * inv_l2 + inv_u2
                    + 0.25 * (dh * (inv_u2 - inv_l2) + h * (-2.0 * inv_u2 * inv_u + 2.0 * dlow * inv_l2 * inv_l))
                    + 0.5 * ((dlow * inv_l - inv_u) * inv_r - log_ratio * inv_r * inv_r))
    return value, dvalue


@njit(cache=True, fastmath=False)
def _walker(x, f, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    """OBC2 energy of one walker (``x`` ``(n_atoms, 3)``), adding its forces into ``f``."""
    n = x.shape[0]
    integral = np.zeros(n)
    d_term = np.empty((n, n))  # d_term[i, j]: d(pair j's contribution to I_i)/dr
    dist = np.empty((n, n, 5))  # for i < j: d (3), r², 1/r, computed once, used by every pass
    for i in range(n):
        for j in range(i + 1, n):
            d0, d1, d2 = x[i, 0] - x[j, 0], x[i, 1] - x[j, 1], x[i, 2] - x[j, 2]
            r2 = d0 * d0 + d1 * d1 + d2 * d2
            r = math.sqrt(r2)
            inv_r = 1.0 / r
            dist[i, j, 0], dist[i, j, 1], dist[i, j, 2], dist[i, j, 3], dist[i, j, 4] = d0, d1, d2, r2, inv_r
            v, dv = _born_term(r, inv_r, rho[i], scaled[j])
            integral[i] += v
            d_term[i, j] = dv
            v, dv = _born_term(r, inv_r, rho[j], scaled[i])
            integral[j] += v
            d_term[j, i] = dv
    born = np.empty(n)
    dborn_dintegral = np.empty(n)
    de_dborn = np.empty(n)
    energy = 0.0
    for i in range(n):
        psi = integral[i] * rho[i]
        radius = rho[i] + born_offset
        th = math.tanh(psi - 0.8 * psi * psi + 4.85 * psi * psi * psi)
        b = 1.0 / (1.0 / rho[i] - th / radius)
        born[i] = b
        dborn_dintegral[i] = b * b * (1.0 - th * th) * (1.0 - 1.6 * psi + 14.55 * psi * psi) * rho[i] / radius
        e_self = self_prefactor * charge[i] * charge[i] / b
        energy += e_self
        de_dborn[i] = -e_self / b
        if not math.isnan(ace_offset):
            radius = rho[i] + ace_offset
            t = radius / b
            t3 = t * t * t
            e_ace = 28.3919551 * (radius + 0.14) * (radius + 0.14) * t3 * t3
            energy += e_ace
            de_dborn[i] -= 6.0 * e_ace / b
    for i in range(n):  # pair energies: direct forces, and dU/dB through BᵢBⱼ
        qi = pair_prefactor * charge[i]
        for j in range(i + 1, n):
            d0, d1, d2, r2 = dist[i, j, 0], dist[i, j, 1], dist[i, j, 2], dist[i, j, 3]
            alpha = born[i] * born[j]
            big_d = 0.25 * r2 / alpha
            expo = math.exp(-big_d)
            f2 = r2 + alpha * expo
            inv_f = 1.0 / math.sqrt(f2)
            e_pair = qi * charge[j] * inv_f
            energy += e_pair
            e_f2 = e_pair * inv_f * inv_f
            g = e_f2 * (1.0 - 0.25 * expo)  # −2 dU/d(r²)
            de_dalpha = -0.5 * e_f2 * expo * (1.0 + big_d)
            de_dborn[i] += de_dalpha * born[j]
            de_dborn[j] += de_dalpha * born[i]
            f[i, 0] += g * d0
            f[i, 1] += g * d1
            f[i, 2] += g * d2
            f[j, 0] -= g * d0
            f[j, 1] -= g * d1
            f[j, 2] -= g * d2
    for i in range(n):  # dU/dI
        de_dborn[i] *= dborn_dintegral[i]
    for i in range(n):  # chain through I: each pair moves Iᵢ and Iⱼ
        for j in range(i + 1, n):
            d0, d1, d2 = dist[i, j, 0], dist[i, j, 1], dist[i, j, 2]
            c = -(de_dborn[i] * d_term[i, j] + de_dborn[j] * d_term[j, i]) * dist[i, j, 4]
            f[i, 0] += c * d0
            f[i, 1] += c * d1
            f[i, 2] += c * d2
            f[j, 0] -= c * d0
            f[j, 1] -= c * d1
            f[j, 2] -= c * d2
    return energy


@njit(parallel=True, cache=True, fastmath=False)
def _parallel(x, f, e, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    for w in prange(x.shape[0]):  # one thread owns each walker's rows
        e[w] += _walker(x[w], f[w], charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset)


@njit(cache=True, fastmath=False)
def _serial(x, f, e, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    for w in range(x.shape[0]):
        e[w] += _walker(x[w], f[w], charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset)


def accumulate(x: np.ndarray, f: np.ndarray, e: np.ndarray, params: OBC2Parameters, parallel: bool) -> None:
    """Add the OBC2 energies to ``e`` ``(n_walkers,)`` and forces to ``f`` ``(n_walkers, n_atoms, 3)``.

    ``x`` ``(n_walkers, n_atoms, 3)`` nm, C-contiguous; ``parallel``: walkers over numba's pool.
    """
    (_parallel if parallel else _serial)(x, f, e, *params.arrays())
