"""The force-field compiler is a pure floor: importing it loads no upper package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPPER = ("systems", "integrators", "executors", "io", "run", "analysis", "compare", "cli", "config")


def test_importing_the_compiler_loads_no_upper_floor():
    # A fresh interpreter: in this one, other tests have imported everything already.
    code = ("import sys, langevin_md.forcefield, langevin_md.forcefield.build\n"
            "from langevin_md.forcefield import custom\n"
            f"upper = {UPPER!r}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2][-1] in upper and m.startswith('langevin_md.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_torch_forcefield_is_a_system_exported_by_systems():
    import langevin_md.forcefield as forcefield
    from langevin_md.systems import System, TorchForceField, load_forcefield
    from langevin_md.systems.torch_forcefield import TorchForceField as direct

    assert TorchForceField is direct and issubclass(TorchForceField, System)
    assert load_forcefield.__module__ == "langevin_md.systems.torch_forcefield"
    assert not hasattr(forcefield, "TorchForceField")
