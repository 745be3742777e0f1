"""Argument validators: every executor, the config reader and the run-folder code use these.

Each returns the value in its canonical form or raises ``ValueError``/``TypeError`` naming
the argument, the value received and what was expected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value) -> int:
    """``value`` as an int ≥ 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value) -> int:
    """``value`` as an int ≥ 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not (v >= 0 if allow_zero else v > 0):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {what} number, got {value!r}")
    return v


def boolean(name: str, value) -> bool:
    """``value`` when it is exactly True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


_DTYPES = {None: torch.float64, "float64": torch.float64, "float32": torch.float32,
           torch.float64: torch.float64, torch.float32: torch.float32,
           np.float64: torch.float64, np.float32: torch.float32}


def dtype(value) -> torch.dtype:
    """``'float32'``/``'float64'`` (or the torch/numpy type; None means float64) as a torch dtype."""
    try:
        return _DTYPES[value]
    except (KeyError, TypeError):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}") from None


def numpy_dtype(value) -> type:
    """As :func:`dtype`, returned as the numpy scalar type."""
    return np.float64 if dtype(value) == torch.float64 else np.float32


def device(value) -> torch.device:
    """``'cpu'``, ``'cuda'``, ``'cuda:N'`` or a ``torch.device`` (None means CPU); CUDA must exist."""
    if value is None:
        return torch.device("cpu")
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {value!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {value!r} was requested but torch sees no CUDA device; use device='cpu'")
    return dev


def choice(name: str, value, allowed) -> str:
    """``value`` when it is one of ``allowed`` (strings)."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        words = [repr(a) for a in allowed]
        listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        raise ValueError(f"{name} must be {listed}, got {value!r}")
    return value


__all__ = ["positive_int", "non_negative_int", "positive_float", "boolean", "dtype", "numpy_dtype",
           "device", "choice"]
