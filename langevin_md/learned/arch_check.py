"""Check a model file's declared architecture against its stored tensors before allocating.

A model file's header names an architecture (``{"class": ..., "kwargs": {...}}``); building it
allocates every parameter. A few hundred bytes saying ``hidden = 200000`` would otherwise
allocate hundreds of gigabytes before the stored weights are compared with it. Here the
module is built on PyTorch's ``meta`` device (shapes only, no memory), its parameter count is
held against :data:`MAX_PARAMETERS`, and every state-dict entry's shape is compared with the
tensor stored in the file, all before any real tensor is created.
"""

from __future__ import annotations

import json
import math
from typing import Mapping

import torch
from .models import build_model

#: Largest model (parameters + buffers) a file may declare: 2**28 float32 values are 1 GiB.
MAX_PARAMETERS = 2 ** 28


def parse_architecture(text: str, path: str, field: str) -> dict:
    """The architecture dict stored as JSON text in a model file's ``field``.

    Raises
    ------
    ValueError
        When the text is not JSON or not ``{"class": str, "kwargs": dict}``; names file and field.
    """
    try:
        arch = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"model file {path!r}: header field {field!r} is not valid JSON ({exc})") from None
    if not (isinstance(arch, dict) and isinstance(arch.get("class"), str)
            and isinstance(arch.get("kwargs", {}), dict)):
        raise ValueError(f"model file {path!r}: header field {field!r} must be "
                         f"{{'class': name, 'kwargs': {{...}}}}, got {text[:200]!r}")
    return arch


def check_architecture(architecture: dict, shapes: Mapping[str, tuple], path: str, field: str) -> None:
    """Refuse an architecture that disagrees with the stored tensors or is too large.

    Parameters
    ----------
    architecture : dict
        ``{"class": name, "kwargs": {...}}`` as :func:`langevin_md.learned.models.build_model`
        takes it.
    shapes : mapping of str to tuple of int
        Every stored tensor's name and shape, read from the file's header.
    path, field : str
        The file and where the architecture came from (a header field, or ``"architecture="``
        for one passed by the caller), for messages.

    Raises
    ------
    ValueError
        Naming the file, the field and the offending value: a layer count larger than the
        number of stored tensors, a model larger than :data:`MAX_PARAMETERS`, missing or extra
        tensors, or a tensor whose stored shape differs from the architecture's.
    """
    kwargs = architecture.get("kwargs", {}) if isinstance(architecture, dict) else {}
    n_layers = kwargs.get("n_layers") if isinstance(kwargs, dict) else None
    # A module per layer is built even on the meta device: bound the count by the file first.
    if isinstance(n_layers, int) and not isinstance(n_layers, bool) and n_layers > len(shapes):
        raise ValueError(f"model file {path!r}: {field} {kwargs!r} says n_layers={n_layers}, but the file "
                         f"stores only {len(shapes)} tensors; the architecture does not match the weights")
    try:
        with torch.device("meta"):
            model = build_model(architecture)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise ValueError(f"model file {path!r}: {field} {architecture!r} cannot be built: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    total = sum(math.prod(s) for s in expected.values())
    if total > MAX_PARAMETERS:
        raise ValueError(f"model file {path!r}: {field} {architecture.get('kwargs')!r} declares {total:,} "
                         f"parameters, more than the limit of {MAX_PARAMETERS:,}; refusing to build it")
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        raise ValueError(f"model file {path!r}: {field} {architecture.get('kwargs')!r} does not match the "
                         f"stored tensors: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        stored = tuple(int(s) for s in shapes[name])
        if stored != shape:
            raise ValueError(f"model file {path!r}: {field} {architecture.get('kwargs')!r} gives tensor "
                             f"{name!r} shape {shape}, but the file stores shape {stored}")

