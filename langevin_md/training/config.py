"""``langevin-md train CONFIG.toml``: fit a model from a TOML description.

Example configuration (paths are relative to the configuration file)::

    [data]
    samples = "samples.npy"    # .npy, or .npz with `key`
    # key = "positions"        # array inside a .npz (default: its only array)
    # run = "runs/alanine"     # or a run folder: every frame of every walker is a sample

    [model]
    type = "energy"            # "energy" (EnergyMLP) or "score" (ScoreMLP)
    hidden = 64
    layers = 3
    periodic = false           # coordinates are angles (radians)
    kT = 1.0                   # energy models only

    [schedule]
    sigma_max = 1.0
    sigma_min = 0.01
    n_sigmas = 10

    [training]                 # every option of langevin_md.training.fit (its defaults if left out)
    epochs = 200
    batch_size = 256
    learning_rate = 1e-3
    learning_rate_schedule = "constant"   # or "cosine": decays to 0 over the epochs
    validation_fraction = 0.1
    patience = 20              # stop after this many epochs without a better validation loss
    validation_samples = 16384 # (sample, noise draw) pairs per validation
    seed = 0
    progress = true            # a bar on a terminal, else a line every progress_interval s
    progress_interval = 2.0
    threads = 1                # torch threads (default: chosen for the batch and the load)

    [force_matching]           # instead of [schedule]/[training]: fit forces recorded in [data] run
    epochs = 2000              # (run with [output] forces = true); keys: every fit_forces option
    learning_rate = 3e-3       # (epochs, batch_size, learning_rate, validation_fraction, patience,
    patience = 100             #  seed, progress, progress_interval, threads)

    [cg]                       # with [force_matching]: a CGModel on beads at these atoms
    atoms = [4, 6, 8, 14, 16]  # (sum rule for forces); n_fourier = 3 dihedral prior terms

    [output]
    dir = "model"              # gets model.safetensors (or model.pt), training.json, loss_curve.png
    format = "safetensors"     # or "pt" (weights-only torch file)
    progress_every = "30 s"    # a progress line on stderr (when no bar is drawn) after the
                               # first epoch and then every so often; status.json in dir is
                               # rewritten then too (at least every minute)

Samples of shape ``(n_samples, *event_shape)``; a ``(n_frames, n_walkers, ...)`` array must be
reshaped first (which axes are samples is the user's choice); a run folder is read directly.
Denoising score matching ([schedule], [training]) is the default objective; a
``[force_matching]`` table selects force matching (:mod:`langevin_md.training.from_run`),
whose model a run config loads with ``[prior] features = "positions"`` (or ``"cg"`` and the
same atoms for a ``[cg]`` model).

The model is saved whenever the validation loss improves (the best epoch's weights); at the
end the command prints the losses per epoch, the best epoch and where the model and
``training.json`` are.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib

import numpy as np

from ..run.progress import DEFAULT_PROGRESS_EVERY_S, parse_seconds
from .status import TrainingStatus
from ..safe_paths import check_target, make_dirs, open_for_write

_SCHEMA = {
    "data": {"samples": str, "key": str, "run": str},
    "model": {"type": str, "hidden": int, "layers": int, "periodic": bool, "kT": (int, float)},
    "schedule": {"sigma_max": (int, float), "sigma_min": (int, float), "n_sigmas": int},
    "training": {"epochs": int, "batch_size": int, "learning_rate": (int, float),
                 "learning_rate_schedule": str, "validation_fraction": (int, float), "patience": int,
                 "seed": int, "progress": bool, "threads": int, "validation_samples": int,
                 "progress_interval": (int, float)},
    "output": {"dir": str, "format": str, "progress_every": (int, float, str)},
    "force_matching": {"epochs": int, "batch_size": int, "learning_rate": (int, float),
                       "validation_fraction": (int, float), "patience": int, "seed": int, "progress": bool,
                       "progress_interval": (int, float), "threads": int},
    "cg": {"atoms": list, "n_fourier": int},
}
#: Settings denoising score matching needs (not force matching).
_DSM_REQUIRED = (("schedule", "sigma_max"), ("schedule", "sigma_min"))

#: [model] keys and the model constructor parameter each one sets.
_MODEL_KEYS = {"hidden": "hidden", "layers": "n_layers", "periodic": "periodic", "kT": "kT"}
#: [training] keys and the :func:`~langevin_md.training.fit` parameter each one sets.
_TRAINING_KEYS = {k: k for k in ("epochs", "batch_size", "learning_rate", "learning_rate_schedule",
                                  "validation_fraction", "patience", "seed", "progress", "threads",
                                  "progress_interval", "validation_samples")}
#: Noise levels when [schedule] n_sigmas is not given (geometric_sigmas has no default of its own).
DEFAULT_N_SIGMAS = 10


def config_keys(section: str) -> tuple:
    """The keys a training config's ``[section]`` may hold."""
    if section not in _SCHEMA:
        raise ValueError(f"unknown training config section {section!r}; known: {sorted(_SCHEMA)}")
    return tuple(_SCHEMA[section])


def _arguments(fn, keys: dict, table: dict) -> dict:
    """Arguments for ``fn`` from a config table: the table's value where it sets one, else
    ``fn``'s own default, read from its signature by :func:`langevin_md.run.config.parameters`
    (so the defaults live in one place, the signature). Keys ``fn`` does not take are left out."""
    from langevin_md.run.config import parameters

    params = parameters(fn)
    out = {}
    for key, name in keys.items():
        if name not in params:
            continue
        value = table.get(key, params[name].default)
        out[name] = float(value) if params[name].annotation == "float" else value
    return out


def _validate(cfg: dict, path: str) -> None:
    for section, table in cfg.items():
        if section not in _SCHEMA:
            raise ValueError(f"{path}: unknown section [{section}]; known: {sorted(_SCHEMA)}")
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            kinds = _SCHEMA[section].get(key)
            if kinds is None:
                raise ValueError(f"{path}: unknown key {key!r} in [{section}]; known: {sorted(_SCHEMA[section])}")
            if isinstance(value, bool) and kinds is not bool or not isinstance(value, kinds):
                raise ValueError(f"{path}: [{section}] {key} = {value!r} has the wrong type")
    if "data" not in cfg:
        raise ValueError(f"{path}: missing required section [data] (samples = FILE or run = RUN_DIR)")
    if ("samples" in cfg["data"]) == ("run" in cfg["data"]):
        raise ValueError(f"{path}: [data] needs exactly one of samples = FILE and run = RUN_DIR")
    fm = "force_matching" in cfg
    if fm and ("schedule" in cfg or "training" in cfg):
        extra = [f"[{s}]" for s in ("schedule", "training") if s in cfg]
        raise ValueError(f"{path}: [force_matching] replaces denoising score matching; remove {' and '.join(extra)}")
    if "cg" in cfg and not fm:
        raise ValueError(f"{path}: [cg] needs [force_matching] (a CG model is fitted to mapped forces)")
    for section, key in sorted([("output", "dir")] + ([] if fm else list(_DSM_REQUIRED))):
        if key not in cfg.get(section, {}):
            raise ValueError(f"{path}: missing required setting [{section}] {key}")


def check_config_path(config_path) -> str:
    """``config_path`` as a string when it names a readable ``.toml`` file.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, ValueError
        Naming the path and what was expected.
    """
    path = os.fspath(config_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"training config {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"training config {path!r} is a folder; give the .toml file inside it")
    if not path.lower().endswith(".toml"):
        raise ValueError(f"training config {path!r} must be a TOML file ending in .toml")
    return path


def load_samples(path: str, key=None) -> np.ndarray:
    """Samples from a ``.npy`` or ``.npz`` file, float64 ``(n_samples, *event_shape)``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"samples file {path!r} does not exist")
    if path.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)  # never unpickle: that would run code from data
        except ValueError as exc:
            raise ValueError(f"samples file {path!r} cannot be read without unpickling objects, which "
                             f"is refused ({exc}); save a plain numeric array") from None
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if key is None:
                if len(z.files) != 1:
                    raise ValueError(f"{path!r} holds arrays {z.files}; say which with [data] key")
                key = z.files[0]
            if key not in z.files:
                raise ValueError(f"{path!r} has no array {key!r}; it holds {z.files}")
            try:
                arr = z[key]
            except ValueError as exc:
                raise ValueError(f"array {key!r} of {path!r} cannot be read without unpickling objects, "
                                 f"which is refused ({exc}); save a plain numeric array") from None
    else:
        raise ValueError(f"samples file {path!r} must be .npy or .npz")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"samples in {path!r} must be a real numeric array, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def main(config_path) -> "TrainResult":  # noqa: F821 - documented return type
    """Train the model a TOML configuration describes and write it to ``[output] dir``.

    Writes ``model.safetensors`` (or ``model.pt``), the best validation epoch's weights, and
    ``training.json`` (losses per epoch, best epoch, noise levels, the configuration, and the
    settings used: the configuration's values, or the model's and ``fit``'s own defaults).

    Returns
    -------
    langevin_md.training.TrainResult
    """
    from .dsm import fit, geometric_sigmas
    from langevin_md.learned.models import EnergyMLP, ScoreMLP

    config_path = check_config_path(config_path)
    with open(config_path, "rb") as f:
        try:
            cfg = tomllib.load(f)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{config_path}: not valid TOML: {exc}") from None
    _validate(cfg, config_path)
    base = os.path.dirname(os.path.abspath(config_path))
    if "force_matching" in cfg:
        return _main_force_matching(cfg, base, config_path)
    data, model_cfg = cfg["data"], cfg.get("model", {})
    sched, train, out = cfg["schedule"], cfg.get("training", {}), cfg["output"]

    if "run" in data:
        from .from_run import read_run

        samples = read_run(os.path.join(base, data["run"]), need_forces=False)[1]
    else:
        samples = load_samples(os.path.join(base, data["samples"]), data.get("key"))
    if samples.ndim < 2:
        samples = samples[:, None]
    sigmas = geometric_sigmas(float(sched["sigma_max"]), float(sched["sigma_min"]), sched.get("n_sigmas", DEFAULT_N_SIGMAS))
    kind = model_cfg.get("type", "energy")
    if kind not in ("energy", "score"):
        raise ValueError(f"{config_path}: [model] type must be 'energy' or 'score', got {kind!r}")
    if kind == "score" and "kT" in model_cfg:
        raise ValueError(f"{config_path}: [model] kT applies to energy models only, not type = 'score'")
    cls = EnergyMLP if kind == "energy" else ScoreMLP
    model_args = _arguments(cls, _MODEL_KEYS, model_cfg)
    model = cls(samples.shape[1:], sigma_min=float(sigmas[-1]), **model_args)
    model = model.double()

    fmt = out.get("format", "safetensors")
    if fmt not in ("safetensors", "pt"):
        raise ValueError(f"{config_path}: [output] format must be 'safetensors' or 'pt', got {fmt!r}")
    out_dir = os.path.join(base, out["dir"])
    make_dirs(out_dir)
    checkpoint = os.path.join(out_dir, f"model.{fmt}")
    for target in (checkpoint, os.path.join(out_dir, "training.json"), os.path.join(out_dir, "loss_curve.png")):
        check_target(target)  # a link or FIFO is refused before training, not after
    fit_args = _arguments(fit, _TRAINING_KEYS, train)
    every = out.get("progress_every", DEFAULT_PROGRESS_EVERY_S)
    try:
        parse_seconds("[output] progress_every", every)
    except ValueError as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    # Off a terminal the lines (and status.json) come from TrainingStatus on the [output]
    # progress_every schedule, so fit's own lines are switched off; on a terminal fit draws its bar.
    lines = fit_args["progress"] is not False and not sys.stderr.isatty()
    status = TrainingStatus(out_dir, fit_args["epochs"], every, stream=sys.stderr if lines else None)
    if lines:
        fit_args["progress"] = False
    try:
        result = fit(model, samples, sigmas, checkpoint=checkpoint, on_epoch=status,
                     loss_curve=os.path.join(out_dir, "loss_curve.png"), **fit_args)
    except BaseException:
        status.finish("failed")
        raise
    status.finish("completed")
    summary = {"train_loss": result.train_loss, "validation_loss": result.validation_loss,
               "best_epoch": result.best_epoch, "best_validation_loss": result.best_validation_loss,
               "stopped_early": result.stopped_early, "sigmas": sigmas.tolist(), "model": checkpoint,
               "config": cfg, "settings": {"model": model_args,
                                           # these only change the display and the speed, not the model
                                           "training": {k: v for k, v in fit_args.items()
                                                        if k not in ("progress", "progress_interval", "threads")}}}
    report = os.path.join(out_dir, "training.json")
    with open_for_write(report, "w") as f:
        json.dump(summary, f, indent=2)
    print(loss_table(result), file=sys.stderr)
    print(f"model (best epoch {result.best_epoch + 1}) saved to {checkpoint}\nlosses and settings in {report}",
          file=sys.stderr)
    return result


def _main_force_matching(cfg: dict, base: str, config_path: str):
    """``main`` for a config with ``[force_matching]``: fit, save, write training.json, print the losses."""
    from .from_run import train_force_matching

    out = cfg["output"]
    fmt = out.get("format", "safetensors")
    if fmt not in ("safetensors", "pt") or ("cg" in cfg and fmt != "safetensors"):
        allowed = "'safetensors'" if "cg" in cfg else "'safetensors' or 'pt'"
        raise ValueError(f"{config_path}: [output] format must be {allowed}, got {fmt!r}")
    out_dir = os.path.join(base, out["dir"])
    make_dirs(out_dir)
    report = os.path.join(out_dir, "training.json")
    for target in (os.path.join(out_dir, f"model.{fmt}"), report, os.path.join(out_dir, "loss_curve.png")):
        check_target(target)  # a link or FIFO is refused before training, not after (as for DSM)
    result, path, settings = train_force_matching(cfg, base, config_path, out_dir)
    summary = {"train_loss": result.train_loss, "validation_loss": result.validation_loss,
               "best_epoch": result.best_epoch, "best_validation_loss": result.best_validation_loss,
               "stopped_early": result.stopped_early, "model": path, "config": cfg, "settings": settings}
    with open_for_write(report, "w") as f:
        json.dump(summary, f, indent=2)
    print(loss_table(result), file=sys.stderr)
    print(f"model (best epoch {result.best_epoch + 1}, force matching) saved to {path}\nlosses and settings in "
          f"{report}", file=sys.stderr)
    return result


def loss_table(result, max_rows: int = 20) -> str:
    """Losses per epoch (thinned to about ``max_rows`` rows; the best and last epochs always shown)."""
    n = len(result.train_loss)
    if n == 0:
        return "no epochs run"
    stride = max(1, -(-n // max_rows))
    shown = sorted(set(range(0, n, stride)) | {result.best_epoch, n - 1} - {-1})
    lines = [f"{'epoch':>6}  {'train loss':>12}  {'validation loss':>15}"]
    for e in shown:
        mark = "  <- best" if e == result.best_epoch else ""
        lines.append(f"{e + 1:>6}  {result.train_loss[e]:>12.5g}  {result.validation_loss[e]:>15.5g}{mark}")
    end = "stopped early (patience)" if result.stopped_early else "ran every epoch"
    lines.append(f"{n} epochs, {end}; best validation loss {result.best_validation_loss:.5g} at epoch "
                 f"{result.best_epoch + 1}")
    return "\n".join(lines)
