"""Run configuration files: TOML in, the Python API's own objects out.

A config has three tables, and every key maps onto a Python argument::

    [system]                 # name = a built-in system; other keys are its constructor's arguments
    name = "muller_brown"
    kT = 20.0

    [integrator]             # name = ula, brownian, mala, baoab, obabo, hmc, rwm
    name = "mala"
    step_size = 1e-4

    [sampler]                # the executor's constructor, run(...) and CheckpointReporter(every=...)
    backend = "auto"         # or "torch", "openmm": the executor (langevin_md.executors.BACKENDS);
                             # "auto" is resolved before the run folder is made
    n_steps = 10000
    n_walkers = 64
    record_every = 10
    seed = 0
    checkpoint_every = 1000
    # initial_positions = "exact"   # exact draws from the target, for tests of stationary
                                    # laws only; by default the system's documented start

Two optional tables change how the run starts and moves::

    [minimize]               # minimise every walker before burn-in (langevin_md.minimize)
    tolerance = 10.0         # OpenMM's force criterion for both methods (langevin_md.minimize):
                             # kJ/mol/nm (molecular) or reduced units (analytic)
    max_iterations = 1000

    [tempering]              # replica exchange around [integrator] (ReplicaExchange)
    n_temperatures = 4       # rungs; n_walkers must be a multiple of it
    max_temperature = 600.0  # hottest rung: kelvin for molecular systems, kT for analytic ones
    # temperatures = [300.0, 360.0, 430.0, 520.0]   # or the whole ladder (first = the system's)
    swap_every = 10
    scheme = "deterministic" # or "stochastic"
    adapt_ladder = false

    [output]                 # extra files in the run folder (not part of the trajectory)
    state_every = 100        # state.csv: a row of walker-averaged energies etc. every N steps
    state_terminal = false   # also print those rows on the terminal
    progress_every = "30 s"  # a progress line (step, rate, ETA) in run.log, and on stderr when
                             # no progress bar is shown; summary.json is rewritten at least
                             # every minute and at each checkpoint whatever this says
    forces = false           # also record every frame's forces (float32, fields/forces)

    [prior]                  # a learned energy added to the system: U = U_ff + weight * U_prior
    model = "prior.safetensors"   # relative to the config file (langevin_md.run.prior)
    features = "phi_psi"     # "phi_psi", "positions" or "cg" (then atoms = [...])
    weight = 0.5             # the run records U_ff and U_prior (= weight * U_prior) apart

Temperatures are in the system's own units: kelvin for molecular systems (their
``temperature``), kT for analytic ones (their ``kT``); the ladder passed to
:class:`~langevin_md.integrators.tempering.ReplicaExchange` is their ratio to the system's.
The geometric ladder from ``n_temperatures`` and ``max_temperature`` is
:func:`~langevin_md.integrators.tempering.geometric_ladder`. Tempering runs on
``backend = "torch"`` only (``"auto"`` picks it).

Integrator settings with a unit (``timestep``, ``friction``, ``step_size``, ``scale``,
``sigmas``; each class lists them in ``physical_units``) are numbers in MD units (ps, 1/ps,
nm², nm; reduced units for analytic systems) or text with a unit, such as
``timestep = "2 fs"``, ``friction = "1/ps"`` or ``step_size = "0.01 nm**2"``: a number, then
``openmm.unit`` names or symbols joined by ``*``, ``/`` and ``**``
(:func:`langevin_md.units.parse_quantity`; the text is parsed, never evaluated). The resolved
config holds the numbers in MD units.

Defaults are never restated here: the allowed keys, their defaults and (where annotated) their
types are read from the constructors' signatures with :mod:`inspect`, so the config file and
the Python API cannot drift apart. Only TOML is read (``tomllib``): a config file cannot run
code.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from importlib.metadata import entry_points
from typing import Any, Callable, Optional

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .. import checks
from ..errors import ConfigError
from ..executors import BACKEND_CHOICES
from ..integrators.tempering import ReplicaExchange
from ..minimize import minimize
from ..units import parse_quantity
from .progress import DEFAULT_PROGRESS_EVERY_S, parse_seconds
from .choices import Choice, integrator_choices, sampler_targets, system_choices
from .prior import resolve_prior

SECTIONS = ("system", "integrator", "sampler")
#: Optional tables (see the module docstring).
OPTIONAL_SECTIONS = ("minimize", "tempering", "output", "prior")
_ALL_SECTIONS = SECTIONS + OPTIONAL_SECTIONS


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One allowed key: its default (``inspect.Parameter.empty`` when required) and type."""

    name: str
    default: Any
    annotation: Optional[str]

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def parameters(fn: Callable) -> dict[str, Param]:
    """Keyword parameters of ``fn`` (a class, function or ``functools.partial``) as :class:`Param`.

    Arguments already bound by a ``functools.partial`` are not offered again.
    """
    bound = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls") or p.name in bound or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation
        ann = None if ann is inspect.Parameter.empty else (ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann)))
        out[p.name] = Param(p.name, p.default, ann)
    return out


_SIMPLE = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _expected_types(annotation: Optional[str]) -> Optional[tuple[str, bool]]:
    """``(type name, None allowed)`` for simple annotations such as ``float`` or ``Optional[str]``."""
    if annotation is None:
        return None
    a = annotation.replace(" ", "")
    m = re.fullmatch(r"Optional\[(\w+)\]", a) or re.fullmatch(r"(\w+)\|None", a) or re.fullmatch(r"None\|(\w+)", a)
    if m and m.group(1) in _SIMPLE:
        return m.group(1), True
    if a in _SIMPLE:
        return a, False
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_annotation(annotation: Optional[str]) -> bool:
    """True when an annotation names numbers (int/float) and neither strings nor bools."""
    if annotation is None:
        return False
    words = set(re.findall(r"[A-Za-z_]+", annotation))
    return bool(words & {"int", "float", "Real", "Number"}) and not words & {"str", "bool", "Any", "PathLike"}


def _check_type(where: str, key: str, value, param: Param) -> None:
    expected = _expected_types(param.annotation)
    if expected is not None:
        tname, _ = expected
        ok = isinstance(value, _SIMPLE[tname]) and not (isinstance(value, bool) and tname != "bool")
        if not ok:
            raise ConfigError(f"{where} {key}: expected {_TYPE_WORDS[tname]} ({tname}), got "
                              f"{value!r} ({_toml_type(value)})")
        return
    # Other settings whose default or annotation is a number take numbers only: "1e-4" or
    # true would otherwise reach the constructor (and true would count as 1).
    words = set(re.findall(r"[A-Za-z_]+", param.annotation or ""))
    numeric = ((_is_number(param.default) and not words & {"str", "Any", "PathLike"})
               or _numeric_annotation(param.annotation))
    if numeric and not (_is_number(value) or (value is None and param.default is None)
                        or (isinstance(value, list) and all(_is_number(v) for v in value))):
        raise ConfigError(f"{where} {key}: expected a number, got {value!r} ({_toml_type(value)}); "
                          "write numbers without quotes and not as true/false")


def _toml_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _unknown(what: str, key: str, allowed) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {key!r}{hint}; allowed: {', '.join(allowed) if allowed else '(none)'}"


# --------------------------------------------------------------------------- the config
@dataclass
class RunConfig:
    """A validated config with every default filled in.

    Attributes
    ----------
    system : dict
        ``name`` plus the system constructor's keyword arguments.
    integrator : dict
        ``name`` plus the integrator's settings.
    sampler : dict
        n_steps, n_walkers, record_every, burn_in, seed, device, dtype, checkpoint_every.
    minimize : dict or None
        ``tolerance``, ``max_iterations``, ``method`` of :func:`langevin_md.minimize.minimize`,
        or None (no ``[minimize]`` table: no minimisation).
    tempering : dict or None
        The ``[tempering]`` table with defaults filled in, or None (no replica exchange).
    output : dict or None
        ``state_every`` (int or None), ``state_terminal`` (bool), ``progress_every``
        (seconds) and ``forces`` (bool), or None.
    prior : dict or None
        ``model`` (absolute path), ``features``, ``weight`` (and ``atoms`` for ``"cg"``):
        :mod:`langevin_md.run.prior`; None without a ``[prior]`` table.
    source : str or None
        The file it was read from.
    """

    system: dict
    integrator: dict
    sampler: dict
    source: Optional[str] = field(default=None, compare=False)
    minimize: Optional[dict] = None
    tempering: Optional[dict] = None
    output: Optional[dict] = None
    prior: Optional[dict] = None
    #: Why ``backend = "auto"`` picked ``sampler["backend"]`` (set by
    #: :func:`~langevin_md.run.build.resolve_backend`; written to the resolved config as a comment).
    backend_reason: Optional[str] = field(default=None, compare=False)

    @property
    def system_kind(self) -> str:
        """``"analytic"`` or ``"molecular"``."""
        return system_choices()[self.system["name"]].kind

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict:
        """The tables as dictionaries; optional tables only when present."""
        out = {"system": dict(self.system), "integrator": dict(self.integrator), "sampler": dict(self.sampler)}
        for section in OPTIONAL_SECTIONS:
            if getattr(self, section) is not None:
                out[section] = dict(getattr(self, section))
        return out

    def to_toml(self) -> str:
        """The resolved config as TOML; keys whose value is None are shown as comments."""
        lines = ["# Resolved by langevin-md: every key with its value, defaults filled in.",
                 "# Keys set to None (TOML has no null) appear as comments.", ""]
        for section in _ALL_SECTIONS:
            if getattr(self, section) is None:
                continue
            lines.append(f"[{section}]")
            for key, value in getattr(self, section).items():
                if value is None:
                    lines.append(f"# {key} = None (default)")
                else:
                    lines.append(f"{key} = {toml_value(value)}")
                if section == "sampler" and key == "backend" and self.backend_reason:
                    lines.append(f"# backend = \"auto\" chose it: {' '.join(self.backend_reason.split())}")
            lines.append("")
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """Hash of everything that determines the trajectory (not n_steps or checkpoint_every,
        which a resumed run may change without changing any frame)."""
        d = self.to_dict()
        for k in ("n_steps", "checkpoint_every"):
            d["sampler"].pop(k, None)
        output = d.pop("output", None)  # what is reported besides the trajectory never changes a frame
        if output and output.get("forces"):
            d["output_forces"] = True  # ...but recorded forces are part of the trajectory file
        if d["sampler"].get("backend") == "torch":
            del d["sampler"]["backend"]  # the default: run folders from before the key existed match
        if "initial_positions" in d["sampler"] and d["sampler"]["initial_positions"] is None:
            del d["sampler"]["initial_positions"]  # the same for the default start
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def end_step(self) -> int:
        """Global step at which the run is complete (burn-in plus production)."""
        return int(self.sampler["burn_in"]) + int(self.sampler["n_steps"])


def toml_value(value) -> str:
    """A TOML literal for a bool, int, float, str or (nested) list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly (any Unicode, astral planes included).

    Characters outside the Basic Multilingual Plane are written as themselves (JSON would
    write surrogate pairs, which TOML rejects); quotes, backslashes and control characters
    are escaped as TOML requires.
    """
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{text!r} holds a lone surrogate (U+{code:04X}): a file name that is not "
                             "valid Unicode cannot be written to a config; rename the file")
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\u{code:04X}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def resolve_table(where: str, table: dict, choices: dict[str, Choice], what: str, base_dir: Path) -> dict:
    if "name" not in table:
        raise ConfigError(f"{where} needs name = one of: {', '.join(sorted(choices))}")
    name = table["name"]
    if not isinstance(name, str) or name not in choices:
        raise ConfigError(f"{where} name = {name!r} is not a known {what}; known {what}s: "
                          f"{', '.join(sorted(choices))}")
    choice = choices[name]
    params = parameters(choice.factory)
    # Integrator settings with a unit (timestep, friction, step_size, ...) may be text such as
    # "2 fs"; they are converted to MD units below, by the integrator itself.
    physical = getattr(choice.factory, "physical_units", {}) if choice.kind == "integrator" else {}
    texts = {}
    out = {"name": name}
    for key, value in table.items():
        if key == "name":
            continue
        if key not in params:
            raise ConfigError(f"{where} (name = {name!r}): " + _unknown("key", key, params))
        if key in physical and _holds_text(value):
            texts[key] = value
            value = _quantities(where, key, value)
        else:
            _check_type(where, key, value, params[key])
        if key in choice.path_keys and not (isinstance(value, str)
                                            and value.strip().lower() in choice.path_keywords):
            value = _resolve_paths(where, key, value, base_dir, builtin_forcefields=(key == "forcefield"))
        elif key in choice.dir_keys and isinstance(value, str):
            value = _resolve_dir(where, key, value, base_dir)
        out[key] = value
    for key, p in params.items():
        if key in out:
            continue
        if p.required:
            raise ConfigError(f"{where} (name = {name!r}) is missing required key {key!r}")
        out[key] = _plain(p.default)
    if texts:
        out = _settings_in_md_units(where, choice, out, texts)
    return out


def _holds_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and any(isinstance(v, str) for v in value))


def _quantities(where: str, key: str, value):
    """``"2 fs"`` (or a list mixing such text and numbers) as ``openmm.unit`` Quantities."""
    if isinstance(value, list):
        if not all(isinstance(v, str) or _is_number(v) for v in value):
            raise ConfigError(f"{where} {key} = {toml_value(value)}: expected numbers (MD units) or "
                              "quantities such as \"0.1 nm\"")
        return [_quantities(where, key, v) if isinstance(v, str) else v for v in value]
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise ConfigError(f"{where} {key} = {toml_value(value)}: {exc}") from None


def _settings_in_md_units(where: str, choice: Choice, table: dict, texts: dict) -> dict:
    """``table`` with the Quantities of ``texts``'s keys replaced by plain numbers in MD units.

    The integrator converts them (it knows each setting's unit, e.g. that a preconditioned
    step size is dimensionless), so the resolved config, its fingerprint and the run folder
    hold numbers in MD units: the converted values (``"2 fs"`` gives 0.002; a conversion factor
    may leave a last-digit difference from the decimal one would type, e.g. 1.0000000000000002e-4).
    """
    kwargs = {k: v for k, v in table.items() if k != "name"}
    try:
        built = choice.factory(**kwargs)
    except (TypeError, ValueError) as exc:
        bad = next((k for k in texts if str(exc).startswith(f"{k} ")), None)
        shown = f" {bad} = {toml_value(texts[bad])}" if bad else ""
        raise ConfigError(f"{where} name = {choice.name!r}{shown}: {exc}") from None
    return {k: (_plain(getattr(built, k)) if k in texts else v) for k, v in table.items()}


def _forcefield_dirs() -> list[str]:
    """Folders where OpenMM finds force fields given by bare name (its own, and plugins')."""
    import openmm.app  # lazy: OpenMM loads only for configs naming a force field file

    dirs = [os.path.join(os.path.dirname(openmm.app.__file__), "data")]
    for entry in entry_points(group="openmm.forcefielddir"):
        try:
            dirs.append(entry.load()())
        except Exception:  # noqa: BLE001 - a broken plugin must not hide OpenMM's own files
            continue
    return dirs


def _resolve_paths(where: str, key: str, value, base_dir: Path, builtin_forcefields: bool = False):
    """Relative paths are relative to the config file, never to the working directory.

    Every path is stored absolute, so a run folder's resolved config works from anywhere. A
    path that does not exist is an error naming the key and where it was looked for; only a
    ``forcefield`` entry may instead be the bare name of a force field shipped with OpenMM
    (``amber14-all.xml``), which is kept as written.
    """
    if isinstance(value, list):
        return [_resolve_paths(where, key, v, base_dir, builtin_forcefields) for v in value]
    if not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    full = path if path.is_absolute() else base_dir / path
    if full.exists():
        if full.is_dir():
            raise ConfigError(f"{where} {key} = {_toml_string(value)} is a folder ({full}); a file is expected")
        return str(full.resolve())
    if builtin_forcefields and not path.is_absolute():
        if any(os.path.isfile(os.path.join(d, value)) for d in _forcefield_dirs()):
            return value
        raise ConfigError(f"{where} {key}: {_toml_string(value)} is neither a file beside the config "
                          f"({full}) nor a force field shipped with OpenMM")
    raise ConfigError(f"{where} {key}: file {full} does not exist (relative paths are taken relative "
                      f"to the config file's folder, {base_dir})")


def _resolve_dir(where: str, key: str, value: str, base_dir: Path) -> str:
    """A folder path, relative to the config file's folder, stored absolute."""
    path = Path(value).expanduser()
    full = path if path.is_absolute() else base_dir / path
    if not full.is_dir():
        raise ConfigError(f"{where} {key}: folder {full} does not exist (relative paths are taken relative "
                          f"to the config file's folder, {base_dir})")
    return str(full.resolve())


def _plain(value):
    """Defaults as TOML-writable values (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def parse_config(data: dict, source: Optional[str] = None, base_dir=None) -> RunConfig:
    """Validate a config dictionary (as ``tomllib`` returns it) and fill in the defaults.

    Raises
    ------
    ConfigError
        Naming the section and key, and what is allowed.
    """
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    prefix = f"{source}: " if source else ""
    try:
        for key, value in data.items():
            if key not in _ALL_SECTIONS:
                close = difflib.get_close_matches(key, _ALL_SECTIONS, n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                allowed = ", ".join(f"[{s}]" for s in _ALL_SECTIONS)
                if isinstance(value, dict):
                    raise ConfigError(f"unknown section [{key}]{hint}; allowed sections: {allowed}")
                raise ConfigError(f"unknown top-level key {key!r}: every key belongs in one of the "
                                  f"sections {allowed}")
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a table ([{key}]), got {_toml_type(value)}")
        for section in SECTIONS:  # the optional ones may be absent
            if section not in data:
                raise ConfigError(f"missing section [{section}]")
        if data["integrator"].get("name") == "replica_exchange":
            raise ConfigError("[integrator] name = \"replica_exchange\" cannot be written as a table (it wraps "
                              "another integrator): name the inner integrator in [integrator] and add a "
                              "[tempering] table (n_temperatures, max_temperature or temperatures, "
                              "swap_every, scheme, adapt_ladder)")
        system = resolve_table("[system]", data["system"], system_choices(), "system", base_dir)
        integrator = resolve_table("[integrator]", data["integrator"], integrator_choices(), "integrator", base_dir)
        sampler = _resolve_sampler(data["sampler"])
        minimize = _resolve_minimize(data["minimize"]) if "minimize" in data else None
        tempering = _resolve_tempering(data["tempering"], sampler) if "tempering" in data else None
        output = _resolve_output(data["output"]) if "output" in data else None
        prior = resolve_prior(data["prior"], base_dir) if "prior" in data else None
        # "auto" (the default) resolves to torch for a [prior] (build.resolve_backend).
        if prior is not None and sampler["backend"] not in ("torch", "auto"):
            raise ConfigError(f"[prior] needs [sampler] backend = \"torch\", got backend = {sampler['backend']!r}: "
                              "the OpenMM executor steps the OpenMM System alone and cannot add a torch energy "
                              "(both molecular engines, engine = \"torch\" or \"openmm\", work under backend "
                              "= \"torch\")")
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from None
    return RunConfig(system, integrator, sampler, source, minimize=minimize, tempering=tempering, output=output,
                     prior=prior)


#: [output] keys: (default, type) — see :class:`langevin_md.run.state_reporter.StateReporter`
#: and :class:`langevin_md.run.progress.ProgressReporter` (``progress_every``: seconds, or text
#: such as "30 s"; resolved to seconds).
_OUTPUT_KEYS = {"state_every": (None, "Optional[int]"), "state_terminal": (False, "bool"),
                "progress_every": (DEFAULT_PROGRESS_EVERY_S, None), "forces": (False, "bool")}


def _resolve_output(table: dict) -> dict:
    """The [output] table: ``state_every`` (steps between state.csv rows), ``state_terminal``
    and ``progress_every`` (seconds between progress lines in run.log)."""
    out = {}
    for key, value in table.items():
        if key not in _OUTPUT_KEYS:
            raise ConfigError("[output] " + _unknown("key", key, _OUTPUT_KEYS))
        default, annotation = _OUTPUT_KEYS[key]
        if key == "progress_every":
            try:
                value = parse_seconds("[output] progress_every", value)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        else:
            _check_type("[output]", key, value, Param(key, default, annotation))
        out[key] = value
    if out.get("state_every") is not None and out["state_every"] < 1:
        raise ConfigError(f"[output] state_every = {out['state_every']}: expected a positive number of steps")
    if out.get("state_terminal") and out.get("state_every") is None:
        raise ConfigError("[output] state_terminal = true needs state_every = N (steps between rows)")
    return {key: out.get(key, default) for key, (default, _) in _OUTPUT_KEYS.items()}


#: Counter (64-bit words per walker) where the streams drawing a minimised run's starting
#: points begin: far past what any run's dynamics consume (2**48 words), so they never overlap.
MINIMIZE_STREAM_OFFSET = 2 ** 48


def _resolve_minimize(table: dict) -> dict:
    """The [minimize] table: :func:`langevin_md.minimize.minimize`'s settings, defaults filled in."""
    params = {k: p for k, p in parameters(minimize).items() if k not in ("system", "positions")}
    out = {}
    for key, value in table.items():
        if key not in params:
            raise ConfigError("[minimize] " + _unknown("key", key, params))
        p = params[key]
        if key == "tolerance":  # None (the default) means the system's own default
            p = Param(key, None, "Optional[float]")
        if key == "max_iterations":
            p = Param(key, p.default, "int")
        _check_type("[minimize]", key, value, p)
        out[key] = value
    if out.get("tolerance") is not None and not out["tolerance"] > 0:
        raise ConfigError(f"[minimize] tolerance = {out['tolerance']!r}: expected a positive RMS force "
                          "(kJ/mol/nm for molecular systems)")
    if "max_iterations" in out and out["max_iterations"] < 1:
        raise ConfigError(f"[minimize] max_iterations = {out['max_iterations']!r}: expected a positive integer")
    if out.get("method", "auto") not in ("auto", "openmm", "lbfgs"):
        raise ConfigError(f"[minimize] method = {out['method']!r}: expected \"auto\", \"openmm\" or \"lbfgs\"")
    for key, p in params.items():
        out.setdefault(key, p.default)
    return out


#: [tempering] keys besides those of ReplicaExchange (swap_every, scheme, adapt_ladder).
_LADDER_KEYS = ("n_temperatures", "max_temperature", "temperatures")


def _resolve_tempering(table: dict, sampler: dict) -> dict:
    """The [tempering] table, checked and with ReplicaExchange's defaults filled in."""
    inner_params = {k: p for k, p in parameters(ReplicaExchange).items() if k in ("swap_every", "scheme",
                                                                                  "adapt_ladder")}
    types = {"swap_every": "int", "scheme": "str", "adapt_ladder": "bool", "n_temperatures": "int",
             "max_temperature": "float"}
    allowed = list(_LADDER_KEYS) + list(inner_params)
    out = {}
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError("[tempering] " + _unknown("key", key, allowed))
        if key == "temperatures":
            if not (isinstance(value, list) and len(value) >= 2 and all(_is_number(v) for v in value)):
                raise ConfigError(f"[tempering] temperatures = {value!r}: expected an array of at least two "
                                  "numbers, the first equal to the system's temperature")
        else:
            _check_type("[tempering]", key, value, Param(key, None, types[key]))
        out[key] = value
    backend = sampler.get("backend", "torch")
    if backend not in ("torch", "auto"):
        raise ConfigError(f"[tempering] needs [sampler] backend = \"torch\", got backend = {backend!r}: "
                          "the OpenMM executor runs every walker at one temperature and cannot swap")
    if "temperatures" in out:
        # n_temperatures may restate the ladder's length; max_temperature would be a second ladder.
        if "max_temperature" in out or out.get("n_temperatures", len(out["temperatures"])) != len(out["temperatures"]):
            extra = [k for k in ("n_temperatures", "max_temperature") if k in out]
            raise ConfigError(f"[tempering] give either temperatures = [...] or n_temperatures and "
                              f"max_temperature, not both (found temperatures and {', '.join(extra)})")
        out["n_temperatures"] = len(out["temperatures"])
    else:
        missing = [k for k in ("n_temperatures", "max_temperature") if k not in out]
        if missing:
            raise ConfigError(f"[tempering] is missing {' and '.join(missing)} (or give the whole ladder as "
                              "temperatures = [...])")
        if out["n_temperatures"] < 2:
            raise ConfigError(f"[tempering] n_temperatures = {out['n_temperatures']}: expected at least 2")
        if not out["max_temperature"] > 0:
            raise ConfigError(f"[tempering] max_temperature = {out['max_temperature']!r}: expected a positive "
                              "temperature (kelvin for molecular systems, kT for analytic ones)")
    n_t, n_w = out["n_temperatures"], sampler["n_walkers"]
    if n_w % n_t != 0:
        raise ConfigError(f"[sampler] n_walkers = {n_w} is not a multiple of [tempering] n_temperatures = "
                          f"{n_t}: every ladder holds one walker per temperature; use n_walkers = "
                          f"{max(n_t, n_w - n_w % n_t)} or {n_w - n_w % n_t + n_t}")
    for key, p in inner_params.items():
        out.setdefault(key, _plain(p.default))
    order = [k for k in ("n_temperatures", "max_temperature", "temperatures") if k in out]
    return {k: out[k] for k in order} | {k: out[k] for k in inner_params}


def checked_settings(where: str, table: dict, params: dict, missing_note: str = "") -> dict:
    """``table``'s keys checked against ``params`` (name -> :class:`Param`), defaults filled in.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming ``where``; a
    missing required key does too, followed by ``missing_note``.
    """
    out = {}
    for key, value in table.items():
        if key not in params:
            raise ConfigError(f"{where} " + _unknown("key", key, params))
        p = params[key]
        # Integer-valued settings are annotated in the signatures only through their defaults.
        if p.annotation is None and isinstance(p.default, int) and not isinstance(p.default, bool):
            p = Param(p.name, p.default, "int")
        _check_type(where, key, value, p)
        out[key] = value
    for key, p in params.items():
        if key not in out:
            if p.required:
                raise ConfigError(f"{where} is missing required key {key!r}{missing_note}")
            out[key] = p.default
    return out


def _resolve_sampler(table: dict) -> dict:
    targets = sampler_targets()
    params = {key: parameters(fn)[p] for key, (fn, p) in targets.items()}
    out = checked_settings("[sampler]", table, params)
    if out["backend"] not in BACKEND_CHOICES:
        raise ConfigError(f"[sampler] backend = {out['backend']!r} is not a known executor; known: "
                          f"{', '.join(BACKEND_CHOICES)}")
    _check_sampler_values(out)
    order = ["backend", "n_steps", "n_walkers", "record_every", "burn_in", "seed", "checkpoint_every",
             "device", "dtype"]
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


#: Seeds are hashed as 64-bit words by the random streams (langevin_md.random): a larger seed
#: would wrap and repeat a smaller one's streams, so it is refused.
SEED_LIMIT = 2 ** 64


def _check_sampler_values(sampler: dict) -> None:
    """Ranges of the [sampler] settings, checked before anything is built or created."""
    def check(fn, key, *args):
        try:
            return fn(key, sampler[key], *args)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[sampler] {exc}") from None

    for key in ("n_steps", "n_walkers", "record_every", "checkpoint_every"):
        if key in sampler:
            check(checks.positive_int, key)
    if "burn_in" in sampler:
        check(checks.non_negative_int, "burn_in")
    if "seed" in sampler:
        check(checks.non_negative_int, "seed")
        if sampler["seed"] >= SEED_LIMIT:
            raise ConfigError(f"[sampler] seed = {sampler['seed']} is too large: seeds must be below "
                              f"2**64 = {SEED_LIMIT} (larger ones would repeat smaller seeds' random streams)")
    start = sampler.get("initial_positions")
    if start is not None and start != "exact":
        raise ConfigError(f"[sampler] initial_positions = {toml_value(start)}: the only value is \"exact\" "
                          "(exact draws from the target, for tests of stationary laws); leave the key out "
                          "for the system's documented start")
    for key, fn in (("device", checks.device), ("dtype", checks.dtype)):
        if key in sampler:
            try:
                fn(sampler[key])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"[sampler] {exc}") from None
    if all(k in sampler for k in ("record_every", "n_steps")) and sampler["record_every"] > sampler["n_steps"]:
        raise ConfigError(f"[sampler] record_every = {sampler['record_every']} is larger than n_steps = "
                          f"{sampler['n_steps']}: the run would record 0 frames; lower record_every")


def load_config(path) -> RunConfig:
    """Read and validate a TOML config file.

    Parameters
    ----------
    path : str or PathLike

    Raises
    ------
    ConfigError
        For TOML syntax errors, unknown sections or keys, unknown names, wrong types.
    FileNotFoundError
    """
    path = Path(path)
    data = read_toml(path)
    return parse_config(data, source=str(path), base_dir=path.resolve().parent)


def read_toml(path: Path) -> dict:
    """A config file's TOML table; errors name the file (missing, wrong suffix, bad TOML)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {str(path)!r} does not exist") from None
    if path.suffix.lower() != ".toml":
        raise ConfigError(f"{path}: config files are TOML and must end in .toml (got {path.suffix or 'no suffix'!r})")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


