"""OpenMM's CustomGBForce (computed values, then energy terms) as a batched term.

See :mod:`langevin_md.forcefield.custom` for the translation as a whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..neighbours import DEFAULT_SKIN, NeighbourList, check_skin
from ..registry import builds, term_kind
from ..term import Term
from .common import (
    Evaluator, ExpressionTerm, add_pair_forces, as_tensor, exclusion_set, full,
    functions_of, globals_of, nonperiodic_cutoff, pair_geometry, refuse_periodicdistance,
    upper_pairs,
)

# ---------------------------------------------------------------------------------------------
# CustomGBForce
# ---------------------------------------------------------------------------------------------

# CustomGBForce computation types.
_SINGLE, _PAIR, _PAIR_NO_EXCLUSIONS = 0, 1, 2
_TYPE_NAMES = {_SINGLE: "SingleParticle", _PAIR: "ParticlePair", _PAIR_NO_EXCLUSIONS: "ParticlePairNoExclusions"}


@term_kind
class CustomGBTerm(ExpressionTerm):
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
    skin : float or None
        With a cutoff: the Verlet skin (nm) of one neighbour list over all particle pairs
        (:mod:`langevin_md.forcefield.neighbours`), from which both pair kinds are taken; None
        evaluates every pair and masks. Ignored without a cutoff.
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
        skin: float | None = DEFAULT_SKIN,
    ):
        super().__init__()
        self._init_common(force_name, global_names, global_values, functions)
        self.parameter_names = [str(n) for n in parameter_names]
        self.computed_values = [(str(n), str(e), int(t)) for n, e, t in computed_values]
        self.energy_terms = [(str(e), int(t)) for e, t in energy_terms]
        self.cutoff = None if cutoff is None else float(cutoff)
        self.register_buffer("params", as_tensor(parameters, (0, len(self.parameter_names))))
        if self.params.ndim != 2 or self.params.shape[1] != len(self.parameter_names):
            raise ValueError(f"{force_name}: parameters must have shape (n_particles, {len(self.parameter_names)})")
        n = self.params.shape[0]
        excluded = exclusion_set(np.asarray(exclusions, dtype=np.int64).reshape(-1, 2).tolist())
        self.register_buffer("pairs_excluding", as_tensor(upper_pairs(n, excluded), (0, 2), torch.int64))
        self.register_buffer("pairs_all", as_tensor(upper_pairs(n, set()), (0, 2), torch.int64))
        self.register_buffer("exclusions", as_tensor(sorted(excluded), (0, 2), torch.int64))
        self.skin = None if self.cutoff is None else check_skin(skin)
        self.neighbours = None
        self._near = None  # {kind: pairs (k, 2)} selected for the current call
        if self.skin is not None:
            all_pairs = self.pairs_all
            self.neighbours = NeighbourList(all_pairs[:, 0], all_pairs[:, 1], self.cutoff, self.skin)
            # which of pairs_all are exclusions: the excluding kind is the rest, in the same order
            flags = [(a, b) in excluded for a, b in all_pairs.tolist()]
            self.register_buffer("all_pair_excluded", torch.tensor(flags, dtype=torch.bool), persistent=False)

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
            self.value_evaluators.append(Evaluator(expr, wrt))
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
            self.term_evaluators.append(Evaluator(expr, wrt))

    def _items_per_walker(self) -> int:
        # ParticlePair computed values use every pair in both orders.
        return 2 * self._pairs(_PAIR_NO_EXCLUSIONS).shape[0] + self.params.shape[0]

    def _update_neighbours(self, xt: torch.Tensor) -> None:
        if self.neighbours is None:
            return
        near = self.neighbours.select(xt)
        kept = near[~self.all_pair_excluded.index_select(0, near)]
        self._near = {_PAIR_NO_EXCLUSIONS: self.pairs_all.index_select(0, near),
                      _PAIR: self.pairs_all.index_select(0, kept)}

    def _pairs(self, kind: int) -> torch.Tensor:
        if self._near is not None:
            return self._near[kind]
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
                d, r = pair_geometry(xt, first, second)
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
                particle[name] = full(v, (n, n_walkers))
                saved.append((dv, None))
            else:
                first, second, _, r, inside = pairs_of(kind)
                both_first, both_second = torch.cat([first, second]), torch.cat([second, first])
                both_r = torch.cat([r, r])
                both_inside = None if inside is None else torch.cat([inside, inside])
                g, dg = evaluator(pair_variables(both_first, both_second, both_r), functions, gradient)
                g = full(g, both_r.shape, both_inside)
                dg = {k: full(v, both_r.shape, both_inside) for k, v in dg.items()}
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
                energy = energy + full(e, (n, n_walkers)).sum(0)
                for var, value in de.items():
                    if var in coordinates:
                        de_dx[:, "xyz".index(var)] += value
                    else:
                        de_dv[var] = de_dv[var] + value
            else:
                first, second, _, r, inside = pairs_of(kind)
                e, de = evaluator(pair_variables(first, second, r), functions, gradient)
                energy = energy + full(e, r.shape, inside).sum(0)
                for var, value in de.items():
                    value = full(value, r.shape, inside)
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
            add_pair_forces(ft, first, second, d, r, value)
        return energy

    def spec(self) -> dict[str, Any]:
        return {
            **self._common_spec(),
            "parameter_names": list(self.parameter_names),
            "computed_values": [list(cv) for cv in self.computed_values],
            "energy_terms": [list(t) for t in self.energy_terms],
            "cutoff": self.cutoff,
            "skin": self.skin,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], buffers: dict[str, torch.Tensor]) -> "CustomGBTerm":
        return cls(
            spec["force_name"], buffers["params"].detach().cpu().double().numpy(), spec["parameter_names"],
            [tuple(cv) for cv in spec["computed_values"]], [tuple(t) for t in spec["energy_terms"]],
            buffers["exclusions"].cpu().numpy(), spec["global_names"],
            buffers["global_values"].detach().cpu().double().numpy(), spec["cutoff"],
            cls._functions_from_spec(spec, buffers), spec.get("skin"),
        )


@builds("CustomGBForce")
def build_custom_gb(force, system) -> list[Term]:
    """Non-periodic ``CustomGBForce`` -> :class:`CustomGBTerm`."""
    import openmm

    name = "CustomGBForce"
    cutoff = nonperiodic_cutoff(force, name, openmm.CustomGBForce.CutoffPeriodic)
    parameter_names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    parameters = [list(force.getParticleParameters(i)) for i in range(force.getNumParticles())]
    computed = [tuple(force.getComputedValueParameters(i)) for i in range(force.getNumComputedValues())]
    terms = [tuple(force.getEnergyTermParameters(i)) for i in range(force.getNumEnergyTerms())]
    for text in [c[1] for c in computed] + [t[0] for t in terms]:
        refuse_periodicdistance(text, name)
    exclusions = [force.getExclusionParticles(i) for i in range(force.getNumExclusions())]
    if not terms:
        return []
    globals_ = globals_of(force)
    return [
        CustomGBTerm(
            name, parameters, parameter_names, computed, terms, exclusions, *globals_, cutoff,
            functions_of(force, name),
        )
    ]
