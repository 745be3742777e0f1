"""``GBSAOBCForce``: OBC generalized-Born implicit solvent with the ACE surface term.

As OpenMM's Reference platform computes it (``ReferenceObc``, OBC type II): with offset radii
ρᵢ = Rᵢ − 0.009 nm and scaled radii sⱼ = Sⱼ ρⱼ (Onufriev, Bashford & Case, Proteins 55,
383 (2004); Hawkins, Cramer & Truhlar, J. Phys. Chem. 100, 19824 (1996)):

- Iᵢ = Σ_{j≠i} ½ [1/L − 1/U + r/4 (1/U² − 1/L²) + ln(L/U)/(2r) + sⱼ²/(4r) (1/L² − 1/U²)
  (+ 2(1/ρᵢ − 1/L) when ρᵢ < sⱼ − r)] over pairs with ρᵢ < r + sⱼ, where U = r + sⱼ and
  L = max(ρᵢ, |r − sⱼ|); ψᵢ = ρᵢ Iᵢ;
- Born radius Bᵢ = 1 / (1/ρᵢ − tanh(ψᵢ − 0.8 ψᵢ² + 4.85 ψᵢ³)/Rᵢ);
- U_GB = −½ k_e (1/ε_in − 1/ε_out) Σᵢ Σⱼ qᵢqⱼ / f, f = √(r² + BᵢBⱼ exp(−r²/(4BᵢBⱼ))),
  over all ordered pairs including i = j (so each i < j pair twice, each self term once);
- U_ACE = 4π γ Σᵢ (Rᵢ + 0.14 nm)² (Rᵢ/Bᵢ)⁶ with γ the surface-area energy.

With ``CutoffNonPeriodic``, pairs farther apart than the cutoff are left out of both sums and
each i ≠ j term is shifted by −qᵢqⱼ/r_c (times the same prefactor). Forces follow OpenMM's
chain rule exactly, including its choice to leave out the derivative of the 2(1/ρᵢ − 1/L)
term (Reference sets dL/dr = 0), so forces equal OpenMM's, not the gradient of the energy, in
that rare case (an atom buried inside a neighbour's scaled sphere).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from langevin_md.forcefield.batched import WalkerLastTerm, dot, gather, scatter
from langevin_md.forcefield.neighbours import DEFAULT_SKIN, NeighbourList, check_skin
from langevin_md.forcefield.nonbonded import ONE_4PI_EPS0
from langevin_md.forcefield.openmm_params import md
from langevin_md.forcefield.registry import builds, term_kind

_DIELECTRIC_OFFSET = 0.009  # nm
_PROBE_RADIUS = 0.14  # nm
_ALPHA, _BETA, _GAMMA = 1.0, 0.8, 4.85  # OBC type II


@term_kind
class OBCGeneralizedBorn(WalkerLastTerm):
    """OBC2 generalized Born + ACE, batched over walkers.

    Parameters
    ----------
    charge : torch.Tensor, shape ``(a, 1)``, e
    radius : torch.Tensor, shape ``(a, 1)``, nm
    scale : torch.Tensor, shape ``(a, 1)``
        Overlap scale factors Sᵢ.
    solute_dielectric, solvent_dielectric : float
    surface_area_energy : float
        γ in kJ/mol/nm².
    cutoff : float or None
        nm, for ``CutoffNonPeriodic``.
    skin : float or None
        With a cutoff: the Verlet skin (nm) of the neighbour list over atom pairs
        (:mod:`langevin_md.forcefield.neighbours`); None evaluates every pair and masks.
        Ignored without a cutoff.
    """

    kind = "gbsa_obc2"

    def __init__(self, charge, radius, scale, solute_dielectric: float, solvent_dielectric: float,
                 surface_area_energy: float, cutoff: Optional[float] = None,
                 skin: Optional[float] = DEFAULT_SKIN):
        super().__init__()
        n = charge.shape[0]
        self.register_buffer("charge", charge)
        self.register_buffer("radius", radius)
        self.register_buffer("scale", scale)
        # pair lists are derived from n, so they are not saved (persistent=False)
        i, j = np.nonzero(~np.eye(n, dtype=bool))  # ordered pairs i ≠ j
        self.register_buffer("pair_i", torch.from_numpy(i.astype(np.int64)), persistent=False)
        self.register_buffer("pair_j", torch.from_numpy(j.astype(np.int64)), persistent=False)
        iu, ju = np.triu_indices(n, k=1)
        self.register_buffer("upper_i", torch.from_numpy(iu.astype(np.int64)), persistent=False)
        self.register_buffer("upper_j", torch.from_numpy(ju.astype(np.int64)), persistent=False)
        self.solute_dielectric = float(solute_dielectric)
        self.solvent_dielectric = float(solvent_dielectric)
        self.surface_area_energy = float(surface_area_energy)
        self.cutoff = None if cutoff is None else float(cutoff)
        if self.solute_dielectric != 0.0 and self.solvent_dielectric != 0.0:
            self.prefactor = -ONE_4PI_EPS0 * (1.0 / self.solute_dielectric - 1.0 / self.solvent_dielectric)
        else:
            self.prefactor = 0.0
        self.skin = None if self.cutoff is None else check_skin(skin)
        self.neighbours = None
        if self.skin is not None:
            self.neighbours = NeighbourList(self.upper_i, self.upper_j, self.cutoff, self.skin)

    def spec(self) -> dict[str, Any]:
        return {"solute_dielectric": self.solute_dielectric, "solvent_dielectric": self.solvent_dielectric,
                "surface_area_energy": self.surface_area_energy, "cutoff": self.cutoff, "skin": self.skin}

    @classmethod
    def from_spec(cls, spec, buffers):
        return cls(buffers["charge"], buffers["radius"], buffers["scale"], spec["solute_dielectric"],
                   spec["solvent_dielectric"], spec["surface_area_energy"], spec["cutoff"], spec.get("skin"))

    def accumulate(self, xt, ft):
        if self.neighbours is None:
            pi, pj = self.pair_i, self.pair_j
            d = gather(xt, pi) - gather(xt, pj)  # (p, 3, n)
            return self._evaluate(xt, ft, pi, pj, d, self.upper_i, self.upper_j, self._ordered_index())
        # pairs within reach in some walker, each in both orders: (i, j) rows first, then (j, i)
        near = self.neighbours.select(xt)
        ui, uj = self.upper_i.index_select(0, near), self.upper_j.index_select(0, near)
        d_u = gather(xt, ui) - gather(xt, uj)
        k = near.shape[0]
        return self._evaluate(xt, ft, torch.cat((ui, uj)), torch.cat((uj, ui)), torch.cat((d_u, -d_u)), ui, uj,
                              torch.arange(k, device=near.device))

    def _evaluate(self, xt, ft, pi, pj, d, ui, uj, upper_rows):
        """Energy (and forces into ``ft``) over the ordered pairs ``(pi, pj)`` with separations
        ``d`` = xᵢ − xⱼ (``(p, 3, n)``); ``(ui, uj)`` are the same pairs unordered (i < j), found
        at rows ``upper_rows`` of the ordered list. Pairs not listed contribute nothing."""
        rho = self.radius - _DIELECTRIC_OFFSET  # (a, 1)
        rho_i = rho.index_select(0, pi)
        s_j = (self.scale * rho).index_select(0, pj)  # (p, 1)

        # ---- Born radii (sum over ordered pairs)
        r2 = dot(d, d)
        r = r2.sqrt()
        inv_r = 1.0 / r
        upper = r + s_j
        lower = torch.maximum(rho_i.expand_as(r), (r - s_j).abs())
        inv_u, inv_l = 1.0 / upper, 1.0 / lower
        inv_u2, inv_l2 = inv_u * inv_u, inv_l * inv_l
        log_ratio = torch.log(inv_u / inv_l)  # ln(L/U)
        term = (inv_l - inv_u + 0.25 * r * (inv_u2 - inv_l2) + 0.5 * inv_r * log_ratio
                + 0.25 * s_j * s_j * inv_r * (inv_l2 - inv_u2))
        term = term + torch.where(rho_i < s_j - r, 2.0 * (1.0 / rho_i - inv_l), torch.zeros_like(term))
        active = rho_i < upper
        if self.cutoff is not None:
            active = active & (r <= self.cutoff)
        term = torch.where(active, term, torch.zeros_like(term))
        n_atoms = self.radius.shape[0]
        total = torch.zeros((n_atoms, r.shape[1]), dtype=r.dtype, device=r.device).index_add_(0, pi, term)
        psi = 0.5 * rho * total
        poly = psi * (_ALPHA + psi * (-_BETA + psi * _GAMMA))
        th = torch.tanh(poly)
        born = 1.0 / (1.0 / rho - th / self.radius)  # (a, n)

        # ---- ACE surface term
        ace = (4.0 * np.pi * self.surface_area_energy) * (self.radius + _PROBE_RADIUS) ** 2 \
            * (self.radius / born) ** 6
        ace = torch.where(born > 0, ace, torch.zeros_like(ace))
        energy = ace.sum(0)
        dE_dborn = -6.0 * ace / born if ft is not None else None

        # ---- polarisation energy: self terms and unordered pairs
        q = self.charge
        energy = energy + (0.5 * self.prefactor * q * q / born).sum(0)
        r2_u = r2.index_select(0, upper_rows)
        b_i, b_j = born.index_select(0, ui), born.index_select(0, uj)
        alpha = b_i * b_j
        big_d = r2_u / (4.0 * alpha)
        expo = torch.exp(-big_d)
        f2 = r2_u + alpha * expo
        f = f2.sqrt()
        qq = self.prefactor * q.index_select(0, ui) * q.index_select(0, uj)  # (u, 1)
        gpol = qq / f
        e_pairs = gpol
        inside = None
        if self.cutoff is not None:
            inside = r2_u <= self.cutoff * self.cutoff
            e_pairs = torch.where(inside, gpol - qq / self.cutoff, torch.zeros_like(gpol))
        energy = energy + e_pairs.sum(0)
        if ft is None:
            return energy

        # dU/d(r²) and dU/d(BᵢBⱼ) of each pair
        dE_dr2 = -0.5 * gpol * (1.0 - 0.25 * expo) / f2
        dE_dalpha = -0.5 * gpol * expo * (1.0 + big_d) / f2
        if inside is not None:
            dE_dr2 = torch.where(inside, dE_dr2, torch.zeros_like(dE_dr2))
            dE_dalpha = torch.where(inside, dE_dalpha, torch.zeros_like(dE_dalpha))
        d_u = d.index_select(0, upper_rows)
        f_pair = (-2.0 * dE_dr2).unsqueeze(1) * d_u  # force on i (d = xᵢ − xⱼ)
        scatter(ft, ui, f_pair)
        scatter(ft, uj, -f_pair)
        dE_dborn = dE_dborn - self.prefactor * q * q * 0.5 / (born * born)
        dE_dborn = dE_dborn.index_add(0, ui, dE_dalpha * b_j).index_add(0, uj, dE_dalpha * b_i)

        # chain through the Born radii: dB/dψ, then ψ's explicit dependence on r
        dpoly = _ALPHA + psi * (-2.0 * _BETA + psi * 3.0 * _GAMMA)
        dborn_dpsi = born * born * (1.0 - th * th) * dpoly / self.radius
        g = dE_dborn * dborn_dpsi * 0.5 * rho  # dU/dIᵢ, (a, n)
        dterm_dr = (-0.25 * (1.0 + s_j * s_j * inv_r * inv_r) * (inv_l2 - inv_u2)
                    - 0.5 * inv_r * inv_r * log_ratio)
        dterm_dr = torch.where(active, dterm_dr, torch.zeros_like(dterm_dr))
        coef = -(g.index_select(0, pi) * dterm_dr * inv_r)  # force on i along d
        f_born = coef.unsqueeze(1) * d
        scatter(ft, pi, f_born)
        scatter(ft, pj, -f_born)
        return energy

    def _ordered_index(self) -> torch.Tensor:
        """Position of each unordered pair (i < j) in the ordered pair list."""
        n = self.radius.shape[0]
        # ordered pairs are row-major over i with j ≠ i skipped: (i, j) sits at i (n − 1) + j − 1
        return self.upper_i * (n - 1) + self.upper_j - 1


@builds("GBSAOBCForce")
def build_gbsa(force, system) -> list:
    method = force.getNonbondedMethod()
    if method == 2:
        raise ValueError(
            "GBSAOBCForce with CutoffPeriodic is not supported by the torch force field; use the "
            "OpenMM bridge (OpenMMSystem, engine='openmm') or backend='openmm'"
        )
    if method not in (0, 1):
        raise ValueError(f"GBSAOBCForce method {method!r} is unknown to the torch force field")
    n = force.getNumParticles()
    q, rad, sc = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        qi, ri, si = force.getParticleParameters(i)
        q[i], rad[i], sc[i] = md(qi), md(ri), md(si)
    if n == 0:
        return []

    def col(v):
        return torch.tensor(v.reshape(-1, 1))

    cutoff = md(force.getCutoffDistance()) if method == 1 else None
    return [OBCGeneralizedBorn(col(q), col(rad), col(sc), force.getSoluteDielectric(),
                               force.getSolventDielectric(), md(force.getSurfaceAreaEnergy()), cutoff)]
