"""The Lepton expression translator against OpenMM's own evaluation (Reference platform, float64).

Each expression is put into a real ``CustomExternalForce`` (energy in ``x, y, z``, per-particle
and global parameters), evaluated by an OpenMM Reference Context and by our torch program on the
same configurations; energies and forces (autograd vs Lepton's symbolic derivatives) must agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
import openmm.unit as unit  # noqa: E402

from langevin_md.forcefield.custom import build_custom_external  # noqa: E402
from langevin_md.forcefield.expression import STANDARD_FUNCTIONS, parse  # noqa: E402

N_PARTICLES = 4


def _external_force(expression: str) -> "openmm.CustomExternalForce":
    force = openmm.CustomExternalForce(expression)
    force.addPerParticleParameter("a")
    force.addPerParticleParameter("b")
    force.addGlobalParameter("g", 0.731)
    rng = np.random.default_rng(7)
    for i in range(N_PARTICLES):
        force.addParticle(i, [float(rng.uniform(-1.5, 1.5)), float(rng.uniform(0.2, 2.0))])
    return force


def _compare(expression: str, configurations: np.ndarray, dtype=torch.float64):
    """(max relative energy error, max-atom force error / RMS force) over the configurations."""
    system = openmm.System()
    for _ in range(N_PARTICLES):
        system.addParticle(1.0)
    force = _external_force(expression)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for x in configurations:
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    energies, forces = np.array(energies), np.array(forces)
    (term,) = build_custom_external(force, system)
    term = term.to(dtype)
    e, f = term.energy_and_forces(torch.tensor(configurations, dtype=dtype))
    assert e.dtype == dtype and f.dtype == dtype
    e, f = e.double().numpy(), f.double().numpy()
    assert np.all(np.isfinite(energies)) and np.all(np.isfinite(forces)), expression
    energy_error = np.max(np.abs(e - energies) / np.maximum(np.abs(energies), 1e-3))
    rms = np.sqrt(np.mean(forces**2))
    force_error = np.max(np.linalg.norm(f - forces, axis=-1)) / max(rms, 1e-3)
    return energy_error, force_error


def _configurations(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.7, size=(n, N_PARTICLES, 3))


# ----------------------------------------------------------------------------------------------
# Grammar and semantics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("2^3^2", 512.0),  # ^ is right-associative
        ("-2^2", -4.0),  # unary minus binds looser than ^
        ("2^-1", 0.5),
        ("2*-3", -6.0),
        ("2-3-4", -5.0),  # left-associative
        ("8/4/2", 1.0),
        ("1+2*3^2", 19.0),
        ("1e-3*1E+3 + .5 + 2.", 3.5),
        ("step(0) + step(-1e-300)", 1.0),  # step(0) = 1
        ("delta(0) + delta(1e-300)", 1.0),
        ("select(0, 1, 2) + select(-0.5, 10, 20)", 12.0),
        ("min(1, 2) + max(1, 2)", 3.0),
        ("recip(4) + square(3) + cube(2)", 17.25),
        ("floor(-1.5) + ceil(-1.5)", -3.0),
        ("a; a = b*2; b = 3", 6.0),
        ("a + b; a = b*2; b = 3;", 9.0),
        ("-x^2; x = 3", -9.0),
    ],
)
def test_values_follow_lepton(text, value):
    assert float(parse(text).evaluate({})) == pytest.approx(value, rel=1e-15)


def test_definitions_see_only_later_definitions():
    # Lepton parses definitions from the last backwards: "b = a" cannot see the earlier "a".
    expr = parse("b; a = 2; b = a")
    assert expr.variables == {"a"}
    assert float(expr.evaluate({"a": torch.tensor(5.0, dtype=torch.float64)})) == 5.0
    # A definition shadows a variable of the same name, as substitution does in Lepton.
    assert float(parse("r*2; r = 3").evaluate({})) == 6.0


def test_bad_expressions_give_clear_errors():
    cases = {
        "k*(r-1": "unbalanced parentheses",
        "k*r)": "unexpected text",
        "foo(r)": "unknown function 'foo'",
        "atan2(r)": "takes 2 argument",
        "r + * 2": "unexpected token",
        "+r": "unexpected token",
        "r; = 2": "name = expression",
        "r; a 2": "name = expression",
        "": "unexpected end",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            parse(text)
        assert repr(text) in str(info.value)
    with pytest.raises(TypeError, match="str"):
        parse(3.0)
    with pytest.raises(ValueError, match=r"needs values for variables \['r'\]"):
        parse("2*r").evaluate({})


def test_bad_expression_in_a_force_names_the_force():
    system = openmm.System()
    system.addParticle(1.0)
    force = openmm.CustomExternalForce("k*(x-1")
    force.addPerParticleParameter("k")
    force.addParticle(0, [1.0])
    with pytest.raises(ValueError, match="CustomExternalForce.*unbalanced"):
        build_custom_external(force, system)
    force = openmm.CustomExternalForce("k*w")
    force.addPerParticleParameter("k")
    force.addParticle(0, [1.0])
    with pytest.raises(ValueError, match=r"CustomExternalForce.*unknown variable.*\['w'\]"):
        build_custom_external(force, system)


# ----------------------------------------------------------------------------------------------
# Every function, against OpenMM
# ----------------------------------------------------------------------------------------------

# One expression per function with its argument kept in the function's domain; x, y, z are the
# particle's coordinates, a and b per-particle parameters, g a global parameter.
FUNCTION_CASES = {
    "sqrt": "sqrt(1 + x^2 + b*y^2)",
    "exp": "exp(0.5*x*b - y)",
    "log": "log(2 + sin(x*g) + b*z^2)",
    "sin": "a*sin(3*x - y)",
    "cos": "cos(b*x*y)",
    "sec": "sec(0.6*tanh(x + a))",
    "csc": "csc(1.5 + 0.5*tanh(z - y))",
    "tan": "tan(0.7*tanh(b*x))",
    "cot": "cot(1 + 0.5*tanh(x*y))",
    "asin": "asin(0.9*tanh(x + y))",
    "acos": "acos(0.9*tanh(z*b))",
    "atan": "atan(a*x + y)",
    "atan2": "atan2(y + 0.1, x - a)",
    "sinh": "sinh(x - z)",
    "cosh": "cosh(b*y)",
    "tanh": "tanh(x*y*z)",
    "erf": "erf(x + a)",
    "erfc": "erfc(y*b)",
    "step": "step(x - 0.1)*y^2 + step(-z)",
    "delta": "delta(floor(x) - 1)*y + delta(0*x)*z",
    "square": "square(x - a)",
    "cube": "cube(y + z)",
    "recip": "recip(2 + tanh(x))",
    "min": "min(x, y*b)",
    "max": "max(x^2, z)",
    "abs": "abs(x - y)*b",
    "floor": "floor(3*x)*y",
    "ceil": "ceil(2*z)*x",
    "select": "select(step(x), y^2, z^3)",
    "power": "(1 + x^2)^(0.5*b) + y^3 + 2^z - (x^2+1)^-1.5",
    "operators": "-x*y/(1.5 + tanh(z)) - -a + b - g*z",
    "definitions": "u*v + w; u = x - a; v = w^2 + y; w = z*g",
}


def test_function_cases_cover_the_language():
    used = {name for name in STANDARD_FUNCTIONS if any(f"{name}(" in text for text in FUNCTION_CASES.values())}
    assert used == set(STANDARD_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTION_CASES))
def test_each_function_matches_openmm(name):
    energy_error, force_error = _compare(FUNCTION_CASES[name], _configurations(5, seed=1))
    assert energy_error <= 1e-12
    assert force_error <= 1e-12


def _random_expression(rng: np.random.Generator, depth: int, used: set[str]) -> str:
    """A random expression, every function wrapped so that its argument stays in its domain."""
    leaves = ["x", "y", "z", "a", "b", "g", "0.37", "1.5e-1", "2"]
    if depth == 0:
        return str(rng.choice(leaves))
    a = _random_expression(rng, depth - 1, used)
    b = _random_expression(rng, depth - 1, used)
    c = _random_expression(rng, depth - 1, used)
    t = f"tanh({a})"
    templates = {
        "sqrt": f"sqrt(1 + ({a})^2)",
        "exp": f"exp({t})",
        "log": f"log(2 + {t})",
        "sin": f"sin({a})",
        "cos": f"cos({a})",
        "sec": f"sec(0.6*{t})",
        "csc": f"csc(1.5 + 0.5*{t})",
        "tan": f"tan(0.7*{t})",
        "cot": f"cot(1 + 0.5*{t})",
        "asin": f"asin(0.9*{t})",
        "acos": f"acos(0.9*{t})",
        "atan": f"atan({a})",
        "atan2": f"atan2({a}, 2 + tanh({b}))",
        "sinh": f"sinh({t})",
        "cosh": f"cosh({t})",
        "tanh": t,
        "erf": f"erf({a})",
        "erfc": f"erfc({t})",
        "step": f"step({a})*({b})",
        "delta": f"delta({a})*({b}) + delta(floor({t}) + 2)",
        "square": f"square({t})",
        "cube": f"cube({t})",
        "recip": f"recip(2 + {t})",
        "min": f"min({a}, {b})",
        "max": f"max({a}, {b})",
        "abs": f"abs({a})",
        "floor": f"floor({a})*({b})",
        "ceil": f"ceil({a})*({b})",
        "select": f"select(step({a}), {b}, {c})",
        "+": f"({a}) + ({b})",
        "-": f"({a}) - ({b})",
        "*": f"({a})*({b})",
        "/": f"({a})/(2 + tanh({b}))",
        "^": f"(1 + ({a})^2)^(tanh({b}))",
        "neg": f"-({a})",
    }
    name = str(rng.choice(sorted(templates)))
    used.add(name)
    return templates[name]


def test_random_expressions_match_openmm():
    rng = np.random.default_rng(2024)
    used: set[str] = set()
    expressions = []
    while not set(STANDARD_FUNCTIONS) <= used or len(expressions) < 40:
        expressions.append(_random_expression(rng, depth=3, used=used))
        assert len(expressions) < 400
    # Joined in groups, with intermediate definitions, to keep the number of Contexts small.
    errors = []
    for k in range(0, len(expressions), 8):
        group = expressions[k:k + 8]
        text = " + ".join(f"e{i}" for i in range(len(group))) + "; " + "; ".join(
            f"e{i} = {e}" for i, e in enumerate(group)
        )
        errors.append(_compare(text, _configurations(4, seed=k)))
    errors = np.array(errors)
    assert errors[:, 0].max() <= 1e-10
    assert errors[:, 1].max() <= 1e-10


def test_float32_matches_openmm_to_single_precision():
    errors = np.array([_compare(text, _configurations(5, seed=3), torch.float32) for text in FUNCTION_CASES.values()])
    assert errors[:, 0].max() < 1e-5
    assert errors[:, 1].max() < 1e-4


def test_min_max_abs_derivatives_follow_lepton_at_ties():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    # Lepton: d min(x,y) = dy where x >= y; d max(x,y) = dx there; d|x|/dx = +1 at 0.
    (gx, gy) = torch.autograd.grad(parse("min(x, y)").evaluate({"x": x, "y": y}).sum(), (x, y))
    assert gx.tolist() == [0.0, 0.0] and gy.tolist() == [1.0, 1.0]
    (gx, gy) = torch.autograd.grad(parse("max(x, y)").evaluate({"x": x, "y": y}).sum(), (x, y))
    assert gx.tolist() == [1.0, 1.0] and gy.tolist() == [0.0, 0.0]
    (gx,) = torch.autograd.grad(parse("abs(x)").evaluate({"x": x}).sum(), (x,))
    assert gx.tolist() == [1.0, 1.0]


def test_evaluation_keeps_dtype_and_broadcasts():
    expr = parse("k*(r - r0)^2 + c; c = 0.5")
    r = torch.rand(3, 5, dtype=torch.float32)
    k = torch.rand(5, dtype=torch.float32)
    out = expr.evaluate({"r": r, "k": k, "r0": torch.tensor(0.1, dtype=torch.float32)})
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.allclose(out, k * (r - 0.1) ** 2 + 0.5)
    assert math.isclose(float(parse("3").evaluate({})), 3.0)


def test_compiles_with_torch_compile():
    expr = parse("select(step(r - 1), 0, k*sqrt(r)*erfc(r) + min(r, 0.5)^2); k = 2*g")

    def f(r, g):
        return expr.evaluate({"r": r, "g": g})

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    r = torch.linspace(0.1, 2.0, 11, dtype=torch.float64)
    g = torch.tensor(0.3, dtype=torch.float64)
    assert torch.allclose(compiled(r, g), f(r, g), rtol=1e-14, atol=0)


def test_symbolic_derivatives_match_autograd():
    # Forward (derivative) and reverse (with_gradient) symbolic differentiation, on every
    # function case and on random expressions, against autograd of the same program.
    rng = np.random.default_rng(5)
    used: set[str] = set()
    texts = list(FUNCTION_CASES.values()) + [_random_expression(rng, 3, used) for _ in range(30)]
    generator = torch.Generator().manual_seed(5)
    for text in texts:
        expr = parse(text)
        coordinates = {n: (0.7 * torch.randn(40, generator=generator, dtype=torch.float64)).requires_grad_(True) for n in "xyz"}
        constants = {n: torch.tensor(v, dtype=torch.float64) for n, v in (("a", 0.4), ("b", 1.3), ("g", 0.731))}
        value = expr.evaluate({**coordinates, **constants})
        grads = torch.autograd.grad(value.sum(), list(coordinates.values()), allow_unused=True) if value.requires_grad else [None] * 3
        plain = {**{n: v.detach() for n, v in coordinates.items()}, **constants}
        reverse = expr.with_gradient(list("xyz"))(plain)
        assert torch.equal(torch.broadcast_to(reverse[0], (40,)), torch.broadcast_to(value.detach(), (40,)))
        for name, grad, backward in zip("xyz", grads, reverse[1:]):
            expected = torch.zeros(40, dtype=torch.float64) if grad is None else grad
            forward = torch.broadcast_to(expr.derivative(name).evaluate(plain), (40,))
            scale = max(1.0, float(expected.abs().max()))
            assert float((forward - expected).abs().max()) <= 1e-12 * scale, (text, name)
            assert float((torch.broadcast_to(backward, (40,)) - expected).abs().max()) <= 1e-12 * scale, (text, name)


def test_custom_function_shadows_builtin_of_same_name():
    # As in Lepton, a declared custom function takes precedence over a built-in one.
    expr = parse("erf(x)*2", {"erf": 1})
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert torch.equal(expr.evaluate({"x": x}, {"erf": lambda t: t + 10}), (x + 10) * 2)
    (_, dx) = expr.with_gradient(["x"])({"x": x}, {"erf": lambda t: t + 10, "erf'0": torch.ones_like})
    assert torch.equal(dx, torch.full_like(x, 2.0))
