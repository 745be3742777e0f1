"""``lmd.sample`` keeps every frame in memory: it says how much before it runs (issue 24, item 5).

Before: the README's constrained snippet (10,000 steps × 256 walkers, record_every=1) held
~1.35 GB of positions without a word, and a bigger call ran until the machine ran out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import langevin_md as lmd
from langevin_md.memory import KEPT_FRAMES_WARN_BYTES, check_kept_frames, frames_bytes
from langevin_md.run.memory import memory_estimate

ALANINE_COORDINATES = 22 * 3


def test_a_run_whose_frames_cannot_fit_is_refused_before_any_step():
    system = lmd.systems.Harmonic(dim=1000)
    with pytest.raises(MemoryError) as info:
        lmd.sample(system, lmd.integrators.ULA(step_size=0.01), n_steps=10_000_000, n_walkers=1000)
    message = str(info.value)
    # The number, the cause and the way out; nothing was stepped (10^10 walker-steps would take hours).
    assert "record_every=1 keeps 10000000 frames of 1000 coordinates per walker in memory: 7.47e+04 GiB" in message
    assert "nothing was run" in message and "Pass record_every=10000 (at most 1000 frames)" in message


def test_the_readme_constrained_snippet_keeps_its_frames_under_the_warning():
    snippet = dict(n_steps=10_000, n_walkers=256, n_coordinates=ALANINE_COORDINATES, itemsize=8,
                   available=64 << 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbytes = check_kept_frames(record_every=10, **snippet)  # as the README now calls it
    assert nbytes == 1000 * 256 * (66 + 2) * 8 < KEPT_FRAMES_WARN_BYTES
    # The call as the README had it (every frame kept): 1.39 GB, warned with the way out.
    with pytest.warns(RuntimeWarning, match=r"keeps 10000 frames .*: 1.3 GiB; to keep less, pass record_every=10 "):
        check_kept_frames(record_every=1, **snippet)


def test_frames_that_fit_twice_over_run_and_warn_only_past_the_threshold():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = lmd.sample(lmd.systems.Harmonic(dim=2), lmd.integrators.ULA(step_size=0.1), n_steps=50, n_walkers=4)
    assert r.positions.shape == (50, 4, 2)  # record_every=1 stays the default
    with pytest.raises(MemoryError, match=r"only 1 GiB is available"):
        check_kept_frames(1000, 1, 1000, 200, 8, available=1 << 30)  # 1.5 GiB of frames, 3 at the join


def test_the_config_path_counts_frames_the_same_way():
    sampler = {"n_walkers": 16, "n_steps": 5000, "record_every": 5, "checkpoint_every": 2000, "dtype": "float64"}
    est = memory_estimate(sampler, ALANINE_COORDINATES)
    assert est["recording"] == frames_bytes(2000 // 5, 16, ALANINE_COORDINATES, 8)
    assert np.isclose(est["total"], est["walkers"] + est["recording"] + est["checkpoints"])
