"""`langevin-md train`: every fit option is a config key; the run reports epochs, losses, paths."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from langevin_md import cli

pytest.importorskip("torch")

CONFIG = """\
[data]
samples = "samples.npy"

[model]
type = "energy"
hidden = 16
layers = 2

[schedule]
sigma_max = 1.0
sigma_min = 0.1
n_sigmas = 4

[training]
epochs = 4
batch_size = 64
learning_rate = 1e-3
learning_rate_schedule = "cosine"
validation_fraction = 0.25
patience = 10
seed = 1
progress = false

[output]
dir = "model"
"""


def test_every_fit_option_is_a_config_key():
    from langevin_md.training import fit
    from langevin_md.training.config import config_keys

    # The data, the model, the noise levels and the file are given by [data], [model],
    # [schedule] and [output] (the loss curve goes to the output folder); progress lines go to
    # stderr; everything else fit takes is a [training] key.
    options = set(inspect.signature(fit).parameters) - {"model", "samples", "sigmas", "checkpoint", "loss_curve",
                                                        "stream", "on_epoch"}
    assert options == set(config_keys("training"))


def test_train_prints_losses_and_where_the_model_went(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "samples.npy", rng.normal(size=(256, 2)))
    (tmp_path / "train.toml").write_text(CONFIG)
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 0
    err = capsys.readouterr().err
    assert "epoch    train loss  validation loss" in err
    assert "4 epochs, ran every epoch" in err and "<- best" in err
    model = tmp_path / "model" / "model.safetensors"
    assert f"saved to {model}" in err and model.is_file()
    report = json.loads((tmp_path / "model" / "training.json").read_text())
    assert report["settings"]["training"]["learning_rate_schedule"] == "cosine"
    assert len(report["train_loss"]) == 4


def test_bad_schedule_and_help(tmp_path, capsys):
    np.save(tmp_path / "samples.npy", np.zeros((64, 2)))
    (tmp_path / "train.toml").write_text(CONFIG.replace('"cosine"', '"linear"'))
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 2
    assert "learning_rate_schedule must be 'cosine' or 'constant', got 'linear'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for key in ("[data]", "[schedule]", "learning_rate_schedule", "patience", "[output]"):
        assert key in text


def test_a_train_subprocess_off_a_terminal_prints_progress_before_it_ends(tmp_path):
    # Issue 24: `langevin-md train` with its output in a file printed nothing for 20 minutes.
    import os
    import subprocess
    import time

    from tests.io.helpers import cli_command

    np.save(tmp_path / "samples.npy", np.random.default_rng(0).normal(size=(64, 2)))
    config = (CONFIG.replace("epochs = 4", "epochs = 1000000").replace("patience = 10", "patience = 1000000")
              .replace("progress = false\n", "").replace('dir = "model"', 'dir = "model"\nprogress_every = "0.2 s"'))
    (tmp_path / "train.toml").write_text(config)
    proc = subprocess.Popen(cli_command() + ["train", str(tmp_path / "train.toml")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines, status = [], None
    try:
        while len(lines) < 2:
            line = proc.stderr.readline()
            assert line, "train ended (or closed stderr) before two progress lines"
            if line.startswith("train: epoch "):
                lines.append(line)
        # A million epochs take hours: the lines came while it ran, and so did status.json.
        assert proc.poll() is None
        for _ in range(600):  # written right before the line; allow for a slow file system
            if (tmp_path / "model" / "status.json").is_file():
                status = json.loads((tmp_path / "model" / "status.json").read_text())
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate()
    assert "/1000000, train loss " in lines[0] and "s/epoch, ETA " in lines[1]
    assert status["status"] == "running" and status["epoch"] >= 1 and status["epochs"] == 1000000
    assert status["eta_s"] > 0 and status["seconds_per_epoch"] > 0


def test_progress_every_of_a_train_config_is_checked(tmp_path, capsys):
    np.save(tmp_path / "samples.npy", np.zeros((64, 2)))
    (tmp_path / "train.toml").write_text(CONFIG.replace('dir = "model"', 'dir = "model"\nprogress_every = "5 nm"'))
    assert cli.main(["train", str(tmp_path / "train.toml")]) == 2
    assert "progress_every = '5 nm': expected a positive number of seconds" in capsys.readouterr().err
