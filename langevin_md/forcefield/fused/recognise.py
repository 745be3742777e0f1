"""Which torch terms the fused kernels evaluate, decided without importing numba.

The kernels take over only terms whose formulas they reproduce: the exact classes
``HarmonicBonds``, ``HarmonicAngles``, ``PeriodicTorsions``, ``PairInteractions`` without cutoff,
and a ``CustomGBTerm`` whose expressions are, text for text, those OpenMM's
``GBSAOBC2Force`` writes for Amber's ``implicit/obc2.xml`` (see :mod:`.obc2` for the formulas).
"""

from __future__ import annotations

import math
import re
from typing import Optional

from langevin_md.forcefield.bonded import HarmonicAngles, HarmonicBonds, PeriodicTorsions
from langevin_md.forcefield.nonbonded import PairInteractions

_NUM = r"([-+0-9.eE]+)"
_SETTINGS = rf"; solventDielectric={_NUM}; soluteDielectric={_NUM}; kappa=0; offset={_NUM}"
_I = ("select(step(r+sr2-or1), 0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r), 0);"
      "U=r+sr2;L=max(or1, D);D=abs(r-sr2)")
_B = re.compile(r"1/\(1/or-tanh\(psi-0\.8\*psi\^2\+4\.85\*psi\^3\)/radius\);psi=I\*or; radius=or\+offset; "
                rf"offset={_NUM}")
_SELF = re.compile(r"-0\.5\*138\.935485\*\(1/soluteDielectric-1/solventDielectric\)\*charge\^2/B" + _SETTINGS)
_ACE = re.compile(r"28\.3919551\*\(radius\+0\.14\)\^2\*\(radius/B\)\^6; radius=or\+offset" + _SETTINGS)
_PAIR = re.compile(r"-138\.935485\*\(1/soluteDielectric-1/solventDielectric\)\*charge1\*charge2/f;"
                   r"f=sqrt\(r\^2\+B1\*B2\*exp\(-r\^2/\(4\*B1\*B2\)\)\)" + _SETTINGS)
_SINGLE, _PAIR_NO_EXCLUSIONS = 0, 2


def recognise_obc2(term) -> Optional[dict]:
    """The settings of ``term`` if it is Amber's OBC2 ``CustomGBTerm``, else None.

    Returns
    -------
    dict or None
        ``born_offset``, ``self_prefactor``, ``pair_prefactor``, ``ace_offset`` (NaN without ACE).
    """
    if type(term).__name__ != "CustomGBTerm" or type(term).__module__ != "langevin_md.forcefield.custom.gb":
        return None
    if (list(term.parameter_names) != ["charge", "or", "sr"] or term.cutoff is not None or term.global_names
            or len(term.functions)):
        return None
    values = list(term.computed_values)
    if len(values) != 2 or values[0] != ("I", _I, _PAIR_NO_EXCLUSIONS):
        return None
    name, text, kind = values[1]
    born = _B.fullmatch(text)
    if name != "B" or kind != _SINGLE or born is None:
        return None
    terms = list(term.energy_terms)
    if len(terms) not in (2, 3):
        return None
    patterns = [(_SELF, _SINGLE)] + ([(_ACE, _SINGLE)] if len(terms) == 3 else []) + [(_PAIR, _PAIR_NO_EXCLUSIONS)]
    matches = []
    for (text, kind), (pattern, want) in zip(terms, patterns):
        m = pattern.fullmatch(text)
        if m is None or kind != want:
            return None
        matches.append(tuple(float(v) for v in m.groups()))
    dielectrics = {(solvent, solute) for solvent, solute, _ in matches}
    if len(dielectrics) != 1:
        return None
    solvent, solute = dielectrics.pop()
    if solvent == 0.0 or solute == 0.0:
        return None
    factor = 1.0 / solute - 1.0 / solvent
    return {"born_offset": float(born.group(1)), "self_prefactor": -0.5 * 138.935485 * factor,
            "pair_prefactor": -138.935485 * factor, "ace_offset": matches[1][2] if len(terms) == 3 else math.nan}


def is_bonded(term) -> bool:
    """A bonded term of :mod:`.bonded` (exact classes only: a subclass may change the formula)."""
    return type(term) in (HarmonicBonds, HarmonicAngles, PeriodicTorsions)


def is_pairs(term) -> bool:
    """A ``PairInteractions`` without cutoff (cutoff, switching and reaction field stay in torch)."""
    return type(term) is PairInteractions and getattr(term, "cutoff", "unknown") is None


def is_obc2(term) -> bool:
    """Amber's OBC2 ``CustomGBTerm`` (see :func:`recognise_obc2`)."""
    return recognise_obc2(term) is not None


def fusable_kinds(module) -> list[str]:
    """``kind`` of each term of ``module`` (a ``ForceFieldModule``) that a kernel evaluates."""
    return [t.kind for t in module.terms if is_bonded(t) or is_pairs(t) or is_obc2(t)]
