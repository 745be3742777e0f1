"""Which tests must have the machine to themselves.

``make test`` runs the suite in two passes: every test not marked ``serial`` on pytest-xdist
workers (one test file per worker, so a module's fixtures are built once), then the
``serial`` tests one at a time with no other test running. A test is serial when a
neighbour running beside it could change its outcome, not merely its speed:

* it reads the machine's load or idle CPUs, or fills the CPUs itself (thread-count choice);
* it asserts a wall-clock bound or has a ``timeout`` mark tight enough for a loaded machine;
* it kills a subprocess at a moment chosen by timing (SIGKILL mid-run, then resume);
* it starts a Dask cluster (worker processes, ports, a worker killed with SIGKILL);
* it uses OpenMM's OpenCL platform (PoCL spreads over every core; marker ``opencl``).

The list is here rather than in each file so that it is read in one place; a listed file or
test that no longer exists is an error at collection, so a rename cannot silently drop a
test from the serial pass. A new test of one of the kinds above belongs in the list.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One thread per pytest-xdist worker: ``-n auto`` already starts one worker per CPU, and the
# OpenMP/MKL pools of several workers fighting over the same cores are far worse than idle
# cores. Measured on the 2-core VM: once torch.set_num_threads(2) has been called explicitly
# (the torch executor does it when it restores the setting after a run with one thread), MKL
# threads even a 1600-element sqrt or log, and with the other worker busy each such call waits
# for a core: 1 ms instead of 2 us. On the shared VM the four tests of test_tempering.py took
# 1386 s in a worker that had run lmd.sample before them, 20 s with one thread per worker. Set before torch is first imported (test
# modules import it at collection, after this file), and inherited by the CLI subprocesses
# that tests start. The serial pass runs without xdist and keeps every CPU.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

#: Test files (every test in them) or single tests (``file::name``, any parametrisation),
#: relative to the repository root, with the reason they run alone.
SERIAL = {
    "tests/test_threads.py": "counts idle CPUs and keeps every CPU busy with spinning subprocesses",
    "tests/hostile/test_broken_files.py::test_sigkill_then_truncation_then_resume_fails_fast_and_the_advice_works":
        "SIGKILLs a writer once it has checkpointed",
    "tests/hostile/test_broken_files.py::test_a_truncated_trajectory_is_refused_at_once_and_never_read_as_zeros":
        "asserts a refusal within 20 s of wall time",
    "tests/hostile/test_code_from_data.py::test_entity_expansion_bomb_is_refused_at_once":
        "asserts a refusal within 5 s of wall time",
    "tests/run/test_crash_resume.py::test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical":
        "SIGKILL at a moment chosen by timing, then resume",
    "tests/run/test_crash_resume.py::test_sigterm_finishes_the_chunk_checkpoints_and_resumes":
        "SIGTERM at a moment chosen by timing, then resume",
    "tests/run/test_prior_config.py::test_sigkill_with_a_prior_then_resume_is_bitwise_identical":
        "SIGKILL at a moment chosen by timing, then resume",
    "tests/openmm/test_openmm_runs.py::test_sigkill_then_resume_never_duplicates_or_drops_frames":
        "SIGKILL at a moment chosen by timing, then resume",
    "tests/run/test_distributed.py": "a Dask LocalCluster of worker processes; a worker killed mid-shard",
    "tests/analysis/test_statistics.py::test_detect_equilibration_on_a_million_points":
        "a 60 s timeout mark",
    "tests/run/test_progress.py::test_a_polled_summary_advances_while_a_cli_run_goes_on":
        "polls a running CLI subprocess and stops it once the status has advanced",
    "tests/test_train_cli.py::test_a_train_subprocess_off_a_terminal_prints_progress_before_it_ends":
        "polls a running train subprocess and stops it once progress lines have come",
    "tests/hostile/test_upstream_inductor_scatter.py": "compiles and runs with two OpenMP threads on purpose",
}

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the listed tests (and every ``opencl`` test) ``serial``; refuse stale entries."""
    stale = []
    for key in SERIAL:
        file, _, name = key.partition("::")
        path = ROOT / file
        # Read from the file, not from what was collected: a run of one file or one test
        # collects no others, and must not call them stale.
        if not path.is_file() or (name and f"def {name}(" not in path.read_text(encoding="utf-8")):
            stale.append(key)
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SERIAL lists tests that do not exist: {stale}; "
                                "update the list after a rename")
    for item in items:
        try:
            rel = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        except ValueError:  # a test outside this repository
            continue
        name = getattr(item, "originalname", None) or item.name
        for key in (rel, f"{rel}::{name}"):
            if key in SERIAL:
                item.add_marker(pytest.mark.serial(reason=SERIAL[key]))
        if item.get_closest_marker("opencl") is not None:
            item.add_marker(pytest.mark.serial(reason="OpenCL/PoCL uses every core"))
