"""``compile="auto"``: eager for small runs, a measured decision for large ones, and why.

Large work is reached cheaply and for real by resuming a checkpoint near a very late step
(the "cannot compile" messages depend on the run's end step); only a handful of steps are
taken. Compiled graphs are reused across ``sample()`` calls: dynamo's own counters prove it.
"""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.executors.torch_executor import AUTO_COMPILE_WORK, compile_cache_dir, compiler_missing
from langevin_md.systems import Harmonic

LOGGER = "langevin_md.executors.torch_executor"


class PinnedULA(lmd.integrators.ULA):
    """ULA declared not compilable, as replica exchange is (its schedule branches in Python)."""

    compilable = False


def late_sampler(integrator, compile="auto", n_walkers=4, **kw):
    """A sampler resumed from a checkpoint a few steps before a run end with large work."""
    system = Harmonic(dim=1)
    sampler = lmd.Sampler(system, integrator, n_walkers=n_walkers, seed=1, compile=compile, **kw)
    ckpt = sampler.state_dict()
    end = AUTO_COMPILE_WORK // n_walkers + 40
    ckpt["step"] = end - 40
    sampler.load_state_dict(ckpt)
    return sampler, end


def test_small_runs_stay_eager_and_equal_compile_false_bitwise():
    kw = dict(n_steps=50, n_walkers=8, seed=2, record_every=5)
    auto = lmd.sample(Harmonic(dim=2), lmd.integrators.MALA(0.3), **kw)
    eager = lmd.sample(Harmonic(dim=2), lmd.integrators.MALA(0.3), compile=False, **kw)
    assert auto.compile_time == 0.0 and eager.compile_time == 0.0
    assert np.array_equal(auto.positions, eager.positions)
    sampler = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=3)
    assert sampler.compile == "auto"
    sampler.run(10)
    assert sampler.compiled is False


def test_large_work_that_cannot_compile_runs_eagerly_with_one_log_line(caplog):
    sampler, end = late_sampler(PinnedULA(0.1))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        r = sampler.run_to(end - 20, record_every=10)
        r = sampler.run_to(end, record_every=10)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == LOGGER]
    assert lines == ["compile='auto': running eagerly because PinnedULA is not compilable"]
    assert sampler.compiled is False and r.compile_time == 0.0
    # The same checkpoint stepped with compile=False gives the same numbers: it ran eagerly.
    eager, _ = late_sampler(PinnedULA(0.1), compile=False)
    ref = eager.run_to(end, record_every=10)
    assert np.array_equal(ref.positions[-2:], r.positions)


def test_no_compiler_is_named_and_the_run_goes_on(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty directory: no g++, c++ or clang++
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compiler_missing(torch.device("cpu"))
    sampler, end = late_sampler(lmd.integrators.ULA(0.1))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        r = sampler.run_to(end, record_every=10)
    assert [rec.getMessage() for rec in caplog.records if rec.name == LOGGER] == [
        "compile='auto': running eagerly because no C++ compiler (g++, c++ or clang++) on PATH"]
    assert r.n_frames == 4 and np.isfinite(r.positions).all()


@pytest.mark.parametrize("bad", ["yes", 1, None, "AUTO"])
def test_bad_compile_values_are_named(bad):
    with pytest.raises(ValueError, match=f"compile must be True, False or 'auto', got {bad!r}"):
        lmd.Sampler(Harmonic(dim=1), lmd.integrators.ULA(0.1), compile=bad)


def test_compile_true_refuses_a_scheme_that_cannot_compile():
    with pytest.raises(ValueError, match="compile=True: PinnedULA cannot be compiled"):
        lmd.Sampler(Harmonic(dim=1), PinnedULA(0.1), compile=True)


def test_cache_dir_follows_xdg_and_an_explicit_torch_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "langevin_md" / "torchinductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"


@pytest.mark.slow
def test_large_work_compiles_once_caches_on_disk_and_ignores_segment_lengths():
    # The real, persistent cache: the first run on a machine compiles cold (~10-70 s on a
    # loaded 2-core VM), later ones load the kernels (a few seconds).
    why = compiler_missing(torch.device("cpu"))
    if why is not None:
        pytest.skip(f"cannot compile here: {why}")
    from torch._dynamo.utils import counters

    before_env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    sampler, end = late_sampler(lmd.integrators.ULA(0.1), compile=True)
    graphs = counters["stats"]["unique_graphs"]
    first = sampler.run_to(end - 30, record_every=8)     # chunks of 8: one graph
    assert sampler.compiled and first.compile_time > 0
    assert 0 < first.compile_time <= first.wall_time
    second = sampler.run_to(end - 17, record_every=13)   # 8 + 5 single steps: the second graph
    third = sampler.run_to(end, record_every=3)          # other lengths: nothing new
    assert counters["stats"]["unique_graphs"] - graphs <= 2
    assert third.compile_time == 0.0
    assert any(compile_cache_dir().iterdir())
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == before_env   # restored after the run
    assert np.isfinite(third.positions).all()


def test_the_decision_and_its_reason_reach_metadata_and_a_checkpoint(tmp_path):
    from langevin_md.io.checkpoint import load_checkpoint, save_checkpoint

    sampler = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=3, seed=4)
    r = sampler.run(20, record_every=5)
    assert r.metadata["compiled"] is False
    assert r.metadata["compile_decision"].startswith("eager: a small run")
    forced = lmd.sample(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_steps=5, compile=False)
    assert forced.metadata["compile_decision"] == "compile=False"
    # A resumed sampler keeps the decision its checkpoint carries (through the file format).
    path = save_checkpoint(tmp_path / "c.npz", sampler.state_dict())
    state, _ = load_checkpoint(path)
    assert state["compiled"] is False
    resumed = lmd.Sampler(Harmonic(dim=2), lmd.integrators.ULA(0.1), n_walkers=3, seed=4)
    resumed.load_state_dict(state)
    again = resumed.run_to(40, record_every=5)
    assert again.metadata["compile_decision"] == "eager, as before the checkpoint"
    # ... for that one run only; the next decides afresh.
    assert resumed.run_to(45).metadata["compile_decision"].startswith("eager: a small run")


def test_a_second_sample_call_compiles_nothing_whatever_steps_recording_and_walkers(caplog):
    """One graph per (system, integrator, dtype) serves every walker count and segment length."""
    why = compiler_missing(torch.device("cpu"))
    if why is not None:
        pytest.skip(f"cannot compile here: {why}")
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.utils import counters

    system = Harmonic(dim=1)
    # 10 = one 8-step call and two single steps: both graphs of this system are built here.
    first = lmd.sample(system, lmd.integrators.ULA(0.1), n_steps=20, n_walkers=6, record_every=10,
                       seed=3, compile=True)
    assert first.compile_time > 0 and first.metadata["compile_decision"] == "compile=True"
    graphs, recompiles = counters["stats"]["unique_graphs"], sum(counters["recompiles"].values())
    with dynamo_config.patch(error_on_recompile=True):
        kw = dict(n_steps=33, n_walkers=13, record_every=7, seed=5, compile=True)
        second = lmd.sample(system, lmd.integrators.ULA(0.1), **kw)   # a new integrator object too
        third = lmd.sample(system, lmd.integrators.ULA(0.1), **kw)
    assert counters["stats"]["unique_graphs"] == graphs
    assert sum(counters["recompiles"].values()) == recompiles
    assert second.compile_time == 0.0 and second.positions.shape == (4, 13, 1)
    assert np.array_equal(second.positions, third.positions)       # reproducible with itself
    # "auto" on a large run finds the graph in memory, probes it and says what it weighed.
    with caplog.at_level(logging.INFO, logger=LOGGER):
        auto = lmd.sample(system, lmd.integrators.ULA(0.1), n_steps=400, n_walkers=25_000,
                          record_every=400, seed=6)
    reason = auto.metadata["compile_decision"]
    assert "(the graph is in memory)" in reason and "ms eager" in reason
    assert reason.startswith("compiled: " if auto.metadata["compiled"] else "eager: ")
    assert f"compile='auto': {reason}" in [rec.getMessage() for rec in caplog.records]
    assert auto.compile_time == 0.0 and np.isfinite(auto.positions).all()


CHILD = """
import json, sys
import langevin_md as lmd
from langevin_md.systems import Harmonic
from torch._dynamo.utils import counters
r = lmd.sample(Harmonic(dim=3), lmd.integrators.ULA(0.05), n_steps=8, n_walkers=5, record_every=8,
               compile=True, seed=1)
print(json.dumps({"inductor": dict(counters["inductor"]), "aot": dict(counters["aot_autograd"]),
                  "compile_time": r.compile_time, "last": r.positions[-1].tolist()}))
"""


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_graph_from_the_disk_cache(tmp_path):
    import json
    import subprocess
    import sys

    from langevin_md.executors.compiled import COMPILE_TIMES_FILE

    why = compiler_missing(torch.device("cpu"))
    if why is not None:
        pytest.skip(f"cannot compile here: {why}")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", ""))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                             timeout=900, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["inductor"].get("fxgraph_cache_miss", 0) >= 1 and not cold["inductor"].get("fxgraph_cache_hit")
    assert warm["inductor"].get("fxgraph_cache_hit", 0) >= 1 and not warm["inductor"].get("fxgraph_cache_miss")
    assert warm["last"] == cold["last"]    # the cached kernels compute the same numbers
    assert (tmp_path / "langevin_md" / "torchinductor" / COMPILE_TIMES_FILE).is_file()
