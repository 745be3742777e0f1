"""`langevin-md systems` answers from a static table that cannot drift from the real systems."""

import inspect
import json
import subprocess
import sys

import pytest

from langevin_md.run.config import parameters, system_choices
from langevin_md.system_table import REQUIRED, SYSTEMS

HEAVY = ("torch", "scipy", "openmm", "numpy", "mdtraj")


def _same(a, b) -> bool:
    """Equal and of the same type, recursively (1 and 1.0, or a list and a tuple, differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_table_lists_exactly_the_systems_config_builds():
    real = system_choices()
    assert list(SYSTEMS) == list(real)


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_table_entry_agrees_with_the_constructor(name):
    entry, choice = SYSTEMS[name], system_choices()[name]
    assert entry.kind == choice.kind
    assert entry.description == choice.description
    real = [(p.name, REQUIRED if p.default is inspect.Parameter.empty else p.default)
            for p in parameters(choice.factory).values()]
    assert [a for a, _ in entry.arguments] == [a for a, _ in real]
    for (arg, listed), (_, actual) in zip(entry.arguments, real):
        assert _same(listed, actual), f"{name}.{arg}: table says {listed!r}, the constructor {actual!r}"


def test_comparison_notices_a_drifted_default():
    # The helper above must tell a changed default apart, or the agreement test proves nothing.
    assert not _same(1, 1.0)
    assert not _same(("a", "b"), ["a", "b"])
    assert not _same(("amber14-all.xml",), ("amber14-all.xml", "implicit/obc2.xml"))
    assert _same(("a", None), ("a", None))


# A fresh interpreter runs the command line's main and reports what it imported.
_PROBE = """
import io, json, sys, contextlib
from langevin_md.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help exits through argparse
        code = exc.code
print(json.dumps({"code": code, "stdout": out.getvalue(),
                  "modules": sorted(m for m in sys.modules if m.split('.')[0] in %r)}))
""" % (HEAVY,)


def _probe(*argv):
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("systems",), ("systems", "-v"), ("--help",)])
def test_listing_and_help_import_nothing_heavy(argv):
    report = _probe(*argv)
    assert report["code"] == 0
    assert report["modules"] == [], f"`langevin-md {' '.join(argv)}` imported {report['modules']}"


def test_probe_sees_heavy_imports():
    # The probe must be able to fail: a command that does import torch is reported.
    done = subprocess.run([sys.executable, "-c", "import langevin_md.integrators;" + _PROBE, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert "torch" in json.loads(done.stdout.strip().splitlines()[-1])["modules"]


def test_verbose_listing_shows_every_argument_and_default():
    out = _probe("systems", "-v")["stdout"]
    assert "analytic systems:" in out and "molecular systems:" in out
    for name, entry in SYSTEMS.items():
        assert f"  {name} " in out
        for arg, default in entry.arguments:
            shown = "(required)" if default is REQUIRED else f"= {default!r}"
            assert f"      {arg} {shown}" in out
    assert "      means (required)" in out
    assert "      forcefield = ('amber14-all.xml', 'implicit/obc2.xml')" in out


def test_module_entry_point_lists_systems():
    done = subprocess.run([sys.executable, "-m", "langevin_md.cli", "systems"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "muller_brown" in done.stdout and "alanine_dipeptide_vacuum" in done.stdout
