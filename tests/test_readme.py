"""Every ```python block of README.md runs as written, and the public API resolves as shown.

Rules (each block runs in a fresh interpreter: a subprocess with its working directory a new
temporary folder, ``MPLBACKEND=Agg``, this checkout first on ``PYTHONPATH``):

* ``import langevin_md as lmd`` is the README's convention (the first line of its first
  block), so it is put in front of every block.
* A block that reads a name it does not define (found with :mod:`ast`: loaded, never bound,
  not a builtin) is joined with the nearest earlier blocks that bind it, in README order; a
  block that only makes sense after a previous one therefore runs after it. A name no earlier
  block binds is a README bug and fails the test.
* A block that reads a run folder (``lmd.load_run("runs/mb")``) is given one: the test first
  runs the README's own command ``langevin-md run examples/configs/muller_brown.toml --output
  runs/mb`` on a copy of that config with ``n_steps`` cut to 200 (the block only loads it).
* A block that submits jobs to a batch scheduler (``dask_jobqueue``) needs SLURM or PBS and is
  skipped, saying so.

Blocks are kept to modest but realistic sizes in the README itself (seconds each), never
special-cased here.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import langevin_md as lmd

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PRELUDE = "import langevin_md as lmd\n"
# ```python fences, also indented ones inside list items; the body is dedented by the fence's indent.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[int, str]]:
    """``(line number, source)`` of every ```python block of README.md, in order."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m.group("body").splitlines(keepends=True))
        blocks.append((text.count("\n", 0, m.start()) + 1, body))
    return blocks


def bound_and_free(source: str) -> tuple[set, set]:
    """Names a block binds, and names it reads without binding (builtins excluded)."""
    tree = ast.parse(source)
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else loaded).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, loaded - bound - set(dir(builtins)) - {"lmd"}


def program(index: int, blocks: list[tuple[int, str]]) -> str:
    """Block ``index`` joined with the earlier blocks that bind the names it reads."""
    chosen = {index}
    _, free = bound_and_free(blocks[index][1])
    for j in range(index - 1, -1, -1):
        if not free:
            break
        bound, free_j = bound_and_free(blocks[j][1])
        if bound & free:
            chosen.add(j)
            free = (free - bound) | free_j
    assert not free, (f"README.md line {blocks[index][0]}: {sorted(free)} used but defined by no "
                      "earlier ```python block")
    return PRELUDE + "\n".join(blocks[j][1] for j in sorted(chosen))


def run_python(code: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def make_run_folder(cwd: Path) -> None:
    """``runs/mb`` from the README's config with 200 production steps (see the module docstring)."""
    text = (ROOT / "examples" / "configs" / "muller_brown.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^n_steps = \d+", "n_steps = 200", text)
    text = re.sub(r"(?m)^burn_in = \d+", "burn_in = 100", text)
    text = re.sub(r"(?m)^checkpoint_every = \d+", "checkpoint_every = 100", text)
    (cwd / "muller_brown.toml").write_text(text, encoding="utf-8")
    done = run_python("from langevin_md.cli import main; import sys; sys.exit(main(['run', "
                      "'muller_brown.toml', '--output', 'runs/mb']))", cwd)
    assert done.returncode == 0, done.stderr[-3000:]


BLOCKS = readme_blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5  # the extraction itself works (a broken regex would pass vacuously)
    assert BLOCKS[0][1].startswith(PRELUDE)  # the convention the prelude relies on


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(index, tmp_path):
    line, source = BLOCKS[index]
    if "dask_jobqueue" in source:
        pytest.skip(f"README.md line {line} submits jobs to a SLURM/PBS scheduler")
    code = program(index, BLOCKS)
    if "load_run(" in code:
        make_run_folder(tmp_path)
    done = run_python(code, tmp_path)
    assert done.returncode == 0, f"README.md line {line}:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"


def test_program_joins_the_block_that_defines_a_name():
    blocks = [(1, "import langevin_md as lmd\nx = 1\n"), (5, "y = 2\n"), (9, "print(x + lmd.__version__.count('.'))\n")]
    code = program(2, blocks)
    assert "x = 1" in code and "y = 2" not in code
    with pytest.raises(AssertionError, match="'z'"):
        program(0, [(1, "print(z)\n")])


# --------------------------------------------------------------------------- the public API
def test_every_public_name_resolves():
    for name in lmd.__all__:
        assert getattr(lmd, name) is not None, name
    assert set(lmd.__all__) <= set(dir(lmd))


def test_minimize_and_compare_are_the_functions_in_a_fresh_interpreter(tmp_path):
    # As the README calls them: lmd.minimize(system, positions) and lmd.compare(...), with the
    # submodules imported first (any internal import binds them to the package's attribute).
    code = PRELUDE + (
        "import types\n"
        "import langevin_md.minimize, langevin_md.compare\n"
        "assert isinstance(lmd.analysis, types.ModuleType)\n"
        "assert isinstance(lmd.integrators, types.ModuleType)\n"
        "assert isinstance(lmd.systems, types.ModuleType)\n"
        "system = lmd.systems.Harmonic(dim=2, k=1.0, kT=1.0)\n"
        "m = lmd.minimize(system, [[1.0, -2.0], [0.5, 0.5]])\n"
        "assert type(m).__name__ == 'Minimization', type(m)\n"
        "assert abs(m.positions).max() < 1e-3, m.positions\n"
        "from langevin_md.integrators import MALA, ULA\n"
        "table = lmd.compare(system, {'ULA': ULA(step_size=0.05), 'MALA': MALA(step_size=0.3)},\n"
        "                    n_force_evals=200, n_walkers=8, seed=0)\n"
        "print(table)\n")
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MALA" in done.stdout


def test_public_functions_are_callable():
    import langevin_md.compare  # noqa: F401  (binds the submodule, as internal imports do)
    import langevin_md.minimize  # noqa: F401

    assert callable(lmd.minimize) and not isinstance(lmd.minimize, types.ModuleType)
    assert callable(lmd.compare) and not isinstance(lmd.compare, types.ModuleType)
    assert lmd.minimize is sys.modules["langevin_md.minimize"].minimize
    assert lmd.compare is sys.modules["langevin_md.compare"].compare
