"""Smoke tests: every example runs end to end with --quick, as a user would run it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name, *args, cwd):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_learned_energy_mixture(tmp_path):
    out = run("learned_energy_mixture.py", cwd=tmp_path)
    assert "total variation" in out


def test_annealed_modes(tmp_path):
    out = run("annealed_modes.py", cwd=tmp_path)
    assert "ULA (exact score)" in out and "annealed Langevin" in out


def test_sgld_posterior(tmp_path):
    out = run("sgld_posterior.py", cwd=tmp_path)
    assert "exact mean" in out


def test_tomography(tmp_path):
    out = run("tomography.py", "--output", str(tmp_path / "t.png"), cwd=tmp_path)
    assert (tmp_path / "t.png").stat().st_size > 0 and "posterior mean" in out


def test_alanine_prior(tmp_path):
    pytest.importorskip("openmm")
    out = run("alanine_prior.py", "--output", str(tmp_path / "a.png"), cwd=tmp_path)
    assert (tmp_path / "a.png").stat().st_size > 0 and "alpha_R" in out


def test_tempering_alanine(tmp_path):
    out = run("tempering_alanine.py", "--output", str(tmp_path / "rex"), cwd=tmp_path)
    assert (tmp_path / "rex" / "swap_acceptance.png").stat().st_size > 0 and "R-hat" in out
    assert "MBAR, all rungs" in out
    for png in ("free_energy_surface.png", "implied_timescales.png"):
        assert (tmp_path / "rex" / png).stat().st_size > 0


def test_cg_alanine(tmp_path):
    pytest.importorskip("openmm")
    out = run("cg_alanine.py", "--output", str(tmp_path / "cg"), cwd=tmp_path)
    assert "JS divergence" in out and "walker-steps/s" in out and "αR" in out
    assert (tmp_path / "cg" / "fes_cg_vs_all_atom.png").stat().st_size > 0
    assert (tmp_path / "cg" / "cg_alanine.safetensors").stat().st_size > 0
