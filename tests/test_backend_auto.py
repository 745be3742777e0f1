"""``backend="auto"`` (the default): which executor runs, why, and that the choice is kept.

Real parts throughout: alanine dipeptide compiled from a real ``openmm.System``, real OpenMM
Contexts in the probe, real run folders resumed from a real checkpoint.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md import systems
from langevin_md.errors import ConfigError
from langevin_md.executors.backend_choice import choose_backend, openmm_equivalent
from langevin_md.integrators import BAOAB, HMC, ReplicaExchange
from langevin_md.run.build import build_sampler, check_config
from langevin_md.run.config import load_config, parse_config
from langevin_md.run.folder import create_run, load_run
from langevin_md.run.session import execute_run
from langevin_md.systems import Harmonic, TorchForceField

LONG = 10**6  # steps: a long run, where the probe's cost is negligible


@pytest.fixture(scope="module")
def alanine():
    return systems.alanine_dipeptide(solvent="vacuum", engine="torch")


def test_an_explicit_backend_always_wins(alanine):
    r = lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=3, n_walkers=2, backend="torch")
    assert r.metadata["backend"] == "torch" and r.metadata["backend_reason"] == "backend='torch' given"
    bridge = systems.alanine_dipeptide(solvent="vacuum", engine="openmm")
    r = lmd.sample(bridge, BAOAB(0.001, 1.0), n_steps=3, n_walkers=1, backend="openmm")
    assert r.metadata["backend"] == "openmm" and r.metadata["backend_reason"] == "backend='openmm' given"
    # An explicit "openmm" runs a torch force field as the openmm.System it was compiled from.
    r = lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=3, n_walkers=1, backend="openmm")
    assert r.metadata["backend"] == "openmm" and r.metadata["device"].startswith("openmm:")
    # A config whose molecule leaves the engine to the backend gets the OpenMM engine ...
    cfg = parse_config({"system": {"name": "alanine_dipeptide_vacuum"},
                        "integrator": {"name": "baoab", "timestep": 0.001, "friction": 1.0},
                        "sampler": {"backend": "openmm", "n_steps": 3, "n_walkers": 1}})
    sampler = build_sampler(cfg)
    assert sampler.backend == "openmm"
    assert sampler.system.openmm_system.getNumParticles() == 22
    # ... while one that pins engine = "torch" contradicts itself and is refused by name.
    cfg = parse_config({"system": {"name": "alanine_dipeptide_vacuum", "engine": "torch"},
                        "integrator": {"name": "baoab", "timestep": 0.001, "friction": 1.0},
                        "sampler": {"backend": "openmm", "n_steps": 3, "n_walkers": 1}})
    with pytest.raises(ConfigError, match='engine = "torch" cannot run with \\[sampler\\] backend = "openmm"'):
        build_sampler(cfg)
    with pytest.raises(ValueError, match="backend must be 'auto', 'torch' or 'openmm', got 'fast'"):
        lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=3, backend="fast")


def test_an_analytic_system_goes_to_torch_with_the_reason_in_metadata_and_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="langevin_md.executors"):
        r = lmd.sample(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_steps=5, n_walkers=3)
    reason = "Harmonic is not an OpenMM force field; only the torch executor runs it"
    assert r.metadata["backend"] == "torch" and r.metadata["backend_reason"] == reason
    assert f"backend='auto' chose torch: {reason}" in [rec.getMessage() for rec in caplog.records]
    # Even a run long enough to probe is never probed: the rule decides.
    assert choose_backend(Harmonic(dim=2), lmd.integrators.ULA(0.1), 1, LONG).reason == reason


def test_what_the_openmm_executor_cannot_run_goes_to_torch_with_the_reason(alanine):
    rex = ReplicaExchange(BAOAB(0.001, 1.0), ladder=(1.0, 1.5))
    assert "the OpenMM executor cannot run this scheme" in choose_backend(alanine, rex, 2, LONG).reason
    assert "HMC" in choose_backend(alanine, HMC(timestep=0.001, n_leapfrog=5), 1, LONG).reason
    assert choose_backend(alanine, BAOAB(0.001, 1.0), 1, LONG, ["device='cpu'"]).reason == \
        "device='cpu' applies to the torch executor only"
    # A force field that does not keep its openmm.System has no exact OpenMM twin.
    bare = TorchForceField(alanine.module, alanine.masses, alanine.temperature, alanine.topology,
                           alanine.positions)
    choice = choose_backend(bare, BAOAB(0.001, 1.0), 1, LONG)
    assert choice.backend == "torch" and "keeps no openmm.System" in choice.reason
    # Torch settings of the force field itself keep the run on torch.
    mixed = alanine.with_precision("mixed")
    assert choose_backend(mixed, BAOAB(0.001, 1.0), 1, LONG).reason == \
        "the force field was built with precision='mixed', a setting of the torch executor"
    assert "kernels='torch'" in choose_backend(alanine.with_kernels("torch"), BAOAB(0.001, 1.0), 1, LONG).reason


def test_the_probe_weighs_both_and_the_openmm_twin_is_the_same_system(alanine):
    alanine = systems.alanine_dipeptide(solvent="vacuum", engine="torch")  # no timings kept yet
    choice = choose_backend(alanine, BAOAB(0.001, 1.0), 1, LONG)
    assert choice.backend in ("torch", "openmm") and "(probe: torch " in choice.reason
    assert "probed earlier" not in choice.reason
    assert openmm_equivalent(alanine) is openmm_equivalent(alanine)  # one twin per force field
    # A second call on the same system and walkers reuses the timings: the same answer, no new probe.
    again = choose_backend(alanine, BAOAB(0.001, 1.0), 1, LONG)
    assert again.backend == choice.backend and "timings probed earlier in this process" in again.reason
    # Another walker count probes torch afresh; OpenMM's timings (one walker) are reused.
    other = choose_backend(alanine, BAOAB(0.001, 1.0), 2, LONG).reason
    assert "; OpenMM's timings probed earlier in this process" in other
    twin = openmm_equivalent(alanine)
    assert twin.openmm_system is alanine.source_openmm_system
    x = alanine.initial_positions(3) + 0.01 * torch.randn(3, 22, 3, generator=torch.Generator().manual_seed(0),
                                                             dtype=torch.float64)
    e_torch, _ = alanine.energy_and_forces(x)
    e_openmm, _ = twin.energy_and_forces(x)
    # The same System; OpenMM's platform may round in single precision (its "mixed" mode).
    np.testing.assert_allclose(e_openmm.numpy(), e_torch.numpy(), rtol=1e-5, atol=1e-3)


def test_a_run_folder_records_the_executor_used_and_resume_keeps_it(tmp_path):
    table = {"system": {"name": "harmonic", "dim": 2}, "integrator": {"name": "ula", "step_size": 0.1},
             "sampler": {"n_steps": 40, "n_walkers": 3, "record_every": 4, "checkpoint_every": 20}}
    cfg = parse_config(table)
    assert cfg.sampler["backend"] == "auto"   # the default
    check_config(cfg)
    assert cfg.sampler["backend"] == "torch" and "not an OpenMM force field" in cfg.backend_reason
    run_dir = create_run(cfg, tmp_path / "run")
    assert load_config(run_dir / "config.toml").sampler["backend"] == "torch"
    assert 'chose it: Harmonic is not an OpenMM force field' in (run_dir / "config.toml").read_text()
    execute_run(run_dir, progress=False, handle_signals=False)
    # A folder made without check_config still records its executor at the first start.
    raw = create_run(parse_config(table), tmp_path / "raw")
    assert 'backend = "auto"' in (raw / "config.toml").read_text()
    execute_run(raw, progress=False, handle_signals=False)
    assert load_config(raw / "config.toml").sampler["backend"] == "torch"
    # Extend the run: the resume reads the recorded executor and never decides again.
    for folder in (run_dir, raw):
        text = (folder / "config.toml").read_text()
        (folder / "config.toml").write_text(text.replace("n_steps = 40", "n_steps = 60"))
        execute_run(folder, progress=False, handle_signals=False)
        log = (folder / "run.log").read_text()
        assert log.count('backend = "auto" chose torch') == 1 and "resuming from" in log
    straight = lmd.sample(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_steps=60, n_walkers=3, record_every=4,
                          backend="torch")
    for folder in (run_dir, raw):
        result = load_run(folder)
        np.testing.assert_array_equal(result.positions, straight.positions)  # bitwise across the resume


def test_a_short_few_walker_molecular_run_goes_to_openmm_and_says_why(caplog):
    """Alanine dipeptide in vacuum, one walker, 200 steps: one OpenMM Context (~10 µs a step on
    the Reference platform) against the batched torch executor's per-step Python work
    (~100 µs for one walker): OpenMM, with the probe's numbers in the reason and the log.
    Not a timed assertion: the margin is about tenfold either way the machine is loaded, and
    a short run is no longer sent to torch unprobed."""
    alanine = systems.alanine_dipeptide(solvent="vacuum", temperature=300.0)  # the default engine: torch
    assert isinstance(alanine, TorchForceField)
    with caplog.at_level(logging.INFO, logger="langevin_md.executors"):
        r = lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=200, n_walkers=1, record_every=10)
    assert r.metadata["backend"] == "openmm" and r.metadata["device"] == "openmm:Reference"
    reason = r.metadata["backend_reason"]
    assert reason.startswith("OpenMM is faster here (probe: ") and "per Context" in reason
    assert f"backend='auto' chose openmm: {reason}" in [rec.getMessage() for rec in caplog.records]
    assert r.positions.shape == (20, 1, 22, 3) and np.isfinite(r.energies).all()
    # The second call reuses the OpenMM probe (and torch's, unless the first call cut it short:
    # a cold process's first torch step can outlast this whole OpenMM run), the same executor.
    again = lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=200, n_walkers=1, record_every=10)
    assert again.metadata["backend"] == "openmm"
    assert "timings probed earlier in this process" in again.metadata["backend_reason"]
    # The same seed on the same executor: bitwise the same run (OpenMM Reference).
    np.testing.assert_array_equal(again.positions, r.positions)
    # An explicit backend="torch" still wins, with no probe.
    t = lmd.sample(alanine, BAOAB(0.001, 1.0), n_steps=20, n_walkers=1, record_every=10, backend="torch")
    assert t.metadata["backend"] == "torch" and t.metadata["backend_reason"] == "backend='torch' given"


def test_a_system_without_an_openmm_twin_goes_to_torch_even_for_one_walker():
    alanine = systems.alanine_dipeptide(solvent="vacuum", engine="torch")
    bare = TorchForceField(alanine.module, alanine.masses, alanine.temperature, alanine.topology,
                           alanine.positions)
    r = lmd.sample(bare, BAOAB(0.001, 1.0), n_steps=20, n_walkers=1, record_every=10)
    assert r.metadata["backend"] == "torch" and "keeps no openmm.System" in r.metadata["backend_reason"]


def test_the_torch_probe_stops_after_one_step_when_that_decides():
    from langevin_md.executors.backend_choice import probe_torch

    ula = lmd.integrators.ULA(0.1)
    # Timed in full: seconds per step, and the set-up plus first step.
    t_step, t_first = probe_torch(Harmonic(dim=2), ula, 4, seed=0)
    assert t_step > 0 and t_first > 0
    # Any set-up outlasts a zero budget: stop (the other executor wins).
    assert probe_torch(Harmonic(dim=2), ula, 4, seed=0, budget=0.0)[0] is None
    # With no limit on the other side, even n_steps times the first step is within it: stop.
    assert probe_torch(Harmonic(dim=2), ula, 4, seed=0, n_steps=10)[0] is None


def test_a_scheme_openmm_cannot_constrain_is_left_to_torch_which_names_the_problem():
    hbonds = systems.alanine_dipeptide(solvent="vacuum", constraints="HBonds", engine="openmm")
    choice = choose_backend(hbonds, lmd.integrators.ULA(1e-7), 1, LONG)
    assert choice.backend == "torch" and "cannot run on a system with constraints" in choice.reason
    with pytest.raises(ValueError, match="BAOAB"):
        lmd.sample(hbonds, lmd.integrators.ULA(1e-7), n_steps=1)
