"""Smoke test: examples/compare_mixture.py runs end to end with --quick, as a user would run it."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_compare_mixture(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "compare_mixture.py"), "--quick", "--output-dir",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, f"compare_mixture.py failed:\n{proc.stdout}\n{proc.stderr}"
    for name in ("mixture_1d", "mixture_2d", "dice_box"):
        assert f"== {name}" in proc.stdout and (tmp_path / f"compare_{name}.csv").stat().st_size > 0
    assert "verdict" in proc.stdout and (tmp_path / "step_size_sweep.png").stat().st_size > 0
    assert "RuntimeWarning" not in proc.stderr
