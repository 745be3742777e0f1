"""`langevin-md analyze RUN --reference RUN2` and the report of a run with a `[prior]`."""

from __future__ import annotations

import json
import shutil

import numpy as np

from langevin_md import cli

from tests.io.helpers import write_config
from tests.run.test_prior_config import ALANINE, _model


def _prior_run(tmp_path):
    _model(tmp_path / "prior.safetensors", (2,), periodic=True)
    cfg = tmp_path / "run.toml"
    cfg.write_text(ALANINE.format(engine="torch").replace("n_steps = 40", "n_steps = 200")
                   .replace("n_walkers = 4", "n_walkers = 6").replace("checkpoint_every = 20", "checkpoint_every = 200"))
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "prior_run"), "--no-progress"]) == 0
    return tmp_path / "prior_run"


def test_analyze_reports_U_ff_and_U_prior_and_compares_with_a_reference(tmp_path, capsys):
    run = _prior_run(tmp_path)
    same = tmp_path / "copy"
    shutil.copytree(run, same)
    assert cli.main(["analyze", str(run), "--reference", str(same)]) == 0
    out = capsys.readouterr().out
    md = (run / "report" / "report.md").read_text()
    assert "⟨U_ff⟩ = " in md and "additive constant is arbitrary" in md
    table = md.split("## Sampling quality")[1].split("## Warnings")[0]
    assert "| U_ff |" in table and "| U_prior |" in table
    report = run / "report"
    assert (report / "comparison.png").stat().st_size > 10_000
    data = json.loads((report / "comparison.json").read_text())
    # a run against an identical copy: JS exactly 0, every population equal, "agree"
    assert data["js"] == 0.0 and data["consistent"] is True
    assert all(s["population"] == s["reference_population"] for s in data["states"].values())
    verdict = (report / "verdict.txt").read_text()
    assert verdict.startswith("The prior_run and copy distributions agree within sampling noise")
    assert "JS divergence 0.0000" in verdict and "C7eq" in verdict
    assert verdict.strip() in out and str(report / "comparison.png") in out
    assert set(data["states"]) == {"C7eq/β", "αR", "αL"}
    assert np.isfinite(data["js_error"])


def test_reference_needs_molecular_runs(tmp_path, capsys):
    cfg = write_config(tmp_path, n_steps=200, n_walkers=4)
    assert cli.main(["run", str(cfg), "--output", str(tmp_path / "mb"), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["analyze", str(tmp_path / "mb"), "--reference", str(tmp_path / "mb")]) == 1
    err = capsys.readouterr().err
    assert "--reference compares backbone φ/ψ distributions" in err and "has no molecular topology" in err
    assert cli.main(["analyze", str(tmp_path / "mb"), "--reference", str(tmp_path / "nowhere")]) == 2
