"""Torch intra-op threads for a run, chosen by problem size and by what the machine is doing.

Two facts decide the count:

* For small problems threads cannot help. Torch splits no op of fewer than 32768 elements
  across threads, so below :data:`SMALL_PROBLEM` coordinates (where even the per-term
  intermediates of a small potential stay under that) one thread is chosen: the pool would
  only add synchronisation.
* On a machine whose cores are busy, threads hurt badly. Measured on this 2-core VM with
  other jobs running (Müller–Brown ULA, float64, eager, walker-steps/s, both settings
  interleaved in one process): 10⁴ walkers 3.0M with one thread and 1.0M with two; 10⁵: 3.4M
  and 1.3M. On the same VM when quiet, two threads win from 10⁴ walkers: 10⁴ 12.6M against
  15.6M, 10⁵ 12.9M against 21.0M, 10⁶ 9.3M against 12.9M.

So above :data:`SMALL_PROBLEM` an eager run takes as many threads as there are idle cores at
its start, never more than torch's current setting, and at least one. Idle cores are counted
from the kernel's count of runnable tasks (``procs_running`` in ``/proc/stat``, the median of
a few snapshots a millisecond apart, less this process's own running threads, which may be a
thread pool still spinning after the previous run) against the CPUs this process may use.
Where that count is not available (not Linux), torch's setting is kept. The count is taken
once per run (about 7 ms): a run that starts on a quiet machine keeps its threads if others
arrive. In a container ``/proc/stat`` may describe the whole host and CPU quotas are not
read, so there the choice is conservative (a busy host gives one thread); pass ``threads=``
to decide yourself.
Compiled runs do not follow the load (:func:`compiled_threads`): their kernels are compiled
for one thread count.

Thread counts change no number in a step: every op there works element by element, reduces
within one walker's coordinates, or sums over walkers per coordinate (a metric's moments),
and torch parallelises those without reordering any sum. A reduction of a whole tensor to
one number would be split across threads, and no step contains one. ``tests/test_threads.py``
checks this bitwise for Müller–Brown and alanine dipeptide at sizes that use two threads.

Nothing here changes the global setting for good: :func:`torch_threads` sets it for a block
and restores it, and the torch executor uses it for the duration of a run only.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Optional

#: Coordinates (walkers × event size) up to which a run uses one intra-op thread.
SMALL_PROBLEM = 1 << 13

#: The same bound for compiled runs: one thread up to 2¹⁸ coordinates (about 4,000
#: alanine-dipeptide walkers). Introduced when a compiled custom-GB term corrupted memory on
#: two threads; the cause was an inductor mis-compilation of (pairs, 3, walkers) index_add_
#: scatters, which the force field no longer uses (tests/hostile/test_upstream_inductor_scatter.py).
SMALL_COMPILED_PROBLEM = 1 << 18

#: Snapshots of the runnable-task count taken per decision, a millisecond apart.
LOAD_SAMPLES = 7


def check_threads(threads) -> Optional[int]:
    """Validate a ``threads=`` argument: None (choose) or a positive int."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (choose by problem size), "
                         f"got {threads!r}")
    return threads


def _procs_running() -> Optional[int]:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_running() -> int:
    """Threads of this process that are running or runnable now (the caller included).

    Thread pools that just finished work spin for a while (OpenMP's wait policy, XLA's
    workers): counted as other load they would talk a run out of its own threads.
    """
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        # "tid (comm) S ...": the state follows the last ')' (comm may contain spaces).
        if stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"R":
            n += 1
    return max(1, n)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cpus(samples: int = LOAD_SAMPLES) -> Optional[int]:
    """CPUs not busy with other work right now, or None where the OS does not say.

    Parameters
    ----------
    samples : int
        Snapshots of the kernel's runnable-task count, a millisecond apart; their median,
        less this process's own running threads, is the number of CPUs busy elsewhere.

    Returns
    -------
    int or None
        ``usable_cpus() − busy``, at least 0; None without ``/proc/stat``.
    """
    others = []
    for i in range(samples):
        c = _procs_running()
        if c is None:
            return None
        others.append(c - _own_running())
        if i + 1 < samples:
            time.sleep(0.001)
    return max(0, usable_cpus() - int(round(statistics.median(others))))


def compiled_threads(n_coordinates: int, threads: Optional[int] = None) -> Optional[int]:
    """The intra-op thread count for a compiled run, or None to keep torch's setting.

    Inductor specialises compiled kernels to the thread count: a run on a different count
    compiles again (measured: 14 s for Müller–Brown ULA, where the cached graph loads in
    under 1 s). So a compiled run does not follow the machine's load: ``threads`` when
    given, one thread up to :data:`SMALL_COMPILED_PROBLEM` coordinates, torch's setting
    beyond.
    """
    threads = check_threads(threads)
    if threads is not None:
        return threads
    return 1 if n_coordinates <= SMALL_COMPILED_PROBLEM else None


def choose_threads(n_coordinates: int, threads: Optional[int] = None) -> Optional[int]:
    """The intra-op thread count an eager run of ``n_coordinates`` should use, or None to keep it.

    Parameters
    ----------
    n_coordinates : int
        Walkers times coordinates per walker: the size of a position tensor.
    threads : int, optional
        The user's choice, which wins.

    Returns
    -------
    int or None
        ``threads`` when given; 1 for problems up to :data:`SMALL_PROBLEM` coordinates;
        otherwise the idle CPUs (:func:`idle_cpus`), capped by torch's current setting and at
        least 1, or None (torch's setting) where idle CPUs cannot be counted.
    """
    threads = check_threads(threads)
    if threads is not None:
        return threads
    if n_coordinates <= SMALL_PROBLEM:
        return 1
    idle = idle_cpus()
    if idle is None:
        return None
    import torch

    return max(1, min(torch.get_num_threads(), idle))


@contextlib.contextmanager
def torch_threads(n: Optional[int] = 1):
    """Run the enclosed block with ``n`` torch intra-op threads, then restore the setting.

    ``n=None`` leaves the setting alone. Torch's setting is process-wide: threads that run
    torch concurrently with the block see it too.
    """
    import torch

    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["LOAD_SAMPLES", "SMALL_COMPILED_PROBLEM", "SMALL_PROBLEM", "check_threads", "choose_threads",
           "compiled_threads", "idle_cpus", "torch_threads", "usable_cpus"]
