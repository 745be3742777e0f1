"""The schema of a saved force field, checked before anything is built from it.

A saved force field (:meth:`langevin_md.systems.TorchForceField.save`) is one
safetensors file: tensors plus a JSON header under the metadata key
``"langevin_md.forcefield"``. A crafted or damaged file must be refused here with a message
naming the file and the offending field, never later inside torch (an atom index out of
range, a float index silently truncated, a spline table of the wrong length) or as a bare
``KeyError`` / ``JSONDecodeError``.

Two steps, both before any term is built:

* :func:`parse_header`: the JSON header's keys and types.
* :func:`check_tensors`: every tensor the header refers to exists, with the dtype and shape
  the header implies (from the safetensors header, before the data are read), and every atom
  index lies in ``[0, n_atoms)``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import torch

#: Buffer names (last dotted component) holding atom indices.
INDEX_BUFFERS = frozenset({"atoms", "pairs", "pairs_excluding", "pairs_all", "exclusions"})

#: Upper bound on atoms and on any declared table size: bounds what a header can make us build.
MAX_ATOMS = 10_000_000

_INTEGER_DTYPES = frozenset({"I8", "I16", "I32", "I64", "U8", "U16", "U32"})
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


class _Where:
    """Builds messages that name the file and the field."""

    def __init__(self, path: str):
        self.path = path

    def error(self, field: str, problem: str) -> ValueError:
        return ValueError(f"saved force field {self.path!r}: {field} {problem}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_header(path: str, text: str, fmt: str, version: int) -> dict[str, Any]:
    """The header of a saved force field, with its keys and types checked.

    Parameters
    ----------
    path : str
        The file, for messages.
    text : str
        The JSON text stored under metadata key ``fmt``.
    fmt : str
        The metadata key (also the header's ``format`` value).
    version : int
        The format version this langevin_md reads.

    Returns
    -------
    dict
        The header: ``version``, ``n_atoms``, ``temperature`` (K), ``constrained``, ``terms``
        (a list of ``{"kind", "spec", "buffers"}``) and ``topology`` (dict or None).

    Raises
    ------
    ValueError
        Naming the file and the field: non-JSON text, a missing key, a wrong type or range.
    """
    where = _Where(path)
    if len(text) > 256 * 1024 * 1024:
        raise where.error(f"header {fmt!r}", f"is {len(text)} characters long; refusing to parse it")
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise where.error(f"header {fmt!r}", f"is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise where.error(f"header {fmt!r}", f"must be a JSON object, got {type(header).__name__}")
    if header.get("version") != version:
        raise where.error("header field 'version'", f"is {header.get('version')!r}; this langevin_md reads "
                          f"version {version}")
    for key in ("n_atoms", "temperature", "constrained", "terms"):
        if key not in header:
            raise where.error(f"header field {key!r}", "is missing")
    n_atoms = header["n_atoms"]
    if not (_is_int(n_atoms) and 1 <= n_atoms <= MAX_ATOMS):
        raise where.error("header field 'n_atoms'", f"must be an integer in [1, {MAX_ATOMS}], got {n_atoms!r}")
    if not (_is_number(header["temperature"]) and header["temperature"] > 0):
        raise where.error("header field 'temperature'", f"must be a positive number (K), got "
                          f"{header['temperature']!r}")
    if not isinstance(header["constrained"], bool):
        raise where.error("header field 'constrained'", f"must be true or false, got {header['constrained']!r}")
    if header.get("topology") is not None and not isinstance(header["topology"], dict):
        raise where.error("header field 'topology'", f"must be an object or null, got "
                          f"{type(header['topology']).__name__}")
    terms = header["terms"]
    if not isinstance(terms, list):
        raise where.error("header field 'terms'", f"must be a list, got {type(terms).__name__}")
    for k, entry in enumerate(terms):
        field = f"header field terms[{k}]"
        if not isinstance(entry, dict):
            raise where.error(field, f"must be an object, got {type(entry).__name__}")
        for key, kind in (("kind", str), ("spec", dict), ("buffers", list)):
            if not isinstance(entry.get(key), kind):
                raise where.error(f"{field}.{key}", f"must be a {kind.__name__}, got {entry.get(key)!r:.200}")
        if not all(isinstance(b, str) for b in entry["buffers"]):
            raise where.error(f"{field}.buffers", "must list buffer names (strings)")
        spec_atoms = entry["spec"].get("n_atoms", n_atoms)
        if spec_atoms != n_atoms:
            raise where.error(f"{field}.spec.n_atoms", f"is {spec_atoms!r}, but the header's n_atoms is {n_atoms}")
    return header


def _expect(where: _Where, shapes: Mapping[str, tuple], dtypes: Mapping[str, str], name: str,
            shape: tuple, kinds: frozenset, what: str) -> None:
    """Require tensor ``name`` with ``shape`` (None entries: any size) and a dtype in ``kinds``."""
    if name not in shapes:
        raise where.error(f"tensor {name!r}", "is missing")
    got = tuple(shapes[name])
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise where.error(f"tensor {name!r}", f"has shape {got}; expected {expected} ({what})")
    if dtypes[name] not in kinds:
        raise where.error(f"tensor {name!r}", f"has dtype {dtypes[name]}; expected "
                          f"{'an integer' if kinds is _INTEGER_DTYPES else 'a floating-point'} dtype ({what})")


def _check_functions(where: _Where, prefix: str, functions, shapes, dtypes) -> None:
    if not isinstance(functions, dict):
        raise where.error(f"{prefix}spec.functions", "must be an object")
    for name, spec in functions.items():
        field = f"{prefix}spec.functions[{name!r}]"
        base = f"{prefix}functions.{name}."
        if not isinstance(spec, dict):
            raise where.error(field, "must be an object")
        kind = spec.get("type")
        if kind == "Continuous1DFunction":
            values = base + "values"
            _expect(where, shapes, dtypes, values, (None,), _FLOAT_DTYPES, "spline values")
            n = shapes[values][0]
            _expect(where, shapes, dtypes, base + "second_derivatives", (n,), _FLOAT_DTYPES,
                    f"one second derivative per value, {n}")
        elif kind == "Continuous2DFunction":
            shape = spec.get("shape")
            if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(s) and 2 <= s <= MAX_ATOMS
                                                                        for s in shape)):
                raise where.error(f"{field}.shape", f"must be two integers >= 2, got {shape!r}")
            nx, ny = shape
            _expect(where, shapes, dtypes, base + "values", (nx * ny,), _FLOAT_DTYPES, f"{nx} x {ny} grid")
            _expect(where, shapes, dtypes, base + "coefficients", (nx - 1, ny - 1, 4, 4), _FLOAT_DTYPES,
                    "bicubic patch coefficients")
        elif kind == "DiscreteFunction":
            shape = spec.get("shape")
            if not (isinstance(shape, list) and 1 <= len(shape) <= 3
                    and all(_is_int(s) and 1 <= s <= MAX_ATOMS for s in shape)):
                raise where.error(f"{field}.shape", f"must be 1 to 3 positive integers, got {shape!r}")
            _expect(where, shapes, dtypes, base + "values", (math.prod(shape),), _FLOAT_DTYPES,
                    f"table of shape {tuple(shape)}")
        else:
            raise where.error(f"{field}.type", f"is {kind!r}; expected Continuous1DFunction, "
                              "Continuous2DFunction or DiscreteFunction")


def check_tensor_layout(path: str, header: dict, shapes: Mapping[str, tuple], dtypes: Mapping[str, str]) -> None:
    """Check the stored tensors' names, dtypes and shapes against the header, before reading them.

    Parameters
    ----------
    path : str
        The file, for messages.
    header : dict
        From :func:`parse_header`.
    shapes, dtypes : mapping of str
        Each stored tensor's shape and safetensors dtype name (``"F64"``, ``"I64"``...).

    Raises
    ------
    ValueError
        Naming the file and the tensor or header field.
    """
    where = _Where(path)
    n = header["n_atoms"]
    _expect(where, shapes, dtypes, "masses", (n,), _FLOAT_DTYPES, "one mass per atom")
    if "positions" in shapes:
        _expect(where, shapes, dtypes, "positions", (n, 3), _FLOAT_DTYPES, "reference positions, nm")
    if "constraints.atoms" in shapes or "constraints.distances" in shapes:
        _expect(where, shapes, dtypes, "constraints.atoms", (None, 2), _INTEGER_DTYPES, "atom pairs")
        m = shapes["constraints.atoms"][0]
        _expect(where, shapes, dtypes, "constraints.distances", (m,), _FLOAT_DTYPES, "one distance per pair")
    for k, entry in enumerate(header["terms"]):
        prefix = f"terms.{k}."
        for name in entry["buffers"]:
            if prefix + name not in shapes:
                raise where.error(f"header field terms[{k}].buffers", f"names {name!r}, but tensor "
                                  f"{prefix + name!r} is missing")
            if name.rsplit(".", 1)[-1] in INDEX_BUFFERS and dtypes[prefix + name] not in _INTEGER_DTYPES:
                raise where.error(f"tensor {prefix + name!r}", f"holds atom indices as {dtypes[prefix + name]}; "
                                  "expected an integer dtype (float indices would be truncated)")
        if "functions" in entry["spec"]:
            _check_functions(where, prefix, entry["spec"]["functions"], shapes, dtypes)
        if entry["kind"] == "cmap_torsion":
            _expect(where, shapes, dtypes, prefix + "first_cell", (None, 1), _INTEGER_DTYPES, "map offsets")
            t = shapes[prefix + "first_cell"][0]
            _expect(where, shapes, dtypes, prefix + "size", (t, 1), _INTEGER_DTYPES, "map sizes")
            _expect(where, shapes, dtypes, prefix + "atoms", (4, 2 * t), _INTEGER_DTYPES, "torsion quadruples")
            _expect(where, shapes, dtypes, prefix + "table", (16, None), _FLOAT_DTYPES, "map coefficients")


def check_tensor_values(path: str, header: dict, tensors: Mapping[str, torch.Tensor]) -> None:
    """Check atom indices (in ``[0, n_atoms)``) and CMAP table offsets once the tensors are read.

    Raises
    ------
    ValueError
        Naming the file, the tensor and the offending value.
    """
    where = _Where(path)
    n = header["n_atoms"]
    names = [f"terms.{k}.{b}" for k, e in enumerate(header["terms"]) for b in e["buffers"]
             if b.rsplit(".", 1)[-1] in INDEX_BUFFERS]
    if "constraints.atoms" in tensors:
        names.append("constraints.atoms")
    for name in names:
        t = tensors[name]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
            raise where.error(f"tensor {name!r}", f"holds atom index {bad}; expected indices in [0, {n})")
    for k, entry in enumerate(header["terms"]):
        if entry["kind"] != "cmap_torsion":
            continue
        first, size = tensors[f"terms.{k}.first_cell"], tensors[f"terms.{k}.size"]
        cells = tensors[f"terms.{k}.table"].shape[1]
        if first.numel() and (int(first.min()) < 0 or int(size.min()) < 2
                              or int((first + size * size).max()) > cells):
            raise where.error(f"tensors 'terms.{k}.first_cell'/'terms.{k}.size'",
                              f"address cells outside the table of {cells} cells")


def read_checked(path: str, fmt: str, version: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a saved force field's header and tensors, checking the schema at each step.

    The header is parsed and checked, then the tensors' names, dtypes and shapes (from the
    safetensors header, before any data are read), then the data are read and atom indices
    checked.

    Parameters
    ----------
    path : str
        The ``.safetensors`` file.
    fmt : str
        Metadata key of the JSON header.
    version : int
        The format version this langevin_md reads.

    Returns
    -------
    header : dict
    tensors : dict of str to torch.Tensor

    Raises
    ------
    ValueError
        Naming the file and the offending field or tensor.
    """
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if fmt not in meta:
                raise ValueError(f"{path!r} is not a langevin_md force field (no {fmt!r} header)")
            header = parse_header(path, meta[fmt], fmt, version)
            names = list(f.keys())
            check_tensor_layout(path, header, {k: tuple(f.get_slice(k).get_shape()) for k in names},
                                {k: f.get_slice(k).get_dtype() for k in names})
            tensors = {k: f.get_tensor(k) for k in names}
    except (OSError, ValueError):
        raise
    except Exception as exc:  # safetensors' own error type for a damaged file
        raise ValueError(f"saved force field {path!r} is not a readable safetensors file: {exc}") from None
    check_tensor_values(path, header, tensors)
    return header, tensors
