"""Shared pieces of the run-folder tests: config files and the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

MB_CONFIG = """\
[system]
name = "muller_brown"
kT = 20.0

[integrator]
name = "{integrator}"
{integrator_keys}

[sampler]
n_steps = {n_steps}
n_walkers = {n_walkers}
record_every = {record_every}
seed = 3
checkpoint_every = {checkpoint_every}
burn_in = {burn_in}
"""


def write_config(folder: Path, name: str = "mb.toml", integrator: str = "mala",
                 integrator_keys: str = "step_size = 1e-4", n_steps: int = 2000, n_walkers: int = 8,
                 record_every: int = 10, checkpoint_every: int = 500, burn_in: int = 0) -> Path:
    path = Path(folder) / name
    path.write_text(MB_CONFIG.format(integrator=integrator, integrator_keys=integrator_keys,
                                     n_steps=n_steps, n_walkers=n_walkers, record_every=record_every,
                                     checkpoint_every=checkpoint_every, burn_in=burn_in))
    return path


def cli_command() -> list[str]:
    """The installed ``langevin-md`` console script (``python -m langevin_md.cli`` if absent)."""
    script = Path(sys.executable).with_name("langevin-md")
    return [str(script)] if script.exists() else [sys.executable, "-m", "langevin_md.cli"]


def run_cli(*args, check_rc=None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cli_command() + [str(a) for a in args], capture_output=True, text=True,
                          env=env, timeout=120, **kwargs)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def trajectory_arrays(run_dir: Path) -> dict:
    """Every dataset of a run's trajectory file (read as SWMR so killed writers' files open)."""
    with h5py.File(Path(run_dir) / "trajectory.h5", "r", swmr=True) as f:
        return {k: f[k][:] for k in f.keys() if isinstance(f[k], h5py.Dataset) and k != "topology"}


def assert_same_trajectory(a: Path, b: Path) -> None:
    ta, tb = trajectory_arrays(a), trajectory_arrays(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype, k
        assert ta[k].shape == tb[k].shape, (k, ta[k].shape, tb[k].shape)
        assert np.array_equal(ta[k], tb[k]), k  # bitwise, not approximately
