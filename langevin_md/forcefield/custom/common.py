"""What every custom-force term shares: geometry with closed-form gradients, the expression
evaluator, the base expression term, pair lists and the checks that refuse periodic features.

See :mod:`langevin_md.forcefield.custom` for the translation as a whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..batched import WalkerLastTerm
from ..expression import Expression, derivative_name, parse
from ..tabulated import function_from_openmm, function_from_spec

# ---------------------------------------------------------------------------------------------
# Geometry on walker-last blocks (k, 3, n_walkers), with gradients
# ---------------------------------------------------------------------------------------------


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=1)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=1)


def distance_geometry(p1, p2, gradient: bool):
    """|p2 - p1| ``(k, n)``; with ``gradient``, also d/dp1, d/dp2 ``(k, 3, n)``."""
    d = p2 - p1
    r = torch.sqrt(dot(d, d))
    if not gradient:
        return r, None
    u = d / r.unsqueeze(1)
    return r, (-u, u)


def angle_geometry(p1, p2, p3, gradient: bool):
    """Angle p1-p2-p3 in ``[0, pi]``; with ``gradient``, its gradients in p1, p2, p3."""
    u, v = p1 - p2, p3 - p2
    uv = dot(u, v)
    c = cross(u, v)
    cross_norm = torch.sqrt(dot(c, c))
    # atan2(|u x v|, u.v) stays accurate near 0 and pi, where acos(cos) loses digits.
    theta = torch.atan2(cross_norm, uv)
    if not gradient:
        return theta, None
    # d theta/du = (u.v/|u|^2 u - v)/|u x v|, and symmetrically for v.
    g1 = ((uv / dot(u, u)).unsqueeze(1) * u - v) / cross_norm.unsqueeze(1)
    g3 = ((uv / dot(v, v)).unsqueeze(1) * v - u) / cross_norm.unsqueeze(1)
    return theta, (g1, -g1 - g3, g3)


def dihedral_geometry(p1, p2, p3, p4, gradient: bool):
    """Dihedral p1-p2-p3-p4 in ``[-pi, pi]`` with OpenMM's (IUPAC) sign; optional gradients.

    Gradients in the closed form of Bekker (also Blondel & Karplus, J. Comput. Chem. 17, 1132
    (1996)): with b1 = p2-p1, b2 = p3-p2, b3 = p4-p3, m = b1 x b2, n = b2 x b3,
    dphi/dp1 = -|b2| m/|m|^2, dphi/dp4 = |b2| n/|n|^2, and the middle atoms balance them.
    """
    b1, b2, b3 = p2 - p1, p3 - p2, p4 - p3
    m, n = cross(b1, b2), cross(b2, b3)
    b2_sq = dot(b2, b2)
    b2_norm = torch.sqrt(b2_sq)
    phi = torch.atan2(b2_norm * dot(b1, n), dot(m, n))
    if not gradient:
        return phi, None
    g1 = -(b2_norm / dot(m, m)).unsqueeze(1) * m
    g4 = (b2_norm / dot(n, n)).unsqueeze(1) * n
    s1 = (dot(b1, b2) / b2_sq).unsqueeze(1)
    s3 = (dot(b3, b2) / b2_sq).unsqueeze(1)
    g2 = -(1.0 + s1) * g1 + s3 * g4
    g3 = s1 * g1 - (1.0 + s3) * g4
    return phi, (g1, g2, g3, g4)


GEOMETRY = {"distance": (2, distance_geometry), "angle": (3, angle_geometry), "dihedral": (4, dihedral_geometry)}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def as_tensor(values, shape_if_empty, dtype=torch.float64) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float64 if dtype == torch.float64 else np.int64)
    if array.size == 0:
        array = array.reshape(shape_if_empty)
    return torch.as_tensor(array, dtype=dtype)


#: Walkers are processed in chunks so that no temporary exceeds about this many elements
#: (items x walkers), keeping memory bounded for large molecules and many walkers.
ELEMENTS_PER_CHUNK = 1 << 22


class Evaluator:
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


def full(t: torch.Tensor, shape, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``t`` broadcast to ``shape``, zero where ``mask`` is False (pairs beyond the cutoff)."""
    t = torch.broadcast_to(t, shape)
    if mask is None:
        return t
    return torch.where(mask, t, torch.zeros_like(t))


class ExpressionTerm(WalkerLastTerm):
    """Shared machinery: global parameters, tabulated functions, variable checks, spec."""

    def _init_common(self, force_name: str, global_names, global_values, functions) -> None:
        self.force_name = str(force_name)
        self.global_names = [str(n) for n in global_names]
        self.register_buffer("global_values", as_tensor(list(global_values), (0,)))
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
        # neighbour lists see every walker at once (a chunk of walkers would look like a new
        # batch to them and force a rebuild), and their size sets the chunk length below
        self._update_neighbours(xt)
        chunk = max(1, ELEMENTS_PER_CHUNK // max(1, self._items_per_walker()))
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

    def _update_neighbours(self, xt: torch.Tensor) -> None:
        """Bring neighbour lists up to date for all walkers ``xt`` (terms with a cutoff)."""

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


def functions_of(force, force_name: str) -> dict[str, torch.nn.Module]:
    if not hasattr(force, "getNumTabulatedFunctions"):
        return {}
    return {
        force.getTabulatedFunctionName(i): function_from_openmm(
            force.getTabulatedFunction(i), force_name, force.getTabulatedFunctionName(i)
        )
        for i in range(force.getNumTabulatedFunctions())
    }


def globals_of(force) -> tuple[list[str], list[float]]:
    n = force.getNumGlobalParameters()
    return (
        [force.getGlobalParameterName(i) for i in range(n)],
        [force.getGlobalParameterDefaultValue(i) for i in range(n)],
    )


def refuse_periodic_bonded(force, force_name: str) -> None:
    if force.usesPeriodicBoundaryConditions():
        raise ValueError(
            f"{force_name} uses periodic boundary conditions, which the torch force field does not support; "
            "use the OpenMM engine for periodic systems"
        )


def refuse_periodicdistance(expression: str, force_name: str) -> None:
    if "periodicdistance" in expression:
        raise ValueError(
            f"{force_name}: the expression {expression!r} uses periodicdistance(), which needs periodic "
            "boundary conditions; the torch force field is non-periodic (use the OpenMM engine)"
        )



# ---------------------------------------------------------------------------------------------
# Pair helpers
# ---------------------------------------------------------------------------------------------


def pair_geometry(xt: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
    """Vectors ``(k, 3, n_walkers)`` from ``first`` to ``second`` atoms and their lengths ``(k, n)``."""
    d = xt.index_select(0, second) - xt.index_select(0, first)
    return d, torch.sqrt(dot(d, d))


def add_pair_forces(ft: torch.Tensor, first, second, d, r, de_dr) -> None:
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


def upper_pairs(n: int, exclusions: set[tuple[int, int]]) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    keep = np.array([(a, b) not in exclusions for a, b in zip(i.tolist(), j.tolist())], dtype=bool)
    return np.stack([i[keep], j[keep]], axis=1) if keep.size else np.zeros((0, 2), dtype=np.int64)


def exclusion_set(pairs) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs}



def nonperiodic_cutoff(force, force_name: str, periodic_method: int) -> float | None:
    method = force.getNonbondedMethod()
    if method == periodic_method:
        raise ValueError(
            f"{force_name} uses CutoffPeriodic; the torch force field supports only NoCutoff and "
            "CutoffNonPeriodic (use the OpenMM engine for periodic systems)"
        )
    if method == 0:  # NoCutoff
        return None
    return nm(force.getCutoffDistance())


def nm(value) -> float:
    """A length from the OpenMM Python API (a Quantity or a plain number in nm) in nm."""
    import openmm.unit

    if openmm.unit.is_quantity(value):
        return float(value.value_in_unit(openmm.unit.nanometer))
    return float(value)
