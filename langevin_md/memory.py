"""Memory arithmetic shared by the config path and :func:`langevin_md.sample`.

How many bytes recorded frames take, how much memory a device has, and the check that
:func:`langevin_md.sample` makes before it runs (the config path's whole-run estimate,
:func:`langevin_md.run.memory.memory_estimate`, counts frames with :func:`frames_bytes` too).
This module imports nothing heavy (torch only for a CUDA device's free memory).
"""

from __future__ import annotations

import warnings
from typing import Optional

__all__ = ["available_memory", "gib", "frames_bytes", "check_kept_frames", "KEPT_FRAMES_WARN_BYTES",
           "SUGGESTED_MAX_FRAMES"]

#: Recorded frames kept in memory above this many bytes draw a warning from ``sample``.
KEPT_FRAMES_WARN_BYTES = 1 << 30
#: The frame count the warning and the refusal suggest staying under (``record_every``).
SUGGESTED_MAX_FRAMES = 1000


def available_memory(device: str) -> Optional[int]:
    """Bytes available on ``device`` (host RAM from /proc/meminfo, or CUDA's free memory)."""
    if str(device).startswith("cuda"):
        import torch  # lazy: only a CUDA device asks torch (this module stays light to import)

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(nbytes: int) -> str:
    """``nbytes`` as text in GiB, three significant digits."""
    return f"{nbytes / 2 ** 30:.3g} GiB"


def frames_bytes(n_frames: int, n_walkers: int, n_coordinates: int, itemsize: int) -> int:
    """Bytes of ``n_frames`` recorded frames: positions ``(n_walkers, n_coordinates)`` plus a
    potential and a kinetic energy per walker, each ``itemsize`` bytes."""
    return int(n_frames) * int(n_walkers) * (int(n_coordinates) + 2) * int(itemsize)


def check_kept_frames(n_steps: int, record_every: int, n_walkers: int, n_coordinates: int, itemsize: int,
                      available: Optional[int] = None) -> int:
    """Check, before a run, the memory the frames that ``sample`` keeps will take.

    ``n_steps // record_every`` frames are kept in memory and joined into one array at the end
    (for a moment about twice their size). Past :data:`KEPT_FRAMES_WARN_BYTES` a warning says
    how much and how to keep fewer; when twice their size exceeds ``available`` the run is
    refused before it starts.

    Parameters
    ----------
    n_steps, record_every, n_walkers : int
    n_coordinates : int
        Coordinates per walker (``prod(event_shape)``).
    itemsize : int
        Bytes per number (4 for float32, 8 for float64).
    available : int, optional
        Host bytes available (default: :func:`available_memory` of the host).

    Returns
    -------
    int
        Bytes of the kept frames.

    Raises
    ------
    MemoryError
        Naming the frames, their size, the memory available and the way out.
    """
    n_frames = int(n_steps) // int(record_every)
    nbytes = frames_bytes(n_frames, n_walkers, n_coordinates, itemsize)
    have = available if available is not None else available_memory("cpu")
    refuse = have is not None and 2 * nbytes > have
    if not refuse and nbytes <= KEPT_FRAMES_WARN_BYTES:
        return nbytes
    suggest = max(1, -(-int(n_steps) // SUGGESTED_MAX_FRAMES))
    what = (f"n_steps={n_steps}, n_walkers={n_walkers}, record_every={record_every} keeps {n_frames} frames of "
            f"{n_coordinates} coordinates per walker in memory: {gib(nbytes)}")
    way_out = (f"pass record_every={suggest} (at most {SUGGESTED_MAX_FRAMES} frames), fewer walkers, or run "
               "it from a config file (`langevin-md run`), which streams frames to disk")
    if refuse:
        raise MemoryError(f"{what}, about twice that while they are joined at the end, but only {gib(have)} is "
                          f"available; nothing was run. {way_out[0].upper()}{way_out[1:]}")
    if nbytes > KEPT_FRAMES_WARN_BYTES:
        warnings.warn(f"{what}; to keep less, {way_out}", RuntimeWarning, stacklevel=3)
    return nbytes
