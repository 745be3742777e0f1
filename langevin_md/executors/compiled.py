"""The torch executor's compiled path: one compiled step graph per (system, integrator, dtype).

``torch.compile`` traces :func:`chunk_steps` (``k`` steps drawing from a
:class:`~langevin_md.random.CounterStream`) once and reuses the graph:

* **for every walker count**: the walker dimension of the state and of the stream keys is
  marked dynamic before each call, so the graph is traced with a symbolic batch size (a run
  with a single walker may get its own graph: torch specialises sizes 0 and 1);
* **for every segment length and ``record_every``**: a segment is cut into calls of a fixed
  number of steps (:func:`chunk_length`), each ``k`` its own code object, so no guard on
  ``k`` ever fails;
* **for every stream position**: the stream counter enters as a 0-d int64 tensor, never as
  a Python int the graph would specialise on;
* **across** :func:`langevin_md.sample` **calls and samplers**: the compiled functions live
  in a table keyed weakly by the system object (:func:`compiled_chunk`), so a new sampler on
  the same system and integrator class finds the graph already traced; a change of the
  integrator's parameters (a guard) traces again;
* **across processes**: inductor's FX-graph and AOT-autograd caches live under
  :func:`compile_cache_dir`, so a second process only re-traces (dynamo) and loads the
  kernels. :func:`record_compile_time` keeps, next to them, the seconds each fingerprint took
  to compile, which ``compile="auto"`` uses as the expected cost of the next compile.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import types
import weakref
from pathlib import Path
from typing import Optional

import torch

from ..random import CounterStream

#: Steps fused into one compiled call for cheap systems (analytic potentials): fusing across
#: steps removes per-step launches where a step is a few elementwise kernels.
COMPILE_CHUNK = 8
#: Molecular systems compile one step per call: a force-field step is hundreds of ops, so
#: fusing across steps saves next to nothing per step, while an unrolled 8-step graph takes
#: about eight times as long to compile.
MOLECULAR_COMPILE_CHUNK = 1


def chunk_length(system) -> int:
    """Steps per compiled call for ``system`` (:data:`COMPILE_CHUNK` or :data:`MOLECULAR_COMPILE_CHUNK`)."""
    return MOLECULAR_COMPILE_CHUNK if getattr(system, "units", None) == "molecular" else COMPILE_CHUNK


def _torch_default_cache_dir() -> Optional[str]:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: then only an explicit setting counts
        return None
    return os.path.abspath(default_cache_dir())


def _user_cache_dir() -> Optional[str]:
    """``$TORCHINDUCTOR_CACHE_DIR`` when a user chose it (torch writes its default there too)."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not env or os.path.abspath(env) == _torch_default_cache_dir():
        return None
    return env


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept between runs.

    ``$TORCHINDUCTOR_CACHE_DIR`` when a user set it (torch's own setting); otherwise
    ``$XDG_CACHE_HOME/langevin_md/torchinductor`` (``~/.cache/langevin_md/torchinductor``),
    which, unlike torch's default under the temporary directory, survives reboots and
    temp-file cleaners. Delete it to force a cold compile.
    """
    env = _user_cache_dir()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "langevin_md" / "torchinductor"


@contextlib.contextmanager
def persistent_compile_cache():
    """Point torch's compile cache at :func:`compile_cache_dir` for a block, then restore.

    Torch reads ``$TORCHINDUCTOR_CACHE_DIR`` whenever it looks for or writes a kernel, and
    writes its default there when unset; the previous value comes back afterwards.
    """
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def compiler_missing(device: torch.device) -> Optional[str]:
    """Why ``torch.compile`` cannot compile for ``device`` here, or None when it can.

    Checks what inductor needs without compiling anything: a C++ compiler on the CPU, Triton
    on CUDA, and a Python that dynamo supports.
    """
    try:
        import torch._dynamo as dynamo  # slow to import (~1 s): only when a run may compile
    except Exception as exc:  # a broken install: say so rather than fail the run
        return f"torch._dynamo does not import ({type(exc).__name__}: {exc})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version"
    if device.type == "cpu":
        if not (os.environ.get("CXX") or any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
            return "no C++ compiler (g++, c++ or clang++) on PATH"
    elif device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed"
    else:
        return f"the compiled path is tested on CPU and CUDA only, not {device.type}"
    return None


def chunk_steps(integrator, system, state, keys: torch.Tensor, counter: torch.Tensor, k: int):
    """``k`` steps drawing from a :class:`CounterStream`; traced by ``torch.compile``.

    Returns the new state, the per-walker accepted count over the ``k`` steps (``(n_walkers,)``
    int64, or None for schemes without a Metropolis test) and the words each walker's stream
    consumed (a trace-time constant).
    """
    stream = CounterStream(keys, counter)
    accepted = None
    for _ in range(k):
        state, info = integrator.step(system, state, stream)
        if info.accepted is not None:
            accepted = info.accepted.long() if accepted is None else accepted + info.accepted
    return state, accepted, stream.consumed


#: system -> {(integrator class, dtype, device, k): compiled function}. Weak in the system,
#: so a system's graphs go when the system does.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_chunk(system, integrator, dtype: torch.dtype, device: torch.device, k: int):
    """The compiled :func:`chunk_steps` for this system, integrator class, dtype, device and ``k``.

    Each key gets a code object of its own: dynamo keeps its graphs per code object, with a
    limit on their number, so keys sharing one would evict each other's graphs and a change
    of ``k`` would count as a recompilation. Built on first use, traced on first call.
    """
    table = _COMPILED.setdefault(system, {})
    key = (type(integrator), dtype, device, k)
    fn = table.get(key)
    if fn is None:
        code = chunk_steps.__code__.replace()
        fresh = types.FunctionType(code, chunk_steps.__globals__, chunk_steps.__name__)
        # dynamic=None: sizes marked with maybe_mark_dynamic are traced symbolically; nothing
        # else is (the force field's atom counts and parameters stay static and specialised).
        fn = table[key] = torch.compile(fresh, dynamic=None)
    return fn


#: system -> keys of :data:`_COMPILED` whose function has run once (its graph exists).
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def mark_compiled(system, integrator, dtype: torch.dtype, device: torch.device, k: int) -> None:
    """Note that :func:`compiled_chunk`'s function for this key has run (its graph exists)."""
    _TRACED.setdefault(system, set()).add(_traced_key(integrator, dtype, device, k))


def is_compiled(system, integrator, dtype: torch.dtype, device: torch.device, k: int) -> bool:
    """Whether this process holds a traced graph for this key (:func:`mark_compiled`)."""
    return _traced_key(integrator, dtype, device, k) in _TRACED.get(system, ())


def _traced_key(integrator, dtype, device, k) -> tuple:
    # The integrator's settings too (its repr): dynamo guards on them, so other settings trace
    # a graph of their own.
    return (type(integrator), repr(integrator), dtype, device, k)


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far (its ``unique_graphs`` counter)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def mark_walker_dim(tensors, n_walkers: int) -> None:
    """Mark the walker dimension (dim 0 of size ``n_walkers``) of ``tensors`` dynamic."""
    import torch._dynamo  # loaded already by torch.compile; explicit for the attribute below

    mark = torch._dynamo.maybe_mark_dynamic
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.ndim >= 1 and t.shape[0] == n_walkers:
            mark(t, 0)


# ---------------------------------------------------------------------- compile-time records
#: File under :func:`compile_cache_dir` with the measured compile seconds per fingerprint.
COMPILE_TIMES_FILE = "langevin_md_compile_times.json"


def fingerprint(system, integrator, dtype: torch.dtype, device: torch.device, k: int) -> str:
    """What a compiled graph depends on, as a key of the compile-time record."""
    shape = "x".join(str(d) for d in system.event_shape)
    return (f"{type(system).__name__}[{shape}]/{type(integrator).__name__}/{dtype}/{device.type}/"
            f"k={k}/torch {torch.__version__}")


def _read_times() -> dict:
    path = compile_cache_dir() / COMPILE_TIMES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_compile_time(key: str) -> Optional[float]:
    """Seconds the last compile of fingerprint ``key`` took on this machine, or None."""
    value = _read_times().get(key)
    return float(value) if isinstance(value, (int, float)) else None


def record_compile_time(key: str, seconds: float) -> None:
    """Remember that compiling ``key`` took ``seconds`` (written atomically; errors ignored:
    the record only informs ``compile="auto"``'s estimate)."""
    try:
        folder = compile_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        data = _read_times()
        data[key] = round(float(seconds), 3)
        tmp = folder / f".{COMPILE_TIMES_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, folder / COMPILE_TIMES_FILE)
    except OSError:
        pass


__all__ = ["COMPILE_CHUNK", "MOLECULAR_COMPILE_CHUNK", "chunk_length", "compile_cache_dir",
           "persistent_compile_cache", "compiler_missing", "chunk_steps", "compiled_chunk",
           "is_compiled", "mark_compiled", "graphs_compiled", "mark_walker_dim", "fingerprint", "recorded_compile_time",
           "record_compile_time", "COMPILE_TIMES_FILE"]
