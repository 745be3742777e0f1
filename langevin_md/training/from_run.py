"""``langevin-md train`` from run folders: samples and recorded forces, and the force-matching objective.

A training config's ``[data] run = "RUN_DIR"`` reads a run folder made by ``langevin-md run``
(:func:`langevin_md.run.folder.load_run`): every committed frame of every walker is one
sample, positions ``(n_frames · n_walkers, *event_shape)``, and its forces when the run
recorded them (``[output] forces = true``; ``fields/forces``, kJ/mol/nm for molecules).

A ``[force_matching]`` table selects the force-matching objective
(:func:`~.force_matching.fit_forces`; its keys are that function's options) instead of
denoising score matching, which stays the default:

* without ``[cg]``: an :class:`~.models.EnergyMLP` on the run's coordinates, saved with
  :func:`~.io.save_model`; a run config loads it with ``[prior] features = "positions"``.
* with ``[cg] atoms = [...]`` (one bead per atom, a :meth:`~.cg_map.CGMap.selection` map with
  the sum rule for forces; ``n_fourier`` terms of each dihedral's prior): a
  :class:`~langevin_md.systems.CGModel` (Boltzmann-inverted prior terms + a network on
  invariant features, kT·MLP), saved with :meth:`CGModel.save`; a run config loads it with
  ``[prior] features = "cg"`` and the same atoms, and Python with ``CGModel.load``. Bead masses
  are the element masses of the selected atoms (amu) from the run's topology.
"""

from __future__ import annotations

import os
import sys

import numpy as np

#: [force_matching] keys: every option of fit_forces a config may set.
FORCE_MATCHING_KEYS = ("epochs", "batch_size", "learning_rate", "validation_fraction", "patience", "seed",
                       "progress", "progress_interval", "threads")
#: [cg] keys.
CG_KEYS = ("atoms", "n_fourier")


def read_run(run_dir: str, need_forces: bool):
    """``(result, positions (n, *event_shape), forces (n, *event_shape) or None)`` of a run folder.

    Raises
    ------
    ValueError
        When the folder is not a run, holds no frames, or has no recorded forces while they are needed.
    """
    from ..run.folder import RunFolderError, load_run

    try:
        result = load_run(run_dir)
    except RunFolderError as exc:
        raise ValueError(f"[data] run = {run_dir!r}: {exc}") from None
    if result.n_frames == 0:
        raise ValueError(f"[data] run = {run_dir!r} holds no recorded frames")
    shape = tuple(result.positions.shape[2:])
    positions = np.asarray(result.positions, dtype=np.float64).reshape((-1,) + shape)
    forces = result.fields.get("forces")
    if need_forces and forces is None:
        raise ValueError(f"[data] run = {run_dir!r} has no recorded forces (fields/forces), which force matching "
                         "needs: run it again with [output] forces = true")
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64).reshape((-1,) + shape)
    return result, positions, forces


def _bead_atoms(cg: dict, result, config_path: str) -> list:
    atoms = cg.get("atoms")
    n_atoms = result.positions.shape[2] if result.positions.ndim == 4 else 0
    if (not isinstance(atoms, list) or len(atoms) < 2
            or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a < n_atoms for a in atoms)):
        raise ValueError(f"{config_path}: [cg] atoms = {atoms!r}: expected a list of at least two atom indices "
                         f"below {n_atoms} (the run's atoms; a molecular run is needed)")
    return atoms


def train_force_matching(cfg: dict, base: str, config_path: str, out_dir: str):
    """Fit by force matching as the validated training config ``cfg`` says and save the model.

    Returns
    -------
    (TrainResult, str, dict)
        The losses (χ² per coordinate, (force unit)²), the model file written and the settings used.
    """
    import torch

    from .force_matching import fit_forces
    from langevin_md.learned.io import save_model
    from langevin_md.learned.models import EnergyMLP

    data, model_cfg, fm, out = cfg["data"], cfg.get("model", {}), cfg["force_matching"], cfg["output"]
    if "run" not in data:
        raise ValueError(f"{config_path}: [force_matching] needs [data] run = \"RUN_DIR\" (a run folder recorded "
                         "with [output] forces = true)")
    if model_cfg.get("type", "energy") != "energy":
        raise ValueError(f"{config_path}: force matching fits an energy: [model] type must be 'energy'")
    result, x, f = read_run(os.path.join(base, data["run"]), need_forces=True)
    kT = float(model_cfg.get("kT", result.kT))
    hidden, layers = int(model_cfg.get("hidden", 64)), int(model_cfg.get("layers", 3))
    args = {k: fm[k] for k in FORCE_MATCHING_KEYS if k in fm}
    lines = args.get("progress", True) is not False and not sys.stderr.isatty()
    with torch.random.fork_rng():
        torch.manual_seed(int(args.get("seed", 0)))
        if "cg" in cfg:
            from ..systems.cg_model import CGEnergy, CGModel
            from .cg_map import CGMap
            from .cg_priors import boltzmann_inversion

            atoms = _bead_atoms(cfg["cg"], result, config_path)
            cg_map = CGMap.selection(atoms, x.shape[1])
            x, f = cg_map.map_positions(x), cg_map.map_forces(f)
            prior = boltzmann_inversion(x, kT, n_fourier=int(cfg["cg"].get("n_fourier", 3)))
            model = CGEnergy(prior, hidden=hidden, n_layers=layers, kT=kT)
        else:
            model = EnergyMLP(x.shape[1:], hidden=hidden, n_layers=layers, periodic=bool(model_cfg.get("periodic", False)),
                              kT=kT).double()
    fit = fit_forces(model, x, f, stream=sys.stderr if lines else None, loss_curve=os.path.join(out_dir, "loss_curve.png"),
                     **args)
    if "cg" in cfg:
        topology = result.metadata.get("topology")
        masses = np.array([a.element.mass if a.element is not None else 1.0 for a in topology.atoms])
        cg = CGModel(model, kT, cg_map.bead_masses(masses), x[0], topology.subset(atoms))
        path = cg.save(os.path.join(out_dir, "model.safetensors"))
    else:
        fmt = out.get("format", "safetensors")
        path = save_model(model, os.path.join(out_dir, f"model.{fmt}"))
    settings = {"objective": "force_matching", "model": {"hidden": hidden, "n_layers": layers, "kT": kT},
                "force_matching": {k: v for k, v in args.items() if k not in ("progress", "progress_interval", "threads")},
                "frames": int(x.shape[0])}
    return fit, path, settings
