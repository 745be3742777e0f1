"""``compile="auto"``: eager for small runs, compiled for large ones, and why when it cannot.

Large work is reached cheaply and for real by resuming a checkpoint near a very late step:
the decision depends on the run's end step (so a resumed run decides like the original), and
only a handful of steps are taken.
"""

import logging
import os

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
    sampler, end = late_sampler(lmd.integrators.ULA(0.1))
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
