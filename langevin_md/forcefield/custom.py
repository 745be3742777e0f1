"""OpenMM's custom forces as batched torch terms, through one expression translator.

Every custom force's energy expression is parsed by :mod:`langevin_md.forcefield.expression`
and evaluated on tensors that hold, for all walkers at once, the geometric variables (``r``,
``theta``, ``x``...), the per-particle / per-term parameters and the global parameters.

Layout and forces: the terms are walker-last
(:class:`~langevin_md.forcefield.batched.WalkerLastTerm`): positions ``(n_atoms, 3,
n_walkers)``, so gathers copy contiguous rows and every operation is a long loop over walkers.
Forces are not taken by autograd through the gathers: each expression is differentiated
symbolically (Lepton's rules) with respect to its geometric variables and computed values, the
derivatives are evaluated in the same pass as the energy (shared subexpressions once), and the
chain rule to positions is written out: ``dE/dr * (r_vec / r)`` for pairs, closed forms for
angles and dihedrals, and for CustomGBForce a reverse sweep over the computed values as in
OpenMM's Reference ``calculateChainRuleForces``. The energy alone (``energy``) stays an
ordinary differentiable torch computation, for use inside larger autograd graphs.

Closed-form versus autograd forces, measured for the ``implicit/obc2.xml`` CustomGBForce on
alanine dipeptide, 1024 walkers, float32, one CPU thread of a heavily loaded 2-core machine
(best of 7-9, so only ratios within one run mean much): eager closed form 44-65 ms, eager
autograd through the same energy 50-60 ms, energy alone 19-23 ms; compiled (inductor) closed
form 6-15 ms, compiled autograd 12-31 ms (2x slower in every run). Releasing each
intermediate tensor after its last use mattered most in eager mode (2-3x: large temporaries
that stay alive force fresh, page-faulting allocations). The closed form is one graph with no
``autograd.grad`` inside, so ``torch.compile`` fuses it whole (``fullgraph=True`` works).
Walkers are processed in chunks when a term has many pairs (see ``_ELEMENTS_PER_CHUNK``), which
bounds the memory of large molecules at many walkers.

Terms
-----
- :class:`CustomBondedTerm` (``kind = "custom_bonded"``): ``CustomBondForce`` (``r``),
  ``CustomAngleForce`` (``theta``), ``CustomTorsionForce`` (``theta``, the dihedral in
  ``[-pi, pi]`` with OpenMM's sign), ``CustomExternalForce`` (``x, y, z``) and
  ``CustomCompoundBondForce`` (``x1, y1, z1, ...``, ``distance(p1,p2)``, ``angle(p1,p2,p3)``,
  ``dihedral(p1,p2,p3,p4)``).
- :class:`CustomNonbondedTerm` (``kind = "custom_nonbonded"``): ``CustomNonbondedForce`` with
  ``NoCutoff`` or ``CutoffNonPeriodic``, exclusions, interaction groups, switching function,
  per-particle parameters (``name1``, ``name2``) and computed values.
- :class:`CustomGBTerm` (``kind = "custom_gb"``): ``CustomGBForce`` (computed values of type
  ``SingleParticle`` / ``ParticlePair`` / ``ParticlePairNoExclusions``, energy terms of the same
  types, exclusions, non-periodic cutoff). This is what ``implicit/obc2.xml``, ``gbn2.xml`` etc.
  produce.

Pair interactions use a fixed list of particle pairs (all pairs minus exclusions, or the
interaction groups' pairs), evaluated densely for all walkers; a cutoff masks pairs beyond it.

Semantics follow OpenMM's Reference platform. Global parameters take their default values
from the ``openmm.System``. Not supported (ValueError naming the force and the feature):
periodic boundary conditions (``CutoffPeriodic``, ``periodicdistance``, bonded forces set to use
periodic boundaries), ``Continuous3DFunction``, and any function the expression language does
not have. Energy-parameter derivatives requested on a force are
ignored (they do not change the energy).

Pair order: with a cutoff and no interaction groups OpenMM takes pairs from its neighbour list,
whose order of the two particles is unspecified; for the (physically usual) symmetric
expressions this does not matter. Without a cutoff, particle 1 is the lower index; within an
interaction group, particle 1 comes from the first set.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .batched import WalkerLastTerm
from .expression import Expression, Node, derivative_name, parse
from .registry import builds, term_kind
from .tabulated import function_from_openmm, function_from_spec
from .term import Term

__all__ = ["CustomBondedTerm", "CustomNonbondedTerm", "CustomGBTerm"]


# ---------------------------------------------------------------------------------------------
# Geometry on walker-last blocks (k, 3, n_walkers), with gradients
# ---------------------------------------------------------------------------------------------


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=1)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=1)


def _distance(p1, p2, gradient: bool):
    """|p2 - p1| ``(k, n)``; with ``gradient``, also d/dp1, d/dp2 ``(k, 3, n)``."""
    d = p2 - p1
    r = torch.sqrt(_dot(d, d))
    if not gradient:
        return r, None
    u = d / r.unsqueeze(1)
    return r, (-u, u)


def _angle(p1, p2, p3, gradient: bool):
    """Angle p1-p2-p3 in ``[0, pi]``; with ``gradient``, its gradients in p1, p2, p3."""
    u, v = p1 - p2, p3 - p2
    uv = _dot(u, v)
    c = _cross(u, v)
    cross_norm = torch.sqrt(_dot(c, c))
    # atan2(|u x v|, u.v) stays accurate near 0 and pi, where acos(cos) loses digits.
    theta = torch.atan2(cross_norm, uv)
    if not gradient:
        return theta, None
    # d theta/du = (u.v/|u|^2 u - v)/|u x v|, and symmetrically for v.
    g1 = ((uv / _dot(u, u)).unsqueeze(1) * u - v) / cross_norm.unsqueeze(1)
    g3 = ((uv / _dot(v, v)).unsqueeze(1) * v - u) / cross_norm.unsqueeze(1)
    return theta, (g1, -g1 - g3, g3)


def _dihedral(p1, p2, p3, p4, gradient: bool):
    """Dihedral p1-p2-p3-p4 in ``[-pi, pi]`` with OpenMM's (IUPAC) sign; optional gradients.

    Gradients in the closed form of Bekker (also Blondel & Karplus, J. Comput. Chem. 17, 1132
    (1996)): with b1 = p2-p1, b2 = p3-p2, b3 = p4-p3, m = b1 x b2, n = b2 x b3,
    dphi/dp1 = -|b2| m/|m|^2, dphi/dp4 = |b2| n/|n|^2, and the middle atoms balance them.
    """
    b1, b2, b3 = p2 - p1, p3 - p2, p4 - p3
    m, n = _cross(b1, b2), _cross(b2, b3)
    b2_sq = _dot(b2, b2)
    b2_norm = torch.sqrt(b2_sq)
    phi = torch.atan2(b2_norm * _dot(b1, n), _dot(m, n))
    if not gradient:
        return phi, None
    g1 = -(b2_norm / _dot(m, m)).unsqueeze(1) * m
    g4 = (b2_norm / _dot(n, n)).unsqueeze(1) * n
    s1 = (_dot(b1, b2) / b2_sq).unsqueeze(1)
    s3 = (_dot(b3, b2) / b2_sq).unsqueeze(1)
    g2 = -(1.0 + s1) * g1 + s3 * g4
    g3 = s1 * g1 - (1.0 + s3) * g4
    return phi, (g1, g2, g3, g4)


_GEOMETRY = {"distance": (2, _distance), "angle": (3, _angle), "dihedral": (4, _dihedral)}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _tensor(values, shape_if_empty, dtype=torch.float64) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float64 if dtype == torch.float64 else np.int64)
    if array.size == 0:
        array = array.reshape(shape_if_empty)
    return torch.as_tensor(array, dtype=dtype)


#: Walkers are processed in chunks so that no temporary exceeds about this many elements
#: (items x walkers), keeping memory bounded for large molecules and many walkers.
_ELEMENTS_PER_CHUNK = 1 << 22


class _Evaluator:
    """An expression and its derivatives in chosen variables, evaluated in one program."""

    def __init__(self, expression: Expression, wrt):
        self.expression = expression
        self.wrt = [v for v in wrt if v in expression.variables]
        self.program = expression.with_gradient(self.wrt)

    def __call__(self, variables, functions, gradient: bool):
        """``(value, {variable: derivative})``; the dict is empty without ``gradient``."""
        if not gradient:
            return self.expression.evaluate(variables, functions), {}
        out = self.program(variables, functions)
        return out[0], dict(zip(self.wrt, out[1:]))


def _full(t: torch.Tensor, shape, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``t`` broadcast to ``shape``, zero where ``mask`` is False (pairs beyond the cutoff)."""
    t = torch.broadcast_to(t, shape)
    if mask is None:
        return t
    return torch.where(mask, t, torch.zeros_like(t))


class _ExpressionTerm(WalkerLastTerm):
    """Shared machinery: global parameters, tabulated functions, variable checks, spec."""

    def _init_common(self, force_name: str, global_names, global_values, functions) -> None:
        self.force_name = str(force_name)
        self.global_names = [str(n) for n in global_names]
        self.register_buffer("global_values", _tensor(list(global_values), (0,)))
        if len(self.global_names) != self.global_values.shape[0]:
            raise ValueError(f"{force_name}: {len(self.global_names)} global names but {self.global_values.shape[0]} values")
        self.functions = torch.nn.ModuleDict(dict(functions or {}))

    def _parse(self, text: str, extra_functions: dict[str, int] | None = None) -> Expression:
        arities = {name: fn.n_arguments for name, fn in self.functions.items()}
        arities.update(extra_functions or {})
        try:
            return parse(text, arities)
        except ValueError as err:
            raise ValueError(f"{self.force_name}: {err}") from None

    def _check_variables(self, expression: Expression, allowed: set[str], what: str) -> None:
        unknown = expression.variables - allowed - set(self.global_names)
        if unknown:
            raise ValueError(
                f"{self.force_name}: {what} {expression.text!r} uses unknown variable(s) {sorted(unknown)}; "
                f"available: {sorted(allowed | set(self.global_names))}"
            )

    def accumulate(self, xt: torch.Tensor, ft: torch.Tensor | None) -> torch.Tensor:
        """Energy ``(n_walkers,)`` of walker-last positions ``xt`` ``(n_atoms, 3, n_walkers)``.

        Adds the closed-form forces into ``ft`` unless it is None; without ``ft`` the energy
        is an ordinary differentiable torch computation.
        """
        n_walkers = xt.shape[2]
        chunk = max(1, _ELEMENTS_PER_CHUNK // max(1, self._items_per_walker()))
        if chunk >= n_walkers:
            return self._accumulate(xt, ft)
        # Walkers in chunks: bounds the temporaries (items x walkers each) for large molecules.
        return torch.cat(
            [
                self._accumulate(xt[:, :, s : s + chunk], None if ft is None else ft[:, :, s : s + chunk])
                for s in range(0, n_walkers, chunk)
            ]
        )

    def _items_per_walker(self) -> int:
        """Length of the longest per-walker batch of the term (terms, pairs...)."""
        raise NotImplementedError

    def _accumulate(self, xt: torch.Tensor, ft: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _callables(self) -> dict:
        out = {}
        for name, fn in self.functions.items():
            out[name] = fn
            for k in range(fn.n_arguments):
                out[derivative_name(name, k)] = fn.derivative(k)
        return out

    def _globals(self, dtype) -> dict[str, torch.Tensor]:
        values = self.global_values.to(dtype)
        return {name: values[i] for i, name in enumerate(self.global_names)}

    def _common_spec(self) -> dict[str, Any]:
        return {
            "force_name": self.force_name,
            "global_names": list(self.global_names),
            "functions": {name: fn.spec() for name, fn in self.functions.items()},
        }

    @staticmethod
    def _functions_from_spec(spec, buffers) -> dict[str, torch.nn.Module]:
        out = {}
        for name, fn_spec in spec["functions"].items():
            prefix = f"functions.{name}."
            fn_buffers = {k[len(prefix):]: v.detach().cpu() for k, v in buffers.items() if k.startswith(prefix)}
            out[name] = function_from_spec(fn_spec, fn_buffers)
        return out


def _functions_of(force, force_name: str) -> dict[str, torch.nn.Module]:
    if not hasattr(force, "getNumTabulatedFunctions"):
        return {}
    return {
        force.getTabulatedFunctionName(i): function_from_openmm(
            force.getTabulatedFunction(i), force_name, force.getTabulatedFunctionName(i)
        )
        for i in range(force.getNumTabulatedFunctions())
    }


def _globals_of(force) -> tuple[list[str], list[float]]:
    n = force.getNumGlobalParameters()
    return (
        [force.getGlobalParameterName(i) for i in range(n)],
        [force.getGlobalParameterDefaultValue(i) for i in range(n)],
    )


def _refuse_periodic_bonded(force, force_name: str) -> None:
    if force.usesPeriodicBoundaryConditions():
        raise ValueError(
            f"{force_name} uses periodic boundary conditions, which the torch force field does not support; "
            "use the OpenMM engine for periodic systems"
        )


def _refuse_periodicdistance(expression: str, force_name: str) -> None:
    if "periodicdistance" in expression:
        raise ValueError(
            f"{force_name}: the expression {expression!r} uses periodicdistance(), which needs periodic "
            "boundary conditions; the torch force field is non-periodic (use the OpenMM engine)"
        )


# ---------------------------------------------------------------------------------------------
# Bonded family
# ---------------------------------------------------------------------------------------------

_BONDED_TYPES = {
    # force type: (particles per term, {variable: (geometry, particle slots)})
    "CustomBondForce": (2, {"r": ("distance", (0, 1))}),
    "CustomAngleForce": (3, {"theta": ("angle", (0, 1, 2))}),
    "CustomTorsionForce": (4, {"theta": ("dihedral", (0, 1, 2, 3))}),
    "CustomExternalForce": (1, {"x": ("x", (0,)), "y": ("y", (0,)), "z": ("z", (0,))}),
}


@term_kind
class CustomBondedTerm(_ExpressionTerm):
    """A bonded custom force: one expression summed over terms of a fixed set of particles.

    Parameters
    ----------
    force_name : str
        ``"CustomBondForce"``, ``"CustomAngleForce"``, ``"CustomTorsionForce"``,
        ``"CustomExternalForce"`` or ``"CustomCompoundBondForce"``.
    expression : str
        The OpenMM energy expression (kJ/mol).
    atoms : array_like of int, shape ``(n_terms, n_particles_per_term)``
    parameters : array_like, shape ``(n_terms, n_parameters)``
        Per-term (per-bond, per-angle, per-particle for external forces) parameters.
    parameter_names : sequence of str
    global_names : sequence of str
    global_values : sequence of float
    functions : dict of str to torch.nn.Module, optional
        Tabulated functions the expression calls.
    """

    kind = "custom_bonded"

    def __init__(
        self,
        force_name: str,
        expression: str,
        atoms,
        parameters,
        parameter_names: Sequence[str],
        global_names: Sequence[str],
        global_values: Sequence[float],
        functions: dict[str, torch.nn.Module] | None = None,
    ):
        super().__init__()
        self._init_common(force_name, global_names, global_values, functions)
        self.expression_text = str(expression)
        self.parameter_names = [str(n) for n in parameter_names]
        if force_name == "CustomCompoundBondForce":
            n_slots = np.asarray(atoms).shape[1] if np.asarray(atoms).ndim == 2 else 0
            geometry = {}
            for k in range(n_slots):
                for axis in "xyz":
                    geometry[f"{axis}{k + 1}"] = (axis, (k,))
        elif force_name in _BONDED_TYPES:
            n_slots, geometry = _BONDED_TYPES[force_name]
            geometry = dict(geometry)
        else:
            raise ValueError(f"CustomBondedTerm does not handle {force_name!r}")
        self.register_buffer("atoms", _tensor(atoms, (0, n_slots), torch.int64))
        self.register_buffer("params", _tensor(parameters, (self.atoms.shape[0], len(self.parameter_names))))
        if self.atoms.ndim != 2 or self.atoms.shape[1] != n_slots:
            raise ValueError(f"{force_name}: atoms must have shape (n_terms, {n_slots}), got {tuple(self.atoms.shape)}")
        if self.params.shape != (self.atoms.shape[0], len(self.parameter_names)):
            raise ValueError(
                f"{force_name}: parameters must have shape ({self.atoms.shape[0]}, {len(self.parameter_names)}), "
                f"got {tuple(self.params.shape)}"
            )
        if force_name == "CustomCompoundBondForce":
            expr = self._parse(self.expression_text, {g: arity for g, (arity, _) in _GEOMETRY.items()})
            expr = self._rewrite_geometry(expr, n_slots, geometry)
        else:
            expr = self._parse(self.expression_text)
        self._check_variables(expr, set(geometry) | set(self.parameter_names), "expression")
        self.expression = expr
        # Only the geometric variables the expression uses are computed.
        self.geometry = {name: g for name, g in geometry.items() if name in expr.variables}
        self._evaluator = _Evaluator(expr, list(self.geometry))

    def _items_per_walker(self) -> int:
        return self.atoms.shape[0]

    def _rewrite_geometry(self, expr: Expression, n_slots: int, geometry: dict) -> Expression:
        names = {f"p{k + 1}": k for k in range(n_slots)}

        def rewrite(node: Node):
            if node.op != "custom" or node.name not in _GEOMETRY:
                return None
            slots = []
            for arg in node.args:
                if arg.op != "var" or arg.name not in names:
                    raise ValueError(
                        f"{self.force_name}: {node.name}() takes particle names p1..p{n_slots}, "
                        f"in expression {expr.text!r}"
                    )
                slots.append(names[arg.name])
            variable = f"{node.name}({','.join(a.name for a in node.args)})"
            geometry[variable] = (node.name, tuple(slots))
            return Node("var", name=variable)

        return expr.replace(rewrite)

    def _accumulate(self, xt: torch.Tensor, ft: torch.Tensor | None) -> torch.Tensor:
        gradient = ft is not None
        shape = (self.atoms.shape[0], xt.shape[2])
        points: dict[int, torch.Tensor] = {}

        def point(slot: int) -> torch.Tensor:
            if slot not in points:
                points[slot] = xt.index_select(0, self.atoms[:, slot])
            return points[slot]

        variables = self._globals(xt.dtype)
        params = self.params.to(xt.dtype)
        for i, name in enumerate(self.parameter_names):
            variables[name] = params[:, i].unsqueeze(-1)
        gradients = {}
        for name, (kind, slots) in self.geometry.items():
            if kind in ("x", "y", "z"):
                variables[name] = point(slots[0])[:, "xyz".index(kind)]
            else:
                variables[name], gradients[name] = _GEOMETRY[kind][1](*[point(s) for s in slots], gradient)
        e, derivatives = self._evaluator(variables, self._callables(), gradient)
        for name, de in derivatives.items():
            kind, slots = self.geometry[name]
            de = _full(de, shape)
            if kind in ("x", "y", "z"):
                ft[:, "xyz".index(kind)].index_add_(0, self.atoms[:, slots[0]], -de)
            else:
                for slot, g in zip(slots, gradients[name]):
                    ft.index_add_(0, self.atoms[:, slot], -de.unsqueeze(1) * g)
        return _full(e, shape).sum(0)

    def spec(self) -> dict[str, Any]:
        return {**self._common_spec(), "expression": self.expression_text, "parameter_names": list(self.parameter_names)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "CustomBondedTerm":
        return cls(
            spec["force_name"], spec["expression"], buffers["atoms"].cpu().numpy(),
            buffers["params"].detach().cpu().double().numpy(), spec["parameter_names"],
            spec["global_names"], buffers["global_values"].detach().cpu().double().numpy(),
            cls._functions_from_spec(spec, buffers),
        )


def _build_bonded(force, system, force_name: str, atoms, parameters, parameter_names) -> list[Term]:
    _refuse_periodicdistance(force.getEnergyFunction(), force_name)
    _refuse_periodic_bonded(force, force_name)
    if len(atoms) == 0:
        return []
    names, values = _globals_of(force)
    return [
        CustomBondedTerm(
            force_name, force.getEnergyFunction(), atoms, parameters, parameter_names, names, values,
            _functions_of(force, force_name),
        )
    ]


@builds("CustomBondForce")
def build_custom_bond(force, system) -> list[Term]:
    """``CustomBondForce`` -> :class:`CustomBondedTerm` (variable ``r``)."""
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    names = [force.getPerBondParameterName(i) for i in range(force.getNumPerBondParameters())]
    return _build_bonded(force, system, "CustomBondForce", [r[:2] for r in rows], [list(r[2]) for r in rows], names)


@builds("CustomAngleForce")
def build_custom_angle(force, system) -> list[Term]:
    """``CustomAngleForce`` -> :class:`CustomBondedTerm` (variable ``theta``)."""
    rows = [force.getAngleParameters(i) for i in range(force.getNumAngles())]
    names = [force.getPerAngleParameterName(i) for i in range(force.getNumPerAngleParameters())]
    return _build_bonded(force, system, "CustomAngleForce", [r[:3] for r in rows], [list(r[3]) for r in rows], names)


@builds("CustomTorsionForce")
def build_custom_torsion(force, system) -> list[Term]:
    """``CustomTorsionForce`` -> :class:`CustomBondedTerm` (variable ``theta``)."""
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    names = [force.getPerTorsionParameterName(i) for i in range(force.getNumPerTorsionParameters())]
    return _build_bonded(force, system, "CustomTorsionForce", [r[:4] for r in rows], [list(r[4]) for r in rows], names)


@builds("CustomExternalForce")
def build_custom_external(force, system) -> list[Term]:
    """``CustomExternalForce`` -> :class:`CustomBondedTerm` (variables ``x, y, z``)."""
    rows = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
    names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    return _build_bonded(force, system, "CustomExternalForce", [[r[0]] for r in rows], [list(r[1]) for r in rows], names)


@builds("CustomCompoundBondForce")
def build_custom_compound_bond(force, system) -> list[Term]:
    """``CustomCompoundBondForce`` -> :class:`CustomBondedTerm` (``x1..``, ``distance()``...)."""
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    names = [force.getPerBondParameterName(i) for i in range(force.getNumPerBondParameters())]
    atoms = [list(r[0]) for r in rows]
    if not atoms:
        _refuse_periodic_bonded(force, "CustomCompoundBondForce")
        return []
    return _build_bonded(force, system, "CustomCompoundBondForce", atoms, [list(r[1]) for r in rows], names)


# ---------------------------------------------------------------------------------------------
# Pair helpers
# ---------------------------------------------------------------------------------------------


def _pair_geometry(xt: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
    """Vectors ``(k, 3, n_walkers)`` from ``first`` to ``second`` atoms and their lengths ``(k, n)``."""
    d = xt.index_select(0, second) - xt.index_select(0, first)
    return d, torch.sqrt(_dot(d, d))


def _add_pair_forces(ft: torch.Tensor, first, second, d, r, de_dr) -> None:
    """Forces of an energy with derivative ``de_dr`` ``(k, n)`` in the pair distances."""
    f = (de_dr / r).unsqueeze(1) * d  # dE/dx_second; the force on `first` is +f
    if ft.is_contiguous():
        # The same sums as rows of 3 * n_walkers numbers: compiled with 2+ OpenMP threads, torch
        # 2.13 inductor mis-indexes the (k, 3, n) scatter below (a tiled atomic add writes past
        # the buffer: heap corruption, wrong forces; tests/hostile/test_upstream_inductor_scatter.py)
        rows, flat = f.reshape(f.shape[0], -1), ft.view(ft.shape[0], -1)
        flat.index_add_(0, first, rows)
        flat.index_add_(0, second, -rows)
        return
    ft.index_add_(0, first, f)
    ft.index_add_(0, second, -f)


def _upper_pairs(n: int, exclusions: set[tuple[int, int]]) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    keep = np.array([(a, b) not in exclusions for a, b in zip(i.tolist(), j.tolist())], dtype=bool)
    return np.stack([i[keep], j[keep]], axis=1) if keep.size else np.zeros((0, 2), dtype=np.int64)


def _exclusion_set(pairs) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs}


# ---------------------------------------------------------------------------------------------
# CustomNonbondedForce
# ---------------------------------------------------------------------------------------------


@term_kind
class CustomNonbondedTerm(_ExpressionTerm):
    """A non-periodic ``CustomNonbondedForce`` over a fixed list of particle pairs.

    Parameters
    ----------
    force_name : str
        Name used in messages (``"CustomNonbondedForce"``).
    expression : str
        Pair energy (kJ/mol) in ``r`` (nm), ``name1``/``name2`` per-particle parameters and
        computed values, and global parameters.
    pairs : array_like of int, shape ``(n_pairs, 2)``
        Interacting pairs; column 0 is particle 1 of the expression. Pairs may repeat (a pair in
        several interaction groups counts once per group, as in OpenMM).
    parameters : array_like, shape ``(n_particles, n_parameters)``
    parameter_names : sequence of str
    computed_values : sequence of (str, str)
        ``(name, expression)`` per-particle values computed from the per-particle parameters.
    global_names, global_values : sequences
    cutoff : float or None
        Cutoff distance (nm) for ``CutoffNonPeriodic``; None for ``NoCutoff``.
    switching_distance : float or None
        Start of OpenMM's switching function ``S = 1 - 10t^3 + 15t^4 - 6t^5``,
        ``t = (r - r_switch)/(r_cut - r_switch)``; None for none.
    functions : dict of str to torch.nn.Module, optional
    """

    kind = "custom_nonbonded"

    def __init__(
        self,
        force_name: str,
        expression: str,
        pairs,
        parameters,
        parameter_names: Sequence[str],
        computed_values: Sequence[tuple[str, str]],
        global_names: Sequence[str],
        global_values: Sequence[float],
        cutoff: float | None,
        switching_distance: float | None,
        functions: dict[str, torch.nn.Module] | None = None,
    ):
        super().__init__()
        self._init_common(force_name, global_names, global_values, functions)
        self.expression_text = str(expression)
        self.parameter_names = [str(n) for n in parameter_names]
        self.computed_values = [(str(n), str(e)) for n, e in computed_values]
        self.cutoff = None if cutoff is None else float(cutoff)
        self.switching_distance = None if switching_distance is None else float(switching_distance)
        if self.switching_distance is not None and (self.cutoff is None or not 0 <= self.switching_distance < self.cutoff):
            raise ValueError(f"{force_name}: switching distance {switching_distance} must lie in [0, cutoff={cutoff})")
        self.register_buffer("pairs", _tensor(pairs, (0, 2), torch.int64))
        self.register_buffer("params", _tensor(parameters, (0, len(self.parameter_names))))
        if self.params.ndim != 2 or self.params.shape[1] != len(self.parameter_names):
            raise ValueError(f"{force_name}: parameters must have shape (n_particles, {len(self.parameter_names)})")
        self.computed_expressions = []
        for name, text in self.computed_values:
            expr = self._parse(text)
            self._check_variables(expr, set(self.parameter_names), f"computed value {name!r}")
            self.computed_expressions.append(expr)
        per_particle = self.parameter_names + [n for n, _ in self.computed_values]
        self.expression = self._parse(self.expression_text)
        self._check_variables(
            self.expression, {"r"} | {f"{n}{k}" for n in per_particle for k in (1, 2)}, "energy expression"
        )
        self._evaluator = _Evaluator(self.expression, ["r"])

    def _items_per_walker(self) -> int:
        return self.pairs.shape[0]

    def _per_particle(self, dtype) -> dict[str, torch.Tensor]:
        parameters = self.params.to(dtype)
        values = {name: parameters[:, i] for i, name in enumerate(self.parameter_names)}
        globals_ = self._globals(dtype)
        functions = dict(self.functions)
        for (name, _), expr in zip(self.computed_values, self.computed_expressions):
            v = expr.evaluate({**values, **globals_}, functions)
            values[name] = torch.broadcast_to(v, parameters.shape[:1])
        return values

    def _accumulate(self, xt: torch.Tensor, ft: torch.Tensor | None) -> torch.Tensor:
        gradient = ft is not None
        first, second = self.pairs[:, 0], self.pairs[:, 1]
        d, r = _pair_geometry(xt, first, second)
        variables = self._globals(xt.dtype)
        variables["r"] = r
        for name, value in self._per_particle(xt.dtype).items():
            variables[f"{name}1"] = value[first].unsqueeze(-1)
            variables[f"{name}2"] = value[second].unsqueeze(-1)
        e, derivatives = self._evaluator(variables, self._callables(), gradient)
        e = _full(e, r.shape)
        de_dr = _full(derivatives["r"], r.shape) if "r" in derivatives else torch.zeros_like(r)
        if self.switching_distance is not None:
            width = self.cutoff - self.switching_distance
            t = torch.clamp((r - self.switching_distance) / width, min=0.0)
            switch = 1.0 + t * t * t * (-10.0 + t * (15.0 - 6.0 * t))
            if gradient:
                de_dr = de_dr * switch + e * (t * t * (-30.0 + t * (60.0 - 30.0 * t)) / width)
            e = e * switch
        if self.cutoff is not None:
            # OpenMM skips pairs with r >= cutoff.
            inside = r < self.cutoff
            e = _full(e, r.shape, inside)
            de_dr = _full(de_dr, r.shape, inside)
        if gradient:
            _add_pair_forces(ft, first, second, d, r, de_dr)
        return e.sum(0)

    def spec(self) -> dict[str, Any]:
        return {
            **self._common_spec(),
            "expression": self.expression_text,
            "parameter_names": list(self.parameter_names),
            "computed_values": [list(cv) for cv in self.computed_values],
            "cutoff": self.cutoff,
            "switching_distance": self.switching_distance,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "CustomNonbondedTerm":
        return cls(
            spec["force_name"], spec["expression"], buffers["pairs"].cpu().numpy(),
            buffers["params"].detach().cpu().double().numpy(), spec["parameter_names"],
            [tuple(cv) for cv in spec["computed_values"]], spec["global_names"],
            buffers["global_values"].detach().cpu().double().numpy(), spec["cutoff"], spec["switching_distance"],
            cls._functions_from_spec(spec, buffers),
        )


def _nonperiodic_cutoff(force, force_name: str, periodic_method: int) -> float | None:
    method = force.getNonbondedMethod()
    if method == periodic_method:
        raise ValueError(
            f"{force_name} uses CutoffPeriodic; the torch force field supports only NoCutoff and "
            "CutoffNonPeriodic (use the OpenMM engine for periodic systems)"
        )
    if method == 0:  # NoCutoff
        return None
    return _nm(force.getCutoffDistance())


def _nm(value) -> float:
    """A length from the OpenMM Python API (a Quantity or a plain number in nm) in nm."""
    import openmm.unit

    if openmm.unit.is_quantity(value):
        return float(value.value_in_unit(openmm.unit.nanometer))
    return float(value)


@builds("CustomNonbondedForce")
def build_custom_nonbonded(force, system) -> list[Term]:
    """Non-periodic ``CustomNonbondedForce`` -> :class:`CustomNonbondedTerm`."""
    import openmm

    name = "CustomNonbondedForce"
    cutoff = _nonperiodic_cutoff(force, name, openmm.CustomNonbondedForce.CutoffPeriodic)
    _refuse_periodicdistance(force.getEnergyFunction(), name)
    n = force.getNumParticles()
    parameter_names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    parameters = [list(force.getParticleParameters(i)) for i in range(n)]
    exclusions = _exclusion_set(force.getExclusionParticles(i) for i in range(force.getNumExclusions()))
    if force.getNumInteractionGroups() == 0:
        pairs = _upper_pairs(n, exclusions)
    else:
        pairs = []
        for g in range(force.getNumInteractionGroups()):
            set1, set2 = (set(s) for s in force.getInteractionGroupParameters(g))
            for a in sorted(set1):
                for b in sorted(set2):
                    if a == b or (min(a, b), max(a, b)) in exclusions:
                        continue
                    if a > b and b in set1 and a in set2:
                        continue  # both in both sets: OpenMM counts the pair once per group
                    pairs.append((a, b))
    computed = []
    if hasattr(force, "getNumComputedValues"):
        computed = [tuple(force.getComputedValueParameters(i)) for i in range(force.getNumComputedValues())]
    switching = None
    if cutoff is not None and force.getUseSwitchingFunction():
        switching = _nm(force.getSwitchingDistance())
    if len(pairs) == 0:
        return []
    globals_ = _globals_of(force)
    return [
        CustomNonbondedTerm(
            name, force.getEnergyFunction(), pairs, parameters, parameter_names, computed, *globals_,
            cutoff, switching, _functions_of(force, name),
        )
    ]


# ---------------------------------------------------------------------------------------------
# CustomGBForce
# ---------------------------------------------------------------------------------------------

# CustomGBForce computation types.
_SINGLE, _PAIR, _PAIR_NO_EXCLUSIONS = 0, 1, 2
_TYPE_NAMES = {_SINGLE: "SingleParticle", _PAIR: "ParticlePair", _PAIR_NO_EXCLUSIONS: "ParticlePairNoExclusions"}


@term_kind
class CustomGBTerm(_ExpressionTerm):
    """A non-periodic ``CustomGBForce``: per-particle computed values, then energy terms.

    Parameters
    ----------
    force_name : str
        Name used in messages (``"CustomGBForce"``).
    parameters : array_like, shape ``(n_particles, n_parameters)``
    parameter_names : sequence of str
    computed_values : sequence of (str, str, int)
        ``(name, expression, type)``, type 0 = SingleParticle (in the particle's parameters,
        earlier values and ``x, y, z``), 1 = ParticlePair (value of particle 1: sum over the other
        particles, exclusions skipped) or 2 = ParticlePairNoExclusions; pair expressions use
        ``r`` and ``name1``/``name2``.
    energy_terms : sequence of (str, int)
        ``(expression, type)``: SingleParticle terms are summed over particles, pair terms over
        unordered pairs (particle 1 = lower index).
    exclusions : array_like of int, shape ``(n_exclusions, 2)``
    global_names, global_values : sequences
    cutoff : float or None
        Non-periodic cutoff (nm); pairs at ``r >= cutoff`` are skipped.
    functions : dict of str to torch.nn.Module, optional
    """

    kind = "custom_gb"

    def __init__(
        self,
        force_name: str,
        parameters,
        parameter_names: Sequence[str],
        computed_values: Sequence[tuple[str, str, int]],
        energy_terms: Sequence[tuple[str, int]],
        exclusions,
        global_names: Sequence[str],
        global_values: Sequence[float],
        cutoff: float | None,
        functions: dict[str, torch.nn.Module] | None = None,
    ):
        super().__init__()
        self._init_common(force_name, global_names, global_values, functions)
        self.parameter_names = [str(n) for n in parameter_names]
        self.computed_values = [(str(n), str(e), int(t)) for n, e, t in computed_values]
        self.energy_terms = [(str(e), int(t)) for e, t in energy_terms]
        self.cutoff = None if cutoff is None else float(cutoff)
        self.register_buffer("params", _tensor(parameters, (0, len(self.parameter_names))))
        if self.params.ndim != 2 or self.params.shape[1] != len(self.parameter_names):
            raise ValueError(f"{force_name}: parameters must have shape (n_particles, {len(self.parameter_names)})")
        n = self.params.shape[0]
        excluded = _exclusion_set(np.asarray(exclusions, dtype=np.int64).reshape(-1, 2).tolist())
        self.register_buffer("pairs_excluding", _tensor(_upper_pairs(n, excluded), (0, 2), torch.int64))
        self.register_buffer("pairs_all", _tensor(_upper_pairs(n, set()), (0, 2), torch.int64))
        self.register_buffer("exclusions", _tensor(sorted(excluded), (0, 2), torch.int64))

        def pair_names(names):
            return {"r"} | {f"{m}{k}" for m in names for k in (1, 2)}

        self.value_expressions = []
        self.value_evaluators = []
        known = list(self.parameter_names)
        for name, text, kind in self.computed_values:
            if kind not in _TYPE_NAMES:
                raise ValueError(f"{force_name}: computed value {name!r} has unknown type {kind}")
            expr = self._parse(text)
            allowed = set(known) | {"x", "y", "z"} if kind == _SINGLE else pair_names(known)
            self._check_variables(expr, allowed, f"{_TYPE_NAMES[kind]} computed value {name!r}")
            self.value_expressions.append(expr)
            previous = [v for v, _, _ in self.computed_values[: len(self.value_expressions) - 1]]
            if kind == _SINGLE:
                wrt = previous + ["x", "y", "z"]
            else:
                wrt = ["r"] + [f"{v}{k}" for v in previous for k in (1, 2)]
            self.value_evaluators.append(_Evaluator(expr, wrt))
            known.append(name)
        self.term_expressions = []
        self.term_evaluators = []
        for text, kind in self.energy_terms:
            if kind not in _TYPE_NAMES:
                raise ValueError(f"{force_name}: energy term {text!r} has unknown type {kind}")
            expr = self._parse(text)
            allowed = set(known) | {"x", "y", "z"} if kind == _SINGLE else pair_names(known)
            self._check_variables(expr, allowed, f"{_TYPE_NAMES[kind]} energy term")
            self.term_expressions.append(expr)
            values = [v for v, _, _ in self.computed_values]
            if kind == _SINGLE:
                wrt = values + ["x", "y", "z"]
            else:
                wrt = ["r"] + [f"{v}{k}" for v in values for k in (1, 2)]
            self.term_evaluators.append(_Evaluator(expr, wrt))

    def _items_per_walker(self) -> int:
        # ParticlePair computed values use every pair in both orders.
        return 2 * self.pairs_all.shape[0] + self.params.shape[0]

    def _pairs(self, kind: int) -> torch.Tensor:
        return self.pairs_excluding if kind == _PAIR else self.pairs_all

    def _accumulate(self, xt: torch.Tensor, ft: torch.Tensor | None) -> torch.Tensor:
        gradient = ft is not None
        n, n_walkers = xt.shape[0], xt.shape[2]
        dtype = xt.dtype
        functions = self._callables()
        globals_ = self._globals(dtype)
        params = self.params.to(dtype)
        # Per-particle quantities: parameters (n, 1) and computed values (n, n_walkers).
        particle = {name: params[:, i].unsqueeze(-1) for i, name in enumerate(self.parameter_names)}
        coordinates = {"x": xt[:, 0], "y": xt[:, 1], "z": xt[:, 2]}
        geometry = {}

        def pairs_of(kind):
            # Unordered pairs (i < j) of this kind with their vectors, distances and cutoff mask.
            if kind not in geometry:
                pairs = self._pairs(kind)
                first, second = pairs[:, 0], pairs[:, 1]
                d, r = _pair_geometry(xt, first, second)
                inside = None if self.cutoff is None else r < self.cutoff
                geometry[kind] = (first, second, d, r, inside)
            return geometry[kind]

        def pair_variables(first, second, r):
            variables = {**globals_, "r": r}
            for name, value in particle.items():
                variables[f"{name}1"] = value.index_select(0, first)
                variables[f"{name}2"] = value.index_select(0, second)
            return variables

        # Forward: computed values in order. A ParticlePair value of particle i sums the
        # expression over ordered pairs (i, j), so each unordered pair is used both ways.
        saved = []
        for (name, _, kind), evaluator in zip(self.computed_values, self.value_evaluators):
            if kind == _SINGLE:
                v, dv = evaluator({**globals_, **particle, **coordinates}, functions, gradient)
                particle[name] = _full(v, (n, n_walkers))
                saved.append((dv, None))
            else:
                first, second, _, r, inside = pairs_of(kind)
                both_first, both_second = torch.cat([first, second]), torch.cat([second, first])
                both_r = torch.cat([r, r])
                both_inside = None if inside is None else torch.cat([inside, inside])
                g, dg = evaluator(pair_variables(both_first, both_second, both_r), functions, gradient)
                g = _full(g, both_r.shape, both_inside)
                dg = {k: _full(v, both_r.shape, both_inside) for k, v in dg.items()}
                particle[name] = torch.zeros((n, n_walkers), dtype=dtype, device=xt.device).index_add(0, both_first, g)
                saved.append((dg, (both_first, both_second)))

        energy = torch.zeros(n_walkers, dtype=dtype, device=xt.device)
        value_names = [name for name, _, _ in self.computed_values]
        if gradient:
            de_dv = {name: torch.zeros((n, n_walkers), dtype=dtype, device=xt.device) for name in value_names}
            de_dx = torch.zeros_like(xt)
            de_dr = {}
        for (_, kind), evaluator in zip(self.energy_terms, self.term_evaluators):
            if kind == _SINGLE:
                e, de = evaluator({**globals_, **particle, **coordinates}, functions, gradient)
                energy = energy + _full(e, (n, n_walkers)).sum(0)
                for var, value in de.items():
                    if var in coordinates:
                        de_dx[:, "xyz".index(var)] += value
                    else:
                        de_dv[var] = de_dv[var] + value
            else:
                first, second, _, r, inside = pairs_of(kind)
                e, de = evaluator(pair_variables(first, second, r), functions, gradient)
                energy = energy + _full(e, r.shape, inside).sum(0)
                for var, value in de.items():
                    value = _full(value, r.shape, inside)
                    if var == "r":
                        de_dr[kind] = de_dr[kind] + value if kind in de_dr else value
                    else:
                        index = first if var.endswith("1") else second
                        de_dv[var[:-1]] = de_dv[var[:-1]].index_add(0, index, value)
        if not gradient:
            return energy

        # Reverse sweep over the computed values (chain rule), last to first.
        for k in reversed(range(len(self.computed_values))):
            name, _, kind = self.computed_values[k]
            derivatives, pairs = saved[k]
            upstream = de_dv[name]
            if pairs is None:
                for var, value in derivatives.items():
                    if var in coordinates:
                        de_dx[:, "xyz".index(var)] += upstream * value
                    else:
                        de_dv[var] = de_dv[var] + upstream * value
                continue
            both_first, both_second = pairs
            upstream = upstream.index_select(0, both_first)
            for var, value in derivatives.items():
                contribution = upstream * value
                if var == "r":
                    half = contribution.shape[0] // 2
                    folded = contribution[:half] + contribution[half:]
                    de_dr[kind] = de_dr[kind] + folded if kind in de_dr else folded
                else:
                    index = both_first if var.endswith("1") else both_second
                    de_dv[var[:-1]] = de_dv[var[:-1]].index_add(0, index, contribution)
        ft.sub_(de_dx)
        for kind, value in de_dr.items():
            first, second, d, r, _ = geometry[kind]
            _add_pair_forces(ft, first, second, d, r, value)
        return energy

    def spec(self) -> dict[str, Any]:
        return {
            **self._common_spec(),
            "parameter_names": list(self.parameter_names),
            "computed_values": [list(cv) for cv in self.computed_values],
            "energy_terms": [list(t) for t in self.energy_terms],
            "cutoff": self.cutoff,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "CustomGBTerm":
        return cls(
            spec["force_name"], buffers["params"].detach().cpu().double().numpy(), spec["parameter_names"],
            [tuple(cv) for cv in spec["computed_values"]], [tuple(t) for t in spec["energy_terms"]],
            buffers["exclusions"].cpu().numpy(), spec["global_names"],
            buffers["global_values"].detach().cpu().double().numpy(), spec["cutoff"],
            cls._functions_from_spec(spec, buffers),
        )


@builds("CustomGBForce")
def build_custom_gb(force, system) -> list[Term]:
    """Non-periodic ``CustomGBForce`` -> :class:`CustomGBTerm`."""
    import openmm

    name = "CustomGBForce"
    cutoff = _nonperiodic_cutoff(force, name, openmm.CustomGBForce.CutoffPeriodic)
    parameter_names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    parameters = [list(force.getParticleParameters(i)) for i in range(force.getNumParticles())]
    computed = [tuple(force.getComputedValueParameters(i)) for i in range(force.getNumComputedValues())]
    terms = [tuple(force.getEnergyTermParameters(i)) for i in range(force.getNumEnergyTerms())]
    for text in [c[1] for c in computed] + [t[0] for t in terms]:
        _refuse_periodicdistance(text, name)
    exclusions = [force.getExclusionParticles(i) for i in range(force.getNumExclusions())]
    if not terms:
        return []
    globals_ = _globals_of(force)
    return [
        CustomGBTerm(
            name, parameters, parameter_names, computed, terms, exclusions, *globals_, cutoff,
            _functions_of(force, name),
        )
    ]
