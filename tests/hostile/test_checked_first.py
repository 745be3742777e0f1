"""Everything is checked before anything is created, and every CLI path reports
``langevin-md: error: ...`` (never a traceback).

The CLI runs in-process here (``langevin_md.cli.main``): an uncaught exception would fail the
test with its traceback, so a passing test shows the user sees only the one-line error.
"""

from __future__ import annotations

import numpy as np
import pytest

from langevin_md import cli
from langevin_md.run.config import SEED_LIMIT, ConfigError, load_config
from langevin_md.run.folder import create_run
from tests.hostile.support import finished_run, write_config

BASE = {"integrator": "mala", "integrator_keys": "step_size = 1e-4", "n_steps": 100, "n_walkers": 2,
        "record_every": 10, "checkpoint_every": 50}


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _config(tmp_path, replace: tuple = (), **settings):
    path = write_config(tmp_path, **{**BASE, **settings})
    text = path.read_text()
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.mark.parametrize("replace, words", [
    (("step_size = 1e-4", 'step_size = "1e-4"'), ["step_size", "number", "'1e-4'"]),
    (("kT = 20.0", "kT = true"), ["kT", "True"]),
    (("n_walkers = 2", "n_walkers = 1e9"), ["n_walkers", "integer", "1000000000.0"]),
    (("n_walkers = 2", "n_walkers = true"), ["n_walkers", "integer"]),
    (("seed = 3", f"seed = {SEED_LIMIT}"), ["seed", "2**64", str(SEED_LIMIT)]),
    (("seed = 3", "seed = -1"), ["seed", "non-negative"]),
    (("checkpoint_every = 50", "checkpoint_every = 0"), ["checkpoint_every", "positive"]),
    (("record_every = 10", "record_every = 500"), ["record_every = 500", "n_steps = 100", "0 frames"]),
    (("burn_in = 0", "burn_in = -5"), ["burn_in"]),
    (("seed = 3", 'seed = 3\ndevice = "tpu"'), ["device", "'tpu'"]),
    (("seed = 3", 'seed = 3\ndtype = "float16"'), ["dtype", "'float16'"]),
    (("n_walkers = 2", "n_walkers = 1000000000000"), ["n_walkers = 1000000000000", "GiB", "available"]),
])
def test_bad_settings_are_refused_by_name_before_the_run_folder_exists(tmp_path, capsys, replace, words):
    config = _config(tmp_path, (replace,))
    code, err = _main(capsys, "run", config, "-o", tmp_path / "run")
    assert code == 2, err
    assert err.startswith("langevin-md: error:")
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "run").exists()


def test_the_largest_seed_is_accepted(tmp_path):
    cfg = load_config(_config(tmp_path, (("seed = 3", f"seed = {SEED_LIMIT - 1}"),)))
    assert cfg.sampler["seed"] == SEED_LIMIT - 1


def test_missing_structure_file_is_reported_before_the_run_folder_exists(tmp_path, capsys):
    pytest.importorskip("openmm")
    (tmp_path / "c.toml").write_text('[system]\nname = "openmm_pdb"\npdb_path = "missing.pdb"\n'
                                     '[integrator]\nname = "baoab"\n[sampler]\nn_steps = 10\n')
    code, err = _main(capsys, "run", tmp_path / "c.toml", "-o", tmp_path / "run")
    assert code == 2 and err.startswith("langevin-md: error:") and "missing.pdb does not exist" in err
    assert not (tmp_path / "run").exists()


def test_missing_force_field_file_is_reported_before_the_run_folder_exists(tmp_path, capsys):
    pytest.importorskip("openmm")
    from langevin_md.run.config import toml_value
    from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB

    (tmp_path / "c.toml").write_text(f'[system]\nname = "openmm_pdb"\npdb_path = {toml_value(ALANINE_DIPEPTIDE_PDB)}\n'
                                     'forcefield = ["amber14-all.xml", "mine.xml"]\n'
                                     '[integrator]\nname = "baoab"\n[sampler]\nn_steps = 10\n')
    code, err = _main(capsys, "run", tmp_path / "c.toml", "-o", tmp_path / "run")
    assert code == 2 and err.startswith("langevin-md: error:") and "mine.xml" in err
    assert "neither a file beside the config" in err and not (tmp_path / "run").exists()


def test_a_folder_given_as_config(tmp_path, capsys):
    (tmp_path / "cfg.toml").mkdir()
    for argv in (("run", tmp_path / "cfg.toml"), ("train", tmp_path / "cfg.toml"), ("train", tmp_path)):
        code, err = _main(capsys, *argv)
        assert code == 2 and err.startswith("langevin-md: error:"), err


@pytest.mark.parametrize("text, words", [
    ("[data\n", ["not valid TOML"]),
    ('[data]\nsamples = 3\n[schedule]\nsigma_max = 1.0\nsigma_min = 0.1\n[output]\ndir = "m"\n', ["samples"]),
    ('[data]\nsamples = "none.npy"\n[schedule]\nsigma_max = 1.0\nsigma_min = 0.1\n[output]\ndir = "m"\n',
     ["none.npy", "does not exist"]),
    ('[data]\nsamples = "s.npy"\n[schedule]\nsigma_max = "1"\nsigma_min = 0.1\n[output]\ndir = "m"\n',
     ["sigma_max", "wrong type"]),
    ('[data]\nsamples = "obj.npy"\n[schedule]\nsigma_max = 1.0\nsigma_min = 0.1\n[output]\ndir = "m"\n',
     ["unpickling", "refused"]),
    ('[bogus]\nx = 1\n', ["unknown section"]),
])
def test_train_config_errors_are_one_line(tmp_path, capsys, text, words):
    np.save(tmp_path / "s.npy", np.zeros((10, 2)))
    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "t.toml").write_text(text)
    code, err = _main(capsys, "train", tmp_path / "t.toml")
    assert code == 2 and err.startswith("langevin-md: error:"), err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "m").exists()


def test_analyze_and_export_of_empty_missing_and_diverged_runs(tmp_path, capsys):
    empty = create_run(load_config(_config(tmp_path)), tmp_path / "empty")  # never ran
    for argv in (("analyze", empty), ("export", empty, "-f", "extxyz"), ("analyze", tmp_path / "nope"),
                 ("export", tmp_path / "nope")):
        code, err = _main(capsys, *argv)
        assert code in (1, 2) and err.startswith("langevin-md: error:"), (argv, err)
    diverged = write_config(tmp_path, name="nan.toml", integrator="ula", integrator_keys="step_size = 10.0",
                            n_steps=1000, checkpoint_every=10, record_every=1)
    code, err = _main(capsys, "run", diverged, "-o", tmp_path / "nan", "--no-progress")
    assert code == 3
    code, err = _main(capsys, "analyze", tmp_path / "nan")
    assert code in (0, 1) and ("Traceback" not in err)
    if code:
        assert err.startswith("langevin-md: error:")


def test_resume_of_a_run_whose_config_now_holds_a_bad_value(tmp_path, capsys):
    run_dir = finished_run(tmp_path, n_steps=100, n_walkers=2, record_every=10, checkpoint_every=50)
    text = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(text.replace("checkpoint_every = 50", "checkpoint_every = 0"))
    code, err = _main(capsys, "resume", run_dir)
    assert code == 2 and err.startswith("langevin-md: error:") and "checkpoint_every" in err


def test_openmm_quantities_are_converted_not_stripped():
    unit = pytest.importorskip("openmm.unit")
    from langevin_md.executors.start import start_positions
    from langevin_md.systems.harmonic import Harmonic

    x0 = start_positions(Harmonic(dim=3), unit.Quantity([10.0, 20.0, 30.0], unit.angstrom), 2, None)
    np.testing.assert_allclose(x0.numpy(), [[1.0, 2.0, 3.0]] * 2)


def test_config_errors_from_the_api_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="step_size"):
        load_config(_config(tmp_path, (("step_size = 1e-4", "step_size = false"),)))
