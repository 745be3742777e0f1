"""Units and conversions, applied at the API edges only.

Molecular systems use OpenMM's MD units: nm, ps, amu, kJ/mol and K. Analytic systems are
dimensionless. Every conversion factor used anywhere in the package is named here.

``openmm.unit`` Quantities are accepted where users pass physical values and are stripped to
plain floats by :func:`strip`; hot paths never see a Quantity.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

#: Boltzmann constant times Avogadro's number, kJ/(mol K) (CODATA 2018, exact).
MOLAR_GAS_CONSTANT_KJ_PER_MOL_K = 8.314462618e-3

#: 1 eV in kJ/mol (CODATA 2018: e * N_A / 1000).
KJ_PER_MOL_PER_EV = 96.48533212331002

#: 1 Å in nm.
NM_PER_ANGSTROM = 0.1

#: 1 kcal in kJ (thermochemical calorie).
KJ_PER_KCAL = 4.184

#: 1 fs in ps.
PS_PER_FS = 1.0e-3


def kT_from_temperature(temperature: Any) -> float:
    """Thermal energy kT in kJ/mol for a temperature in kelvin.

    Parameters
    ----------
    temperature : float or openmm.unit.Quantity
        Temperature in K (a Quantity with temperature units is converted).

    Returns
    -------
    float
        kT in kJ/mol.
    """
    t = strip(temperature, "kelvin")
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number of kelvin, got {t!r}")
    return MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * t


def temperature_from_kT(kT: float) -> float:
    """Temperature in K for a kT in kJ/mol."""
    return float(kT) / MOLAR_GAS_CONSTANT_KJ_PER_MOL_K


def is_quantity(value: Any) -> bool:
    """True for an ``openmm.unit.Quantity`` (checked without importing OpenMM)."""
    return hasattr(value, "value_in_unit") and hasattr(value, "unit")


def strip(value: Any, unit_name: str) -> float:
    """Return ``value`` as a plain float in the OpenMM MD unit called ``unit_name``.

    Plain numbers are taken to be in that unit already. An ``openmm.unit.Quantity`` is
    converted; an incompatible one raises ``ValueError`` naming both units.

    Parameters
    ----------
    value : float or openmm.unit.Quantity
    unit_name : str
        A unit expression of :func:`parse_unit`: ``"kelvin"``, ``"picosecond"``,
        ``"nanometer"``, ``"nanometer**2"``, ``"kilojoule_per_mole"``, ``"dalton"``,
        ``"dimensionless"``, or ``"/picosecond"`` (picosecond⁻¹).
    """
    if is_quantity(value):
        target = parse_unit(unit_name)  # imports openmm.unit: only when the user handed us a Quantity
        try:
            return float(value.value_in_unit(target))
        except TypeError as exc:
            raise ValueError(f"expected a quantity in {unit_name}, got {value} ({exc})") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number in {unit_name}, got {value!r}") from None


def in_units(name: str, value: Any, unit_name: str, note: str = "") -> Any:
    """A physical setting called ``name`` in the MD unit ``unit_name``, for validation.

    An ``openmm.unit.Quantity`` becomes a plain float in ``unit_name``; anything else is
    returned unchanged (a plain number is already in MD units, and the caller's own check
    reports a value that is not a number). Integrators call this in ``__post_init__``, so
    their stored settings, and with them the hot paths, never hold a Quantity.

    Parameters
    ----------
    name : str
        The argument's name, used in the error.
    value : float or openmm.unit.Quantity
    unit_name : str
        As for :func:`strip`.
    note : str
        Appended to the error, e.g. why the unit is what it is.

    Raises
    ------
    ValueError
        For a Quantity whose unit cannot be converted to ``unit_name``, naming ``name``,
        the value and the expected unit.
    """
    if not is_quantity(value):
        return value
    try:
        return strip(value, unit_name)
    except ValueError:
        if unit_name == "dimensionless":
            expected = "a plain number or a dimensionless quantity"
        else:
            expected = f"in {'1' + unit_name if unit_name.startswith('/') else unit_name} or a compatible unit"
        raise ValueError(f"{name} must be {expected}, got {value}" + (f" ({note})" if note else "")) from None


# --------------------------------------------------------------------------- text to Quantity
# "<number> <unit>": the number, then an optional "*" or a "/" that starts the unit.
_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*")
_TOKEN = re.compile(r"\s*(?:(\*\*)|([*/()])|([A-Za-z_][A-Za-z_0-9]*)|([+-]?\d+))")


def _tokens(text: str) -> list:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read {text[pos:].strip()!r} in the unit {text.strip()!r}: write "
                             "unit names from openmm.unit joined by *, / and ** (e.g. nm**2, kJ/mol)")
        power, op, name, integer = m.groups()
        out.append(("op", power or op) if (power or op) else ("name", name) if name else ("int", int(integer)))
        pos = m.end()
    return out


#: Longest unit or quantity text read, and deepest parenthesis nesting: real units
#: ("kilojoule/(mole*nanometer**2)") are far below both; the parser recurses per level.
MAX_UNIT_TEXT = 1000
MAX_UNIT_NESTING = 20


def _check_unit_size(text: str) -> None:
    """Refuse unit text longer than :data:`MAX_UNIT_TEXT` or nested deeper than :data:`MAX_UNIT_NESTING`."""
    if len(text) > MAX_UNIT_TEXT:
        raise ValueError(f"the unit text is {len(text)} characters long; at most {MAX_UNIT_TEXT} are read")
    depth = deepest = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_UNIT_NESTING:
        raise ValueError(f"the unit text nests parentheses {deepest} levels deep; at most {MAX_UNIT_NESTING} "
                         "are allowed")


def _named_unit(name: str):
    """The ``openmm.unit`` unit called ``name``, or whose symbol is ``name`` (``fs``, ``nm``, ``kJ``)."""
    from openmm import unit as u

    found = getattr(u, name, None)
    if isinstance(found, u.Unit):
        return found
    matches = []
    for attr in dir(u):
        candidate = getattr(u, attr)
        if isinstance(candidate, u.Unit) and candidate.get_symbol() == name and candidate not in matches:
            matches.append(candidate)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"the unit symbol {name!r} is ambiguous in openmm.unit "
                         f"({', '.join(sorted(m.get_name() for m in matches))}); write the unit's name")
    raise ValueError(f"unknown unit {name!r}: use a unit name of openmm.unit (femtosecond, nanometer, ...) "
                     "or its symbol (fs, nm, ...)")


@functools.lru_cache(maxsize=64)  # strip() calls it per atom when reading masses
def parse_unit(text: str):
    """An ``openmm.unit.Unit`` from an expression such as ``"nm**2"``, ``"kJ/mol"`` or ``"/ps"``.

    Names are ``openmm.unit`` attributes (``femtosecond``) or their symbols (``fs``); the
    operators are ``*``, ``/`` and ``**`` with an integer power, and parentheses group. A
    leading ``/`` means the reciprocal. Nothing is evaluated: the text is tokenised and parsed.

    Raises
    ------
    ValueError
        For an unknown or ambiguous name, or text outside this grammar.
    """
    from openmm import unit as u

    _check_unit_size(text)
    tokens = _tokens(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else (None, None)

    def atom():
        nonlocal pos
        kind, value = peek()
        if kind == "name":
            pos += 1
            return _named_unit(value)
        if (kind, value) == ("op", "("):
            pos += 1
            inner = product()
            if peek() != ("op", ")"):
                raise ValueError(f"unbalanced parentheses in the unit {text.strip()!r}")
            pos += 1
            return inner
        raise ValueError(f"expected a unit name in {text.strip()!r}, got {value!r}")

    def power():
        nonlocal pos
        base = atom()
        if peek() == ("op", "**"):
            pos += 1
            kind, exponent = peek()
            if kind != "int":
                raise ValueError(f"** takes an integer power in the unit {text.strip()!r}")
            pos += 1
            base = base ** exponent
        return base

    def product():
        nonlocal pos
        result = power()
        while peek() in (("op", "*"), ("op", "/")):
            _, op = peek()
            pos += 1
            result = result * power() if op == "*" else result / power()
        return result

    if not tokens:
        raise ValueError("empty unit")
    if tokens[0] == ("op", "/"):
        pos = 1
        result = u.dimensionless / product()
    else:
        result = product()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos][1]!r} in the unit {text.strip()!r}")
    return result


def parse_quantity(text: str):
    """An ``openmm.unit.Quantity`` from ``"<number> <unit>"``: ``"2 fs"``, ``"1/ps"``, ``"0.01 nm**2"``.

    The number may be followed by ``*`` (``"2*fs"``); a ``/`` right after it starts a
    reciprocal unit (``"1/ps"``). The unit follows :func:`parse_unit`. Nothing is evaluated.

    Raises
    ------
    ValueError
        Naming what could not be read.
    """
    from openmm import unit as u

    if not isinstance(text, str):
        raise ValueError(f"expected text such as \"2 fs\", got {text!r}")
    if len(text) > MAX_UNIT_TEXT:
        raise ValueError(f"the quantity text is {len(text)} characters long; at most {MAX_UNIT_TEXT} are read")
    m = _NUMBER.match(text)
    if m is None:
        raise ValueError(f"{text!r} does not start with a number; write \"<number> <unit>\", e.g. \"2 fs\"")
    number, rest = float(m.group(1)), text[m.end():]
    if not rest.strip():
        raise ValueError(f"{text!r} has no unit; write \"<number> <unit>\" (e.g. \"2 fs\"), or a bare "
                         "number without quotes for MD units")
    if rest.lstrip().startswith("*") and not rest.lstrip().startswith("**"):
        rest = rest.lstrip()[1:]
    return u.Quantity(number, parse_unit(rest))


#: A median bonded distance above this (nm) means coordinates are almost surely in ångström:
#: real bonds are 0.1–0.16 nm, and 0.5 nm leaves room for strained starts.
ANGSTROM_BOND_THRESHOLD_NM = 0.5


def bond_pairs(topology) -> np.ndarray:
    """Atom index pairs ``(n_bonds, 2)`` of an OpenMM or mdtraj topology (empty without bonds)."""
    bonds = topology.bonds() if callable(topology.bonds) else topology.bonds
    return np.array([(b[0].index, b[1].index) for b in bonds], dtype=np.int64).reshape(-1, 2)


def check_not_angstrom(positions, pairs: np.ndarray, what: str) -> None:
    """Refuse coordinates whose bonded distances look like ångström (×10 too long).

    Parameters
    ----------
    positions : array_like, shape ``(n_atoms, 3)`` or ``(n_walkers, n_atoms, 3)``, nm
    pairs : numpy.ndarray of int, shape ``(n_bonds, 2)``
        Bonded atom pairs (:func:`bond_pairs`); with none there is nothing to judge by.
    what : str
        Named in the error, e.g. ``"initial_positions"``.

    Raises
    ------
    ValueError
        When any walker's median bonded distance exceeds ``ANGSTROM_BOND_THRESHOLD_NM``.
    """
    if len(pairs) == 0:
        return
    x = np.asarray(positions, dtype=np.float64)
    x = x.reshape((-1,) + x.shape[-2:])
    lengths = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)
    median = np.median(lengths, axis=-1)
    worst = int(np.argmax(median))
    if median[worst] > ANGSTROM_BOND_THRESHOLD_NM:
        where = f" (walker {worst})" if x.shape[0] > 1 else ""
        raise ValueError(
            f"{what} look like ångström{where}: the median bonded distance is {median[worst]:.3g} "
            "where nm coordinates give ~0.1-0.15; divide by 10 (or pass an openmm Quantity with units)")
