"""Config files for run-folder tests of the OpenMM executor (alanine dipeptide, HBonds)."""

from __future__ import annotations

from pathlib import Path

ALANINE_OPENMM = """\
[system]
name = "alanine_dipeptide_vacuum"
platform = "Reference"
constraints = "HBonds"

[integrator]
name = "baoab"
timestep = 0.002
friction = 1.0

[sampler]
backend = "openmm"
n_steps = {n_steps}
n_walkers = {n_walkers}
record_every = {record_every}
seed = 11
checkpoint_every = {checkpoint_every}
burn_in = {burn_in}
{extra}
"""


def write_alanine_config(folder, name: str = "ala.toml", n_steps: int = 1000, n_walkers: int = 2,
                         record_every: int = 10, checkpoint_every: int = 500, burn_in: int = 0,
                         extra: str = "") -> Path:
    path = Path(folder) / name
    path.write_text(ALANINE_OPENMM.format(n_steps=n_steps, n_walkers=n_walkers, record_every=record_every,
                                          checkpoint_every=checkpoint_every, burn_in=burn_in, extra=extra))
    return path
