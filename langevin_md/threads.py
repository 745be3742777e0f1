"""Torch intra-op threads for small problems.

For a few walkers of a small system every torch op is microseconds long, and the intra-op
thread pool only adds synchronisation. On a machine whose cores are busy with other work
the pool's threads wait on each other and a step can become several times slower. Measured
on this loaded 2-core VM (Müller–Brown ULA, float64, eager, walker-steps/s, the two settings
interleaved in one process): 10³ walkers 1.9M with one thread and 0.4M with two; 10⁴: 3.0M
and 1.0M; 3·10⁴: 2.9M and 0.7M; 10⁵: 3.4M and 1.3M; 10⁶: 3.3–3.9M and 2.0–2.2M. So one
thread is chosen up to :data:`SMALL_PROBLEM` coordinates per step (1.3·10⁵ walkers of a 2-d
system). Beyond it the setting is left as it is: there a quiet machine with many cores gains
from threads, which a busy 2-core one cannot show; pass ``threads=1`` on a crowded machine.
Thread counts also cannot change a number below 32768 elements per tensor (torch splits no
smaller op across threads), so the choice keeps small runs bitwise as they were.

Nothing here changes the global setting for good: :func:`torch_threads` sets it for a block
and restores it, and the torch executor uses it for the duration of a run only.
"""

from __future__ import annotations

import contextlib
from typing import Optional

#: Coordinates (walkers × event size) up to which a run uses one intra-op thread.
SMALL_PROBLEM = 1 << 18


def check_threads(threads) -> Optional[int]:
    """Validate a ``threads=`` argument: None (choose) or a positive int."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (choose by problem size), "
                         f"got {threads!r}")
    return threads


def choose_threads(n_coordinates: int, threads: Optional[int] = None) -> Optional[int]:
    """The intra-op thread count a run of ``n_coordinates`` should use, or None to keep it.

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
        otherwise None (torch's current setting).
    """
    threads = check_threads(threads)
    if threads is not None:
        return threads
    return 1 if n_coordinates <= SMALL_PROBLEM else None


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


__all__ = ["SMALL_PROBLEM", "check_threads", "choose_threads", "torch_threads"]
