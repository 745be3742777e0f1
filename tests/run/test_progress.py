"""Signs of life off a terminal: progress lines in run.log/stderr and a live ``summary.json``.

Before issue 24 a run whose output was not a terminal printed nothing until it ended, and
``summary.json`` said ``"step": 0, "last_checkpoint": null`` while checkpoints existed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from langevin_md.errors import ConfigError
from langevin_md.run.config import load_config
from langevin_md.run.progress import ProgressReporter, format_duration

from tests.io.helpers import cli_command, write_config


def _summary(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):  # not written yet (it is replaced atomically, never half-written)
        return {}


def test_a_polled_summary_advances_while_a_cli_run_goes_on(tmp_path):
    # Far more steps than the test waits for: it stops the run itself once it has seen enough.
    config = write_config(tmp_path, n_steps=50_000_000, n_walkers=4, record_every=100, checkpoint_every=2000)
    config.write_text(config.read_text() + '\n[output]\nprogress_every = "0.2 s"\n')
    run_dir = tmp_path / "run"
    # stdout and stderr are pipes, not terminals: no progress bar, so no sign of life but ours.
    proc = subprocess.Popen(cli_command() + ["run", str(config), "--output", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    try:
        deadline = time.monotonic() + 240  # a hang guard only; the run never gets that far
        while time.monotonic() < deadline and proc.poll() is None:
            s = _summary(run_dir)
            if s.get("status") == "running" and s.get("step", 0) > 0 and s.get("last_checkpoint"):
                if not seen or s["step"] > seen[-1]["step"]:
                    seen.append(s)
                if len(seen) >= 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended: {proc.communicate()[1]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert len(seen) >= 2, err
    first, second = seen[0], seen[1]
    assert 0 < first["step"] < second["step"] < 50_000_000
    assert second["last_checkpoint"].startswith("checkpoints/step_")
    assert second["progress"]["steps_per_second"] > 0 and second["progress"]["eta_s"] > 0
    assert second["n_frames"] >= 1
    # The same lines are in stderr (not a terminal) and in run.log.
    assert "progress: step " in err and "steps/s" in err and "ETA" in err, err
    assert "progress: step " in (run_dir / "run.log").read_text()


def test_progress_every_is_read_with_a_unit_and_refused_clearly(tmp_path):
    config = write_config(tmp_path)
    text = config.read_text()
    config.write_text(text + '\n[output]\nprogress_every = "2 min"\n')
    assert load_config(config).output["progress_every"] == 120.0
    config.write_text(text + '\n[output]\nprogress_every = 0\n')
    with pytest.raises(ConfigError, match=r"progress_every = 0: expected a positive number of seconds"):
        load_config(config)
    config.write_text(text + '\n[output]\nprogress_every = "3 nm"\n')
    with pytest.raises(ConfigError, match=r"progress_every = '3 nm'"):
        load_config(config)


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Walkers:
    n_walkers = 10


def test_a_reporter_that_may_not_pause_never_asks_for_a_stop():
    # The OpenMM executor's chains depend on where segments end: progress must not move them.
    clock, lines = _Clock(), []
    r = ProgressReporter(1000, lines.append, every=1.0, may_pause=False, clock=clock)
    assert r.next_report(0) is None
    clock.t = 5.0
    assert r.next_report(0) is None            # asked again at the same step: nothing new
    assert r.next_report(100) == 0             # a stop someone else asked for, and it is due
    r.report(_Walkers(), None, 100)
    assert r.next_report(100) is None          # the executor asks again before its next stop
    assert lines == ["progress: step 100/1000 (10.0%), 20 steps/s (200 walker-steps/s), ETA 45 s"]


def test_a_reporter_that_may_pause_asks_for_about_one_interval_of_steps():
    clock, lines, status = _Clock(), [], []
    r = ProgressReporter(10_000, lines.append, every=2.0, status=status.append, timestep_ps=0.002, clock=clock)
    assert r.next_report(0) == 100             # a short first segment to learn the speed
    clock.t = 1.0
    assert r.next_report(100) == 100           # 100 steps/s, one more second to the line
    clock.t = 2.0
    assert r.next_report(200) == 0
    r.report(_Walkers(), None, 200)
    assert status[-1]["step"] == 200 and status[-1]["ns_per_day"] == pytest.approx(100 * 0.002 * 86.4)
    assert lines[-1].endswith("17.3 ns/day, ETA 1 min 38 s")
    assert format_duration(7500) == "2 h 05 min"


def _run_folder(tmp_path: Path, config: Path, name: str) -> Path:
    from langevin_md.run.folder import create_run
    from langevin_md.run.session import execute_run

    run_dir = tmp_path / name
    create_run(load_config(config), run_dir)
    execute_run(run_dir, progress=False, handle_signals=False)
    return run_dir


@pytest.mark.parametrize("backend", ["torch", "openmm"])
def test_progress_reports_never_change_a_frame(tmp_path, backend):
    # Torch: pausing on the clock is free (chains do not depend on pauses). OpenMM: the reporter
    # only rides on other stops, since a segment boundary changes which numbers a walker draws.
    from tests.io.helpers import assert_same_trajectory

    if backend == "torch":
        text = write_config(tmp_path, n_steps=1500, n_walkers=4, record_every=7, checkpoint_every=500).read_text()
    else:
        pytest.importorskip("openmm")
        from tests.openmm.run_configs import write_alanine_config

        text = write_alanine_config(tmp_path, n_steps=400, n_walkers=2, record_every=10,
                                    checkpoint_every=200).read_text()
    quiet, busy = tmp_path / "quiet.toml", tmp_path / "busy.toml"
    quiet.write_text(text + '\n[output]\nprogress_every = "1 hour"\n')
    busy.write_text(text + "\n[output]\nprogress_every = 1e-6\n")  # due at every chance
    a, b = _run_folder(tmp_path, quiet, "quiet"), _run_folder(tmp_path, busy, "busy")
    assert_same_trajectory(a, b)
    assert "progress: step " in (b / "run.log").read_text()
    summary = _summary(b)
    assert summary["status"] == "completed" and summary.get("progress", {}).get("eta_s", 0.0) == 0.0
