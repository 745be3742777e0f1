"""Saving and loading models without executing code from files.

Two formats, chosen by the file extension:

* ``.safetensors``: the state dict, with the architecture as JSON in the header metadata
  (key ``"langevin_md.architecture"``).
* ``.pt`` / ``.pth``: ``torch.save({"architecture": JSON string, "state_dict": ...})``,
  readable with ``torch.load(weights_only=True)``.

Loading never unpickles arbitrary objects: a file holding a pickled module (what
``torch.save(model)`` writes) is refused unless the caller passes ``trust_pickle=True``,
because unpickling runs whatever code the file's author put in it.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Optional, Union

import torch
from torch import nn

from .arch_check import check_architecture, parse_architecture
from ..safe_paths import make_dirs, write_via_temp

from .models import build_model

PathLike = Union[str, os.PathLike]
_META_KEY = "langevin_md.architecture"
_TORCH_EXT = (".pt", ".pth")


def _kind(path: PathLike) -> str:
    p = os.fspath(path).lower()
    if p.endswith(".safetensors"):
        return "safetensors"
    if p.endswith(_TORCH_EXT):
        return "torch"
    raise ValueError(f"model file {os.fspath(path)!r} must end in .safetensors, .pt or .pth")


def save_model(model: nn.Module, path: PathLike, architecture: Optional[dict] = None) -> str:
    """Write a model's weights and declared architecture.

    Parameters
    ----------
    model : torch.nn.Module
        Its ``architecture()`` (the models of :mod:`langevin_md.learned.models`) is stored
        so :func:`load_model` can rebuild it; other modules store ``architecture`` if given,
        else weights only (load them with ``load_model(path, architecture=module)``).
    path : str or PathLike
        ``.safetensors`` or ``.pt``/``.pth``. Written atomically (temporary file + rename),
        so a crash never leaves half a checkpoint.

    Returns
    -------
    str
        The path written.
    """
    kind = _kind(path)
    if architecture is None and hasattr(model, "architecture"):
        architecture = model.architecture()
    arch = json.dumps(architecture) if architecture is not None else ""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = os.fspath(path)
    make_dirs(os.path.dirname(os.path.abspath(path)))
    # A fresh temporary file (O_EXCL) renamed over ``path``: never written through a link
    # planted at ``path`` or at a predictable temporary name.
    if kind == "safetensors":
        from safetensors.torch import save_file

        write_via_temp(path, lambda tmp: save_file(state, tmp, metadata={_META_KEY: arch}))
    else:
        write_via_temp(path, lambda tmp: torch.save({"architecture": arch, "state_dict": state}, tmp))
    return path


def _resolve_architecture(architecture, stored: str, shapes: dict, path: str):
    """The module or architecture dict to load into, checked against the stored shapes.

    Nothing is allocated before the check (see :mod:`langevin_md.learned.arch_check`).
    """
    if isinstance(architecture, nn.Module):
        return architecture
    if isinstance(architecture, dict):
        check_architecture(architecture, shapes, path, "architecture=")
        return architecture
    if architecture is None and stored:
        arch = parse_architecture(stored, path, _META_KEY)
        check_architecture(arch, shapes, path, f"header field {_META_KEY!r}")
        return arch
    if architecture is None:
        raise ValueError(
            f"{path!r} holds weights without a declared architecture; pass architecture= (a "
            "module to load them into, or a dict {'class': ..., 'kwargs': {...}})"
        )
    raise TypeError(f"architecture must be a torch.nn.Module or a dict, got {type(architecture).__name__}")


def _build(architecture, state: dict, path: str) -> nn.Module:
    model = architecture if isinstance(architecture, nn.Module) else build_model(architecture)
    # A freshly built model is float32; load_state_dict would round float64 weights into it.
    dtypes = {t.dtype for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    model.load_state_dict(state)
    return model


def load_model(path: PathLike, architecture=None, trust_pickle: bool = False, map_location="cpu") -> nn.Module:
    """Load a model saved by :func:`save_model` (or any weights-only state dict).

    Parameters
    ----------
    path : str or PathLike
        ``.safetensors``, ``.pt`` or ``.pth``.
    architecture : torch.nn.Module or dict, optional
        Overrides the stored architecture: a module to load the weights into, or a dict
        ``{"class": "EnergyMLP", "kwargs": {...}}``. Needed for files without one.
    trust_pickle : bool
        Allow a ``.pt`` file holding a pickled module (``torch.save(model)``). Unpickling
        executes code chosen by the file's author; only set this for files you made.
    map_location : str or torch.device

    Returns
    -------
    torch.nn.Module
        In eval mode.
    """
    kind = _kind(path)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if kind == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(path, framework="pt") as f:
                stored = (f.metadata() or {}).get(_META_KEY, "")
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise ValueError(f"model file {path!r} is not a readable safetensors file: {exc}") from None
        architecture = _resolve_architecture(architecture, stored, shapes, path)
        model = _build(architecture, load_file(path, device=str(map_location)), path)
        return model.eval()
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError) as exc:
        # torch's zip reader says RuntimeError for a truncated or damaged archive (EOFError
        # for an empty file): a broken file, not a bug, so it is named like the others.
        raise ValueError(f"model file {path!r} is not a readable torch file (truncated or damaged?): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise ValueError(
                f"{path!r} is a pickled Python object (e.g. torch.save(model)), not a weights-only "
                "file. Loading it would execute code from the file, so it is refused. Re-save it "
                "with langevin_md.training.save_model (or torch.save(model.state_dict())), or, only "
                "if you trust its author, pass trust_pickle=True."
            ) from exc
        obj = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(obj, nn.Module):
            raise TypeError(f"{path!r} unpickled to a {type(obj).__name__}, not a torch.nn.Module") from None
        return obj.eval()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state, stored = obj["state_dict"], obj.get("architecture") or ""
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, stored = obj, ""
    else:
        raise ValueError(f"{path!r} holds a {type(obj).__name__} that is neither a model file nor a state dict")
    if not isinstance(stored, str):
        raise ValueError(f"model file {path!r}: field 'architecture' must be JSON text, got {type(stored).__name__}")
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    model = _build(_resolve_architecture(architecture, stored, shapes, path), state, path)
    return model.eval()
