"""Expression and unit parsers are bounded in depth and length: a clear error, never RecursionError.

Routes: the custom-force expression parser (directly, and through a saved force field whose
header holds a crafted expression), unit text (directly, and as config text through the CLI
in a subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from langevin_md.forcefield.expression import parse
from langevin_md.units import parse_quantity

DEEP = 3000

_HOSTILE_EXPRESSIONS = {
    "parentheses": "(" * DEEP + "x" + ")" * DEEP,
    "functions": "sin(" * DEEP + "x" + ")" * DEEP,
    "unary_minus": "-" * DEEP + "x",
    "power_chain": "^".join(["x"] * DEEP),
    "definitions": "x0;" + ";".join(f"x{i}=x{i + 1}+1" for i in range(DEEP)),
}


@pytest.mark.parametrize("name", sorted(_HOSTILE_EXPRESSIONS))
def test_deep_expression_is_refused_with_a_clear_error(name):
    text = _HOSTILE_EXPRESSIONS[name]
    with pytest.raises(ValueError, match="cannot parse expression.*nested more than 200 levels deep") as info:
        e = parse(text)
        e.derivative("x" if name != "definitions" else f"x{DEEP}")  # where the recursion used to escape
    assert len(str(info.value)) < 1000  # the message quotes the text shortened


def test_expression_length_is_bounded_and_real_nesting_still_parses():
    with pytest.raises(ValueError, match="characters long"):
        parse("+".join(["x"] * 150_000))
    e = parse("(" * 150 + "x" + ")" * 150 + "+ sin(cos(y))^2")
    assert e.derivative("x") is not None


FORMAT = "langevin_md.forcefield"


def test_saved_force_field_with_a_deep_expression_names_the_file(tmp_path):
    openmm = pytest.importorskip("openmm")
    import numpy as np

    from langevin_md.systems.torch_forcefield import TorchForceField, load_forcefield

    system = openmm.System()
    for _ in range(2):
        system.addParticle(12.0)
    bond = openmm.CustomBondForce("k*r^2")
    bond.addGlobalParameter("k", 10.0)
    bond.addBond(0, 1)
    system.addForce(bond)
    ff = TorchForceField.from_openmm(system, None, np.array([[0, 0, 0], [0.1, 0, 0]], float), 300.0)
    good = tmp_path / "good.safetensors"
    ff.save(good)
    with safe_open(str(good), framework="pt") as f:
        header = json.loads(f.metadata()[FORMAT])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    k = next(i for i, t in enumerate(header["terms"]) if "expression" in t["spec"])
    header["terms"][k]["spec"]["expression"] = "(" * DEEP + "k*r^2" + ")" * DEEP
    evil = tmp_path / "evil.safetensors"
    save_file(tensors, str(evil), metadata={FORMAT: json.dumps(header)})
    with pytest.raises(ValueError, match=rf"evil\.safetensors.*terms\[{k}\].*nested more than 200 levels"):
        load_forcefield(evil)
    load_forcefield(good)


@pytest.mark.parametrize("text", ["2 " + "(" * DEEP + "fs" + ")" * DEEP, "2 " + "(" * 30 + "fs" + ")" * 30,
                                  "2 " + "fs*" * 600 + "fs"])
def test_deep_or_long_unit_text_is_refused(text):
    with pytest.raises(ValueError, match="levels deep|characters long"):
        parse_quantity(text)


def test_cli_config_with_deep_unit_text_names_the_key(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text(f"""\
[system]
name = "muller_brown"
kT = 20.0

[integrator]
name = "brownian"
timestep = "2 {'(' * DEEP}fs{')' * DEEP}"

[sampler]
n_steps = 10
n_walkers = 2
record_every = 5
seed = 3
""")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "langevin_md.cli", "run", str(config), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    err = proc.stderr
    assert "timestep" in err and ("levels deep" in err or "characters long" in err), err[-3000:]
    assert "RecursionError" not in err and "unexpected" not in err.lower(), err[-3000:]
    assert not (tmp_path / "run").exists()
