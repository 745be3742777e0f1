"""OpenMM's CustomNonbondedForce (NoCutoff or CutoffNonPeriodic) as a batched term.

See :mod:`langevin_md.forcefield.custom` for the translation as a whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..neighbours import DEFAULT_SKIN, NeighbourList, check_skin
from ..registry import builds, term_kind
from ..term import Term
from .common import (
    Evaluator, ExpressionTerm, add_pair_forces, as_tensor, exclusion_set, full,
    functions_of, globals_of, nm, nonperiodic_cutoff, pair_geometry,
    refuse_periodicdistance, upper_pairs,
)

# ---------------------------------------------------------------------------------------------
# CustomNonbondedForce
# ---------------------------------------------------------------------------------------------


@term_kind
class CustomNonbondedTerm(ExpressionTerm):
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
    skin : float or None
        With a cutoff: the Verlet skin (nm) of the neighbour list over ``pairs``
        (:mod:`langevin_md.forcefield.neighbours`); None evaluates every pair and masks.
        Ignored without a cutoff.
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
        skin: float | None = DEFAULT_SKIN,
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
        self.register_buffer("pairs", as_tensor(pairs, (0, 2), torch.int64))
        self.register_buffer("params", as_tensor(parameters, (0, len(self.parameter_names))))
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
        self._evaluator = Evaluator(self.expression, ["r"])
        self.skin = None if self.cutoff is None else check_skin(skin)
        self.neighbours = None
        if self.skin is not None:
            self.neighbours = NeighbourList(self.pairs[:, 0], self.pairs[:, 1], self.cutoff, self.skin)
        self._near = None  # the pairs (k, 2) the neighbour list selected for the current call

    def _items_per_walker(self) -> int:
        return self._current_pairs().shape[0]

    def _update_neighbours(self, xt: torch.Tensor) -> None:
        if self.neighbours is not None:
            self._near = self.pairs.index_select(0, self.neighbours.select(xt))

    def _current_pairs(self) -> torch.Tensor:
        return self.pairs if self._near is None else self._near

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
        pairs = self._current_pairs()
        first, second = pairs[:, 0], pairs[:, 1]
        d, r = pair_geometry(xt, first, second)
        variables = self._globals(xt.dtype)
        variables["r"] = r
        for name, value in self._per_particle(xt.dtype).items():
            variables[f"{name}1"] = value[first].unsqueeze(-1)
            variables[f"{name}2"] = value[second].unsqueeze(-1)
        e, derivatives = self._evaluator(variables, self._callables(), gradient)
        e = full(e, r.shape)
        de_dr = full(derivatives["r"], r.shape) if "r" in derivatives else torch.zeros_like(r)
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
            e = full(e, r.shape, inside)
            de_dr = full(de_dr, r.shape, inside)
        if gradient:
            add_pair_forces(ft, first, second, d, r, de_dr)
        return e.sum(0)

    def spec(self) -> dict[str, Any]:
        return {
            **self._common_spec(),
            "expression": self.expression_text,
            "parameter_names": list(self.parameter_names),
            "computed_values": [list(cv) for cv in self.computed_values],
            "cutoff": self.cutoff,
            "switching_distance": self.switching_distance,
            "skin": self.skin,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "CustomNonbondedTerm":
        return cls(
            spec["force_name"], spec["expression"], buffers["pairs"].cpu().numpy(),
            buffers["params"].detach().cpu().double().numpy(), spec["parameter_names"],
            [tuple(cv) for cv in spec["computed_values"]], spec["global_names"],
            buffers["global_values"].detach().cpu().double().numpy(), spec["cutoff"], spec["switching_distance"],
            cls._functions_from_spec(spec, buffers), spec.get("skin"),
        )



@builds("CustomNonbondedForce")
def build_custom_nonbonded(force, system) -> list[Term]:
    """Non-periodic ``CustomNonbondedForce`` -> :class:`CustomNonbondedTerm`."""
    import openmm

    name = "CustomNonbondedForce"
    cutoff = nonperiodic_cutoff(force, name, openmm.CustomNonbondedForce.CutoffPeriodic)
    refuse_periodicdistance(force.getEnergyFunction(), name)
    n = force.getNumParticles()
    parameter_names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    parameters = [list(force.getParticleParameters(i)) for i in range(n)]
    exclusions = exclusion_set(force.getExclusionParticles(i) for i in range(force.getNumExclusions()))
    if force.getNumInteractionGroups() == 0:
        pairs = upper_pairs(n, exclusions)
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
        switching = nm(force.getSwitchingDistance())
    if len(pairs) == 0:
        return []
    globals_ = globals_of(force)
    return [
        CustomNonbondedTerm(
            name, force.getEnergyFunction(), pairs, parameters, parameter_names, computed, *globals_,
            cutoff, switching, functions_of(force, name),
        )
    ]
