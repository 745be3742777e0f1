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
# threads even a 1600-element sqrt or log, and with the other core busy each such call waits
# for it: 0.1-10 ms instead of 2 us. On the shared VM the five tests of test_tempering.py took
# 1386 s in a worker that had run lmd.sample before them, 20 s with one thread per worker.
# Set before torch is first imported (test modules import it at collection, after this
# file), and inherited by the CLI subprocesses that tests start. The serial pass runs without
# xdist and keeps every CPU.
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

#: The test files that take longest in the xdist pass, longest first: seconds in one process
#: with a worker's environment (one thread) on the shared 2-core VM, December 2026; only the
#: order is used. ``make test`` hands whole files to the workers in collection order
#: (``--dist loadfile --no-loadscope-reorder``) and this list moves these files to the front,
#: so that the long ones start first and the many short files fill in behind them: both
#: workers finish together rather than one starting a long file while the other has nothing
#: left. (xdist's own order puts the files with the fewest tests last, and the slow
#: statistical files have two or three tests each.) A file that becomes slow belongs here;
#: ``--durations=0`` gives the numbers.
LONG_FIRST = {
    "tests/test_compile_auto.py": 48,
    "tests/test_demo.py": 40,
    "tests/hostile/test_write_safety.py": 33,
    "tests/statistical/test_mixed_precision.py": 30,
    "tests/examples/test_examples.py": 30,
    "tests/test_readme.py": 25,
    "tests/statistical/test_constrained_md.py": 23,
    "tests/run/test_prior_config.py": 23,
    "tests/statistical/test_tempering.py": 20,
    "tests/statistical/test_exact_laws.py": 19,
    "tests/statistical/test_forcefield_agreement.py": 17,
    "tests/statistical/test_targets.py": 10,
}

ROOT = Path(__file__).resolve().parent.parent


def _stale_entries():
    """Entries of SERIAL and LONG_FIRST that name no file or test of this repository."""
    stale = []
    for key in [*SERIAL, *LONG_FIRST]:
        file, _, name = key.partition("::")
        path = ROOT / file
        # Read from the file, not from what was collected: a run of one file or one test
        # collects no others, and must not call them stale.
        if not path.is_file() or (name and f"def {name}(" not in path.read_text(encoding="utf-8")):
            stale.append(key)
    return stale


def _relative(item):
    """The item's file relative to the repository root, or None for a test outside it."""
    try:
        return Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the listed tests (and every ``opencl`` test) ``serial``, put the LONG_FIRST files
    first (each file's tests stay together and in order), and refuse stale entries."""
    stale = _stale_entries()
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SERIAL or LONG_FIRST lists tests that do not exist: {stale}; "
                                "update the lists after a rename")
    rank = {file: i for i, file in enumerate(sorted(LONG_FIRST, key=LONG_FIRST.get, reverse=True))}
    order = {}
    for position, item in enumerate(items):
        rel = _relative(item)
        order[item] = (rank.get(rel, len(rank)), position)
        if rel is None:
            continue
        name = getattr(item, "originalname", None) or item.name
        for key in (rel, f"{rel}::{name}"):
            if key in SERIAL:
                item.add_marker(pytest.mark.serial(reason=SERIAL[key]))
        if item.get_closest_marker("opencl") is not None:
            item.add_marker(pytest.mark.serial(reason="OpenCL/PoCL uses every core"))
    items.sort(key=order.__getitem__)
