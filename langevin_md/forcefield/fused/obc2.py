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

Two layouts, the same arithmetic: :func:`accumulate` takes walkers ``(n_walkers, n_atoms, 3)``
(one walker per kernel call), :func:`accumulate_lanes` blocks ``(n_blocks, n_atoms, 3, B)`` with
walkers innermost (the fused package's lanes layout), where :func:`block` runs every pair for B
walkers at once so that LLVM vectorises over walkers. Each lane of :func:`block` does exactly
:func:`_walker`'s floating-point operations in the same order, so the two are bitwise equal.
Per pair and walker the kernel makes two ``log`` and one ``exp`` calls (libm, scalar: they stay
in loops of their own) and seven divisions; in the lanes layout those calls are most of the time.
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


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False, inline="always")
def _born_parts(r, inv_r, or1, sr2):
    """:func:`_born_term` up to its log: (L/U, head, dhead, tail), (1, 0, 0, 0) when inactive.

    ``value = 0.5*(head + 0.5*log(L/U)*inv_r)`` and ``dvalue = 0.5*(dhead + 0.5*(tail - log(L/U)*inv_r*inv_r))``
    are then :func:`_born_term`'s expressions, operation for operation. Branch-free where the
    vectoriser needs it: both outcomes are computed and selected.
    """
    inactive = r + sr2 - or1 < 0.0  # step(r+sr2-or1) is 1 at 0
    u = r + sr2
    dist = abs(r - sr2)
    if dist > or1:
        low, dlow = dist, (1.0 if r > sr2 else -1.0)
    else:
        low, dlow = or1, 0.0
    inv_u, inv_l = 1.0 / u, 1.0 / low
    inv_u2, inv_l2 = inv_u * inv_u, inv_l * inv_l
    h = r - sr2 * sr2 * inv_r
    head = inv_l - inv_u + 0.25 * h * (inv_u2 - inv_l2)
    dh = 1.0 + sr2 * sr2 * inv_r * inv_r
    dhead = (-dlow * inv_l2 + inv_u2
             + 0.25 * (dh * (inv_u2 - inv_l2) + h * (-2.0 * inv_u2 * inv_u + 2.0 * dlow * inv_l2 * inv_l)))
    tail = (dlow * inv_l - inv_u) * inv_r
    if inactive:  # log(1) = 0: value and dvalue come out +0.0, _born_term's early return
        return 1.0, 0.0, 0.0, 0.0
    return low * inv_u, head, dhead, tail


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def block(X, F, E, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    """Add the OBC2 energies of a block of walkers to ``E`` ``(B,)`` and forces to ``F``.

    Parameters
    ----------
    X, F : ndarray, shape ``(n_atoms, 3, B)``, C-contiguous
        Positions (nm) and forces (kJ/mol/nm) of B walkers, walkers innermost.
    E : ndarray, shape ``(B,)``
        kJ/mol.
    charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset
        :meth:`OBC2Parameters.arrays`.
    """
    n = X.shape[0]
    lanes = X.shape[2]
    n_pairs = n * (n - 1) // 2
    integral = np.zeros((n, lanes))
    d_term = np.empty((n_pairs, 2, lanes))  # [p, 0]: d(j's term of I_i)/dr, [p, 1]: d(i's term of I_j)/dr
    inv_rs = np.empty((n_pairs, lanes))
    # per-pair temporaries, term t = 0 (I_i from j) and 1 (I_j from i): the Born term split around its
    # log; value = 0.5*(head + 0.5*log*inv_r), dvalue = 0.5*(dhead + 0.5*(tail - log*inv_r*inv_r))
    ratio = np.empty((2, lanes))
    head = np.empty((2, lanes))
    dhead = np.empty((2, lanes))
    tail = np.empty((2, lanes))
    p = 0
    for i in range(n):
        xi0, xi1, xi2 = X[i, 0], X[i, 1], X[i, 2]
        rho_i, scaled_i = rho[i], scaled[i]
        for j in range(i + 1, n):
            xj0, xj1, xj2 = X[j, 0], X[j, 1], X[j, 2]
            rho_j, scaled_j = rho[j], scaled[j]
            inv_r_p = inv_rs[p]
            ratio0, ratio1, head0, head1 = ratio[0], ratio[1], head[0], head[1]
            dhead0, dhead1, tail0, tail1 = dhead[0], dhead[1], tail[0], tail[1]
            for b in range(lanes):
                d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
                r2 = d0 * d0 + d1 * d1 + d2 * d2
                r = math.sqrt(r2)
                inv_r = 1.0 / r
                inv_r_p[b] = inv_r
                ratio0[b], head0[b], dhead0[b], tail0[b] = _born_parts(r, inv_r, rho_i, scaled_j)
                ratio1[b], head1[b], dhead1[b], tail1[b] = _born_parts(r, inv_r, rho_j, scaled_i)
            for b in range(lanes):  # libm: its own loop
                ratio0[b] = math.log(ratio0[b])
                ratio1[b] = math.log(ratio1[b])
            int_i, int_j, dt0, dt1 = integral[i], integral[j], d_term[p, 0], d_term[p, 1]
            for b in range(lanes):
                inv_r = inv_r_p[b]
                int_i[b] += 0.5 * (head0[b] + 0.5 * ratio0[b] * inv_r)
                dt0[b] = 0.5 * (dhead0[b] + 0.5 * (tail0[b] - ratio0[b] * inv_r * inv_r))
                int_j[b] += 0.5 * (head1[b] + 0.5 * ratio1[b] * inv_r)
                dt1[b] = 0.5 * (dhead1[b] + 0.5 * (tail1[b] - ratio1[b] * inv_r * inv_r))
            p += 1
    born = np.empty((n, lanes))
    dborn_dintegral = np.empty((n, lanes))
    de_dborn = np.empty((n, lanes))
    energy = np.zeros(lanes)
    th = np.empty(lanes)
    has_ace = not math.isnan(ace_offset)
    for i in range(n):
        rho_i, int_i = rho[i], integral[i]
        radius = rho[i] + born_offset
        for b in range(lanes):
            psi = int_i[b] * rho_i
            th[b] = psi - 0.8 * psi * psi + 4.85 * psi * psi * psi
        for b in range(lanes):  # libm: its own loop
            th[b] = math.tanh(th[b])
        born_i, dbdi_i, dedb_i = born[i], dborn_dintegral[i], de_dborn[i]
        q2 = self_prefactor * charge[i] * charge[i]
        for b in range(lanes):
            psi = int_i[b] * rho_i
            t_h = th[b]
            bb = 1.0 / (1.0 / rho_i - t_h / radius)
            born_i[b] = bb
            dbdi_i[b] = bb * bb * (1.0 - t_h * t_h) * (1.0 - 1.6 * psi + 14.55 * psi * psi) * rho_i / radius
            e_self = q2 / bb
            energy[b] += e_self
            dedb_i[b] = -e_self / bb
        if has_ace:
            radius_ace = rho[i] + ace_offset
            c_ace = 28.3919551 * (radius_ace + 0.14) * (radius_ace + 0.14)
            for b in range(lanes):
                bb = born_i[b]
                t = radius_ace / bb
                t3 = t * t * t
                e_ace = c_ace * t3 * t3
                energy[b] += e_ace
                dedb_i[b] -= 6.0 * e_ace / bb
    expo = np.empty(lanes)
    big_d = np.empty(lanes)
    for i in range(n):  # pair energies: direct forces, and dU/dB through BᵢBⱼ
        qi = pair_prefactor * charge[i]
        xi0, xi1, xi2 = X[i, 0], X[i, 1], X[i, 2]
        fi0, fi1, fi2 = F[i, 0], F[i, 1], F[i, 2]
        born_i, dedb_i = born[i], de_dborn[i]
        for j in range(i + 1, n):
            qij = qi * charge[j]
            xj0, xj1, xj2 = X[j, 0], X[j, 1], X[j, 2]
            fj0, fj1, fj2 = F[j, 0], F[j, 1], F[j, 2]
            born_j, dedb_j = born[j], de_dborn[j]
            for b in range(lanes):
                d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
                r2 = d0 * d0 + d1 * d1 + d2 * d2
                big_d[b] = 0.25 * r2 / (born_i[b] * born_j[b])
            for b in range(lanes):  # libm: its own loop
                expo[b] = math.exp(-big_d[b])
            for b in range(lanes):
                d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
                r2 = d0 * d0 + d1 * d1 + d2 * d2
                alpha = born_i[b] * born_j[b]
                ex = expo[b]
                f2 = r2 + alpha * ex
                inv_f = 1.0 / math.sqrt(f2)
                e_pair = qij * inv_f
                energy[b] += e_pair
                e_f2 = e_pair * inv_f * inv_f
                g = e_f2 * (1.0 - 0.25 * ex)  # −2 dU/d(r²)
                de_dalpha = -0.5 * e_f2 * ex * (1.0 + big_d[b])
                dedb_i[b] += de_dalpha * born_j[b]
                dedb_j[b] += de_dalpha * born_i[b]
                fi0[b] += g * d0
                fi1[b] += g * d1
                fi2[b] += g * d2
                fj0[b] -= g * d0
                fj1[b] -= g * d1
                fj2[b] -= g * d2
    for i in range(n):  # dU/dI
        dedb_i, dbdi_i = de_dborn[i], dborn_dintegral[i]
        for b in range(lanes):
            dedb_i[b] *= dbdi_i[b]
    p = 0
    for i in range(n):  # chain through I: each pair moves Iᵢ and Iⱼ
        xi0, xi1, xi2 = X[i, 0], X[i, 1], X[i, 2]
        fi0, fi1, fi2 = F[i, 0], F[i, 1], F[i, 2]
        dedb_i = de_dborn[i]
        for j in range(i + 1, n):
            xj0, xj1, xj2 = X[j, 0], X[j, 1], X[j, 2]
            fj0, fj1, fj2 = F[j, 0], F[j, 1], F[j, 2]
            dedb_j, dt0, dt1, inv_r_p = de_dborn[j], d_term[p, 0], d_term[p, 1], inv_rs[p]
            for b in range(lanes):
                d0, d1, d2 = xi0[b] - xj0[b], xi1[b] - xj1[b], xi2[b] - xj2[b]
                c = -(dedb_i[b] * dt0[b] + dedb_j[b] * dt1[b]) * inv_r_p[b]
                fi0[b] += c * d0
                fi1[b] += c * d1
                fi2[b] += c * d2
                fj0[b] -= c * d0
                fj1[b] -= c * d1
                fj2[b] -= c * d2
            p += 1
    for b in range(lanes):
        E[b] += energy[b]


@njit(parallel=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _lanes_parallel(X, F, E, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    for k in prange(X.shape[0]):  # one thread owns each block
        block(X[k], F[k], E[k], charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset)


@njit(cache=True, fastmath=False, error_model="numpy", boundscheck=False)
def _lanes_serial(X, F, E, charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset):
    for k in range(X.shape[0]):
        block(X[k], F[k], E[k], charge, rho, scaled, born_offset, self_prefactor, pair_prefactor, ace_offset)


def accumulate_lanes(X: np.ndarray, F: np.ndarray, E: np.ndarray, params: OBC2Parameters, parallel: bool) -> None:
    """Add the OBC2 energies to ``E`` ``(n_blocks, B)`` and forces to ``F`` ``(n_blocks, n_atoms, 3, B)``.

    ``X`` ``(n_blocks, n_atoms, 3, B)`` nm, C-contiguous, in the dtype of ``params``; ``parallel``:
    blocks over numba's pool. Each lane's results are bitwise those of :func:`accumulate` on that walker.
    Shapes and dtypes are checked here (the kernels run without bounds checks).
    """
    n_atoms = params.charge.shape[0]
    if X.ndim != 4 or X.shape[1:3] != (n_atoms, 3):
        raise ValueError(f"X must have shape (n_blocks, {n_atoms}, 3, B), got {X.shape}")
    if F.shape != X.shape or E.shape != (X.shape[0], X.shape[3]):
        raise ValueError(f"F must have X's shape {X.shape} and E shape {(X.shape[0], X.shape[3])}; "
                         f"got F {F.shape}, E {E.shape}")
    for name, a in (("X", X), ("F", F), ("E", E)):
        if a.dtype != params.charge.dtype or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous {params.charge.dtype} (the parameters' dtype), "
                             f"got {a.dtype}{'' if a.flags.c_contiguous else ', not C-contiguous'}")
    (_lanes_parallel if parallel else _lanes_serial)(X, F, E, *params.arrays())
