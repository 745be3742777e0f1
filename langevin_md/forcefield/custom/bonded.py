"""Custom bonded forces (bond, angle, torsion, external, compound bond) as one batched term.

See :mod:`langevin_md.forcefield.custom` for the translation as a whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..expression import Expression, Node
from ..registry import builds, term_kind
from ..term import Term
from .common import (
    Evaluator, ExpressionTerm, GEOMETRY, as_tensor, full, functions_of, globals_of,
    refuse_periodic_bonded, refuse_periodicdistance,
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
class CustomBondedTerm(ExpressionTerm):
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
        self.register_buffer("atoms", as_tensor(atoms, (0, n_slots), torch.int64))
        self.register_buffer("params", as_tensor(parameters, (self.atoms.shape[0], len(self.parameter_names))))
        if self.atoms.ndim != 2 or self.atoms.shape[1] != n_slots:
            raise ValueError(f"{force_name}: atoms must have shape (n_terms, {n_slots}), got {tuple(self.atoms.shape)}")
        if self.params.shape != (self.atoms.shape[0], len(self.parameter_names)):
            raise ValueError(
                f"{force_name}: parameters must have shape ({self.atoms.shape[0]}, {len(self.parameter_names)}), "
                f"got {tuple(self.params.shape)}"
            )
        if force_name == "CustomCompoundBondForce":
            expr = self._parse(self.expression_text, {g: arity for g, (arity, _) in GEOMETRY.items()})
            expr = self._rewrite_geometry(expr, n_slots, geometry)
        else:
            expr = self._parse(self.expression_text)
        self._check_variables(expr, set(geometry) | set(self.parameter_names), "expression")
        self.expression = expr
        # Only the geometric variables the expression uses are computed.
        self.geometry = {name: g for name, g in geometry.items() if name in expr.variables}
        self._evaluator = Evaluator(expr, list(self.geometry))

    def _items_per_walker(self) -> int:
        return self.atoms.shape[0]

    def _rewrite_geometry(self, expr: Expression, n_slots: int, geometry: dict) -> Expression:
        names = {f"p{k + 1}": k for k in range(n_slots)}

        def rewrite(node: Node):
            if node.op != "custom" or node.name not in GEOMETRY:
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
                variables[name], gradients[name] = GEOMETRY[kind][1](*[point(s) for s in slots], gradient)
        e, derivatives = self._evaluator(variables, self._callables(), gradient)
        for name, de in derivatives.items():
            kind, slots = self.geometry[name]
            de = full(de, shape)
            if kind in ("x", "y", "z"):
                ft[:, "xyz".index(kind)].index_add_(0, self.atoms[:, slots[0]], -de)
            else:
                for slot, g in zip(slots, gradients[name]):
                    ft.index_add_(0, self.atoms[:, slot], -de.unsqueeze(1) * g)
        return full(e, shape).sum(0)

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
    refuse_periodicdistance(force.getEnergyFunction(), force_name)
    refuse_periodic_bonded(force, force_name)
    if len(atoms) == 0:
        return []
    names, values = globals_of(force)
    return [
        CustomBondedTerm(
            force_name, force.getEnergyFunction(), atoms, parameters, parameter_names, names, values,
            functions_of(force, force_name),
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
        refuse_periodic_bonded(force, "CustomCompoundBondForce")
        return []
    return _build_bonded(force, system, "CustomCompoundBondForce", atoms, [list(r[1]) for r in rows], names)
