"""``NonbondedForce`` without periodic boundaries: Lennard-Jones and Coulomb over one pair list.

Energy, as OpenMM defines it (API docs of ``NonbondedForce`` and the Reference platform's
``ReferenceLJCoulombIxn`` / ``ReferenceLJCoulomb14``):

- Ordinary pairs (i < j, not listed as an exception), with Lorentz–Berthelot combination
  σᵢⱼ = (σᵢ + σⱼ)/2, εᵢⱼ = √(εᵢεⱼ):
  U = 4εᵢⱼ[(σᵢⱼ/r)¹² − (σᵢⱼ/r)⁶] + k_e qᵢqⱼ/r with ``NoCutoff``; with ``CutoffNonPeriodic``
  only pairs with r < r_c count, the Lennard-Jones part is multiplied by the optional switching
  function S(t) = 1 − 10t³ + 15t⁴ − 6t⁵, t = (r − r_sw)/(r_c − r_sw) for r > r_sw, and Coulomb
  becomes the reaction field k_e qᵢqⱼ (1/r + k_rf r² − c_rf) with
  k_rf = (ε_rf − 1) / ((2ε_rf + 1) r_c³), c_rf = 3ε_rf / ((2ε_rf + 1) r_c)
  (ε_rf the reaction-field dielectric; Tironi et al., J. Chem. Phys. 102, 5451 (1995)).
- Exceptions with a nonzero charge product or ε (the scaled 1–4 pairs) use their own
  (qᵢqⱼ, σ, ε) in the plain form 4ε[(σ/r)¹² − (σ/r)⁶] + k_e qᵢqⱼ/r with **no** cutoff,
  switching or reaction field, for either method. Exceptions with both zero are exclusions.

Both kinds live in one pair list (ordinary pairs first, then exceptions) with per-pair
parameters precomputed, so the inner loop does no combination rules. Pairs whose energy is
identically zero (ε = 0 and qᵢqⱼ = 0) are dropped.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from langevin_md.forcefield.batched import WalkerLastTerm, dot, gather, pair_spread
from langevin_md.forcefield.neighbours import DEFAULT_SKIN, NeighbourList, check_skin
from langevin_md.forcefield.openmm_params import md
from langevin_md.forcefield.registry import builds, term_kind

#: The Coulomb constant 1/(4πε₀) in kJ mol⁻¹ nm e⁻², from the CODATA 2018 values exactly as
#: OpenMM's Reference platform derives it (``SimTKOpenMMRealType.h``).
_E_CHARGE = 1.602176634e-19
_AVOGADRO = 6.02214076e23
_EPSILON0 = 1e-6 * 8.8541878128e-12 / (_E_CHARGE * _E_CHARGE * _AVOGADRO)
ONE_4PI_EPS0 = 1.0 / (4.0 * math.pi * _EPSILON0)

_METHODS = {0: "NoCutoff", 1: "CutoffNonPeriodic"}
_UNSUPPORTED = {2: "CutoffPeriodic", 3: "Ewald", 4: "PME", 5: "LJPME"}


@term_kind
class PairInteractions(WalkerLastTerm):
    """Lennard-Jones + Coulomb (or reaction field) over a precomputed pair list.

    Parameters
    ----------
    n_atoms : int
    atoms : torch.Tensor, shape ``(2, p)``, int64
        Ordinary pairs first, then exceptions.
    qq : torch.Tensor, shape ``(p, 1)``
        k_e qᵢqⱼ, kJ/mol nm.
    eps4 : torch.Tensor, shape ``(p, 1)``
        4εᵢⱼ, kJ/mol.
    sigma2 : torch.Tensor, shape ``(p, 1)``
        σᵢⱼ², nm².
    n_ordinary : int
        How many leading pairs are ordinary (subject to cutoff and reaction field).
    cutoff : float or None
        r_c in nm for ``CutoffNonPeriodic``; None for ``NoCutoff``.
    reaction_field_dielectric : float
        ε_rf (used only with a cutoff).
    switch : float or None
        Switching distance r_sw in nm, or None for no switching function.
    skin : float or None
        With a cutoff: the Verlet skin (nm) of the neighbour list over the ordinary pairs
        (:mod:`langevin_md.forcefield.neighbours`); None evaluates every pair and masks.
        Ignored without a cutoff (every pair counts).
    """

    kind = "lj_coulomb_pairs"

    def __init__(self, n_atoms: int, atoms, qq, eps4, sigma2, n_ordinary: int, cutoff: Optional[float] = None,
                 reaction_field_dielectric: float = 78.3, switch: Optional[float] = None,
                 skin: Optional[float] = DEFAULT_SKIN):
        super().__init__()
        self.n_atoms = int(n_atoms)
        self.spread = pair_spread(atoms)
        self.register_buffer("atoms", atoms)
        self.register_buffer("qq", qq)
        self.register_buffer("eps4", eps4)
        self.register_buffer("sigma2", sigma2)
        self.n_ordinary = int(n_ordinary)
        self.cutoff = None if cutoff is None else float(cutoff)
        self.reaction_field_dielectric = float(reaction_field_dielectric)
        self.switch = None if switch is None else float(switch)
        if self.cutoff is not None:
            eps_rf = self.reaction_field_dielectric
            self.k_rf = (eps_rf - 1.0) / (2.0 * eps_rf + 1.0) / self.cutoff**3
            self.c_rf = 3.0 * eps_rf / (2.0 * eps_rf + 1.0) / self.cutoff
        self.skin = None if self.cutoff is None else check_skin(skin)
        self.neighbours = None
        if self.skin is not None:
            m = self.n_ordinary
            self.neighbours = NeighbourList(atoms[0, :m], atoms[1, :m], self.cutoff, self.skin)

    def spec(self) -> dict[str, Any]:
        return {"n_atoms": self.n_atoms, "n_ordinary": self.n_ordinary, "cutoff": self.cutoff,
                "reaction_field_dielectric": self.reaction_field_dielectric, "switch": self.switch,
                "skin": self.skin}

    @classmethod
    def from_spec(cls, spec, buffers):
        return cls(spec["n_atoms"], buffers["atoms"], buffers["qq"], buffers["eps4"], buffers["sigma2"], spec["n_ordinary"],
                   spec["cutoff"], spec["reaction_field_dielectric"], spec["switch"], spec.get("skin"))

    def accumulate(self, xt, ft):
        if self.neighbours is None:
            return self._evaluate(xt, ft, self.atoms, self.qq, self.eps4, self.sigma2, self.n_ordinary,
                                  self.spread)
        # the ordinary pairs near enough in some walker, then every exception (no cutoff)
        near = self.neighbours.select(xt)
        m, p = self.n_ordinary, self.atoms.shape[1]
        index = torch.cat((near, torch.arange(m, p, device=near.device)))
        atoms = self.atoms.index_select(1, index)

        def spread(ft, basis):
            ft.index_add_(0, atoms[0], basis[0])
            ft.index_add_(0, atoms[1], basis[0], alpha=-1.0)

        return self._evaluate(xt, ft, atoms, self.qq.index_select(0, index), self.eps4.index_select(0, index),
                              self.sigma2.index_select(0, index), near.shape[0], spread)

    def _evaluate(self, xt, ft, atoms, qq, eps4, sigma2, n_ordinary, spread):
        """Energy of the pairs ``atoms`` (``(2, p)``, the first ``n_ordinary`` ordinary), forces
        added into ``ft`` through ``spread``."""
        d = gather(xt, atoms[0]) - gather(xt, atoms[1])  # (p, 3, n)
        r2 = dot(d, d)
        inv_r2 = 1.0 / r2
        inv_r = inv_r2.sqrt()
        s6 = (sigma2 * inv_r2) ** 3
        lj = eps4 * (s6 * s6 - s6)
        lj_virial = eps4 * (12.0 * s6 * s6 - 6.0 * s6)  # −r dU/dr
        coul = qq * inv_r
        if self.cutoff is None:
            e_pair = lj + coul
            virial = lj_virial + coul
        else:
            e_pair, virial = self._cutoff(r2, lj, lj_virial, coul, qq, n_ordinary)
        e = e_pair.sum(0)
        if ft is not None:
            spread(ft, [(virial * inv_r2).unsqueeze(1) * d])
        return e

    def _cutoff(self, r2, lj, lj_virial, coul, qq, m):
        """Energies and −r dU/dr with cutoff, switching and reaction field on the first ``m``
        (ordinary) pairs."""
        lj_o, ljv_o, coul_o, r2_o = lj[:m], lj_virial[:m], coul[:m], r2[:m]
        if self.switch is not None:
            r = r2_o.sqrt()
            width = self.cutoff - self.switch
            t = ((r - self.switch) / width).clamp(min=0.0)
            sw = 1.0 + t * t * t * (-10.0 + t * (15.0 - t * 6.0))
            dsw = t * t * (-30.0 + t * (60.0 - t * 30.0)) / width
            ljv_o = ljv_o * sw - lj_o * dsw * r
            lj_o = lj_o * sw
        qq_o = qq[:m]
        rf = self.k_rf * r2_o
        e_o = lj_o + coul_o + qq_o * (rf - self.c_rf)
        v_o = ljv_o + coul_o - 2.0 * qq_o * rf
        inside = r2_o < self.cutoff * self.cutoff
        e_o = torch.where(inside, e_o, torch.zeros_like(e_o))
        v_o = torch.where(inside, v_o, torch.zeros_like(v_o))
        return torch.cat((e_o, lj[m:] + coul[m:])), torch.cat((v_o, lj_virial[m:] + coul[m:]))


@builds("NonbondedForce")
def build_nonbonded(force, system) -> list:
    method = force.getNonbondedMethod()
    if method in _UNSUPPORTED:
        raise ValueError(
            f"NonbondedForce with the {_UNSUPPORTED[method]} method is not supported by the torch "
            "force field (only NoCutoff and CutoffNonPeriodic are); use the OpenMM bridge "
            "(OpenMMSystem, engine='openmm') or backend='openmm'"
        )
    if method not in _METHODS:
        raise ValueError(f"NonbondedForce method {method!r} is unknown to the torch force field; "
                         "use the OpenMM bridge (OpenMMSystem, engine='openmm')")
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise ValueError(
            "NonbondedForce with parameter offsets (global parameters that change charges or "
            "Lennard-Jones parameters) is not supported by the torch force field; use the OpenMM "
            "bridge (OpenMMSystem, engine='openmm')"
        )
    n = force.getNumParticles()
    q = np.empty(n)
    sig = np.empty(n)
    eps = np.empty(n)
    for i in range(n):
        qi, si, ei = force.getParticleParameters(i)
        q[i], sig[i], eps[i] = md(qi), md(si), md(ei)

    excluded = np.zeros((n, n), dtype=bool)
    ex_rows, ex_qq, ex_sig, ex_eps = [], [], [], []
    for k in range(force.getNumExceptions()):
        a, b, qq, s, e = force.getExceptionParameters(k)
        excluded[a, b] = excluded[b, a] = True
        qq, s, e = md(qq), md(s), md(e)
        if qq != 0.0 or e != 0.0:
            ex_rows.append((a, b))
            ex_qq.append(qq)
            ex_sig.append(s)
            ex_eps.append(e)

    i, j = np.triu_indices(n, k=1)
    keep = ~excluded[i, j]
    i, j = i[keep], j[keep]
    qq = q[i] * q[j]
    e_ij = np.sqrt(eps[i] * eps[j])
    s_ij = 0.5 * (sig[i] + sig[j])
    nonzero = (qq != 0.0) | (e_ij != 0.0)
    i, j, qq, e_ij, s_ij = i[nonzero], j[nonzero], qq[nonzero], e_ij[nonzero], s_ij[nonzero]

    ex = np.asarray(ex_rows, dtype=np.int64).reshape(-1, 2)
    atoms = np.stack((np.concatenate((i, ex[:, 0])), np.concatenate((j, ex[:, 1]))))
    all_qq = ONE_4PI_EPS0 * np.concatenate((qq, ex_qq))
    all_eps4 = 4.0 * np.concatenate((e_ij, ex_eps))
    all_sig2 = np.concatenate((s_ij, ex_sig)) ** 2
    if atoms.shape[1] == 0:
        return []

    cutoff = switch = None
    if method == 1:
        cutoff = md(force.getCutoffDistance())
        if force.getUseSwitchingFunction():
            switch = md(force.getSwitchingDistance())
            if not 0 <= switch < cutoff:
                raise ValueError(f"NonbondedForce switching distance {switch} nm must be in [0, cutoff={cutoff} nm)")

    def col(v):
        return torch.tensor(np.asarray(v, dtype=np.float64).reshape(-1, 1))

    return [PairInteractions(n, torch.from_numpy(np.ascontiguousarray(atoms, dtype=np.int64)), col(all_qq),
                             col(all_eps4), col(all_sig2), n_ordinary=len(i), cutoff=cutoff,
                             reaction_field_dielectric=force.getReactionFieldDielectric(), switch=switch)]
