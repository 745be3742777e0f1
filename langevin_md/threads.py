"""Torch intra-op threads for small problems.

For a few walkers of a small system every torch op is microseconds long, and the intra-op
thread pool only adds synchronisation. On a machine whose cores are busy with other work
the pool's threads wait on each other and a step can become tens of times slower (measured
here: 47 ms instead of 0.6 ms for a prior evaluation on a loaded 2-core VM). Wrap such work in
:func:`torch_threads` rather than changing the global setting for the whole program.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run the enclosed block with ``n`` torch intra-op threads, then restore the setting."""
    import torch

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
