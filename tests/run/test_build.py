"""langevin_md.run.build: each object built once, from the objects it is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from langevin_md.errors import ConfigError
from langevin_md.executors import Sampler
from langevin_md.executors.openmm import OpenMMSampler
from langevin_md.integrators import MALA
from langevin_md.run import build
from langevin_md.run.config import RunConfig, parse_config

REPO = Path(__file__).resolve().parents[2]

CONFIG = {"system": {"name": "harmonic", "dim": 2},
          "integrator": {"name": "mala", "step_size": 0.25},
          "sampler": {"n_steps": 20, "n_walkers": 3, "record_every": 2}}


def test_build_sampler_uses_the_integrator_it_is_given():
    cfg = parse_config(CONFIG)
    system = build.build_system(cfg)
    integrator = MALA(step_size=0.125)  # not the config's: the executor must hold this very object
    sampler = build.build_sampler(cfg, system, integrator)
    assert sampler.integrator is integrator
    assert sampler.system is system
    # Without one, the config's integrator is built (the known-wrong outcome above would be this).
    assert build.build_sampler(cfg, system).integrator == MALA(step_size=0.25)


def test_run_config_is_plain_data():
    assert not [name for name in vars(RunConfig) if name.startswith("build_") or name in ("validate",
                                                                                       "minimized_start")]


def test_each_executor_declares_its_options():
    assert set(OpenMMSampler.OPTIONS) < set(Sampler.OPTIONS)
    assert "compile" in Sampler.OPTIONS and "compile" not in OpenMMSampler.OPTIONS


def test_probe_catches_a_bad_minimize_section():
    cfg = parse_config(dict(CONFIG, minimize={"method": "openmm"}))
    with pytest.raises(ConfigError, match=r"\[minimize\].*method='openmm' needs an OpenMM-backed system"):
        build.check_config(cfg)
    build.check_config(parse_config(dict(CONFIG, minimize={"method": "lbfgs"})))  # a good one passes


def test_cli_refuses_a_bad_minimize_section_before_a_folder_exists(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[system]\nname = "harmonic"\ndim = 2\n\n[integrator]\nname = "mala"\nstep_size = 0.25\n\n'
                      '[sampler]\nn_steps = 20\nn_walkers = 3\nrecord_every = 2\n\n[minimize]\nmethod = "openmm"\n')
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "langevin_md.cli", "run", str(config), "--output", str(run_dir),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "[minimize]" in proc.stderr and "method='openmm'" in proc.stderr
    assert not run_dir.exists()
