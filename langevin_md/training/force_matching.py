"""Force matching: fit an energy U_θ whose forces match reference (mapped) forces.

Given configurations and the forces on them — atomistic frames mapped to beads by a
:class:`~langevin_md.training.cg_map.CGMap`, or the coordinates of any system with its own
forces — the objective is the mean squared force residual (Izvekov & Voth 2005; Noid et al.
2008; CGnet, Wang et al. 2019)

.. math::  χ²(θ) = \\big\\langle \\tfrac{1}{d} \\,\\| f(R) + ∇_R U_θ(R) \\|^2 \\big\\rangle ,

averaged over frames, with d the number of coordinates per frame (so χ² is a mean squared
force per coordinate, (kJ/mol/nm)² for molecules). With mapped forces obeying Noid's
conditions (see :mod:`~langevin_md.training.cg_map`) its minimiser over all functions is the
many-body potential of mean force of the beads, up to an additive constant: the mapped force
f is a noisy but unbiased sample of −∇PMF at R. The residual noise (the part of f not
explained by R) sets a floor on χ² that no model can go below.

:func:`fit_forces` trains any ``module(R) -> (n,)`` energy by Adam on large batches (the
whole training split when it fits, ``batch_size=None``), with early stopping on a held-out
validation split, progress lines every few seconds (:class:`~.progress.ProgressLog`) and an
optional loss-curve PNG.

References
----------
S. Izvekov, G. A. Voth, J. Phys. Chem. B 109, 2469 (2005). W. G. Noid et al., J. Chem. Phys.
128, 244114 (2008). J. Wang et al., "Machine learning of coarse-grained molecular dynamics
force fields", ACS Cent. Sci. 5, 755 (2019).
"""

from __future__ import annotations

import copy
import math
from typing import Optional, TextIO

import numpy as np
import torch
from torch import nn

from .dsm import TrainResult

#: Training-split sizes up to which one batch holds the whole split (batch_size=None).
FULL_BATCH = 1 << 16


def force_matching_loss(model: nn.Module, coordinates: torch.Tensor, forces: torch.Tensor,
                        create_graph: bool = True) -> torch.Tensor:
    """χ² = mean over frames and coordinates of (f + ∇U_θ)², a scalar.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(R)`` -> energies, shape ``(n,)`` (kJ/mol for molecules).
    coordinates : torch.Tensor, shape ``(n, *event_shape)``
        CG coordinates R (nm for molecules).
    forces : torch.Tensor, same shape
        Mapped reference forces f (kJ/mol/nm).
    create_graph : bool
        Keep the graph of ∇U so that χ² can be differentiated with respect to θ (training);
        False for validation.
    """
    if coordinates.shape != forces.shape:
        raise ValueError(f"coordinates {tuple(coordinates.shape)} and forces {tuple(forces.shape)} differ in shape")
    x = coordinates.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = model(x)
        if not isinstance(energy, torch.Tensor) or tuple(energy.shape) != (x.shape[0],):
            got = tuple(energy.shape) if isinstance(energy, torch.Tensor) else type(energy).__name__
            raise ValueError(f"the model returned {got}; expected one energy per frame, shape ({x.shape[0]},)")
        (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    r = (forces + grad).reshape(x.shape[0], -1)
    return (r * r).mean()


def _check_int(name: str, v, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def fit_forces(model: nn.Module, coordinates, forces, epochs: int = 2000, batch_size: Optional[int] = None,
               learning_rate: float = 3e-3, validation_fraction: float = 0.1, patience: int = 100,
               seed: int = 0, progress: bool = True, stream: Optional[TextIO] = None,
               progress_interval: float = 2.0, loss_curve=None, threads: Optional[int] = None) -> TrainResult:
    """Fit an energy model to forces by minimising χ² (see the module notes).

    Parameters
    ----------
    model : torch.nn.Module
        ``model(R)`` -> ``(n,)`` energies. Its parameters with ``requires_grad`` are trained in
        place, on the model's device and dtype (frozen prior terms stay as they are). A model
        with ``set_data_statistics(R)`` gets the training split first (input normalisation).
        At the end it holds the weights of the best validation epoch.
    coordinates : array_like, shape ``(n_frames, *event_shape)``
        CG coordinates (e.g. ``cg_map.map_positions(positions)``).
    forces : array_like, same shape
        Mapped forces (e.g. ``cg_map.map_forces(atom_forces)``).
    epochs : int
        Maximum passes over the training split.
    batch_size : int, optional
        Frames per Adam step; None: the whole training split up to :data:`FULL_BATCH` frames,
        else batches of that size. Large batches vectorise well on a CPU: one 12,800-frame
        batch costs far less than 50 batches of 256.
    learning_rate : float
        Adam's step.
    validation_fraction : float
        Share of frames held out, in (0, 1).
    patience : int
        Stop after this many epochs without a lower validation χ².
    seed : int
        Seed of the local generator for the split and the shuffles.
    progress : bool
        Write a progress line every ``progress_interval`` seconds to ``stream`` (stderr).
    loss_curve : str or PathLike, optional
        Write the loss curve there as a PNG at the end.
    threads : int, optional
        Torch intra-op threads (default: chosen for the problem size and the machine's load,
        :func:`langevin_md.threads.choose_threads`).

    Returns
    -------
    TrainResult
        ``train_loss``/``validation_loss`` per epoch, χ² in (force unit)².
    """
    from ..threads import choose_threads, torch_threads
    from .progress import ProgressLog, plot_loss_curve

    epochs, patience = _check_int("epochs", epochs), _check_int("patience", patience)
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size)
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must lie strictly between 0 and 1, got {validation_fraction!r}")
    if not (math.isfinite(float(learning_rate)) and float(learning_rate) > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    R = torch.as_tensor(np.asarray(coordinates, dtype=np.float64))
    f = torch.as_tensor(np.asarray(forces, dtype=np.float64))
    if R.ndim < 2 or R.shape[0] < 2:
        raise ValueError(f"coordinates must have shape (n_frames, *event_shape) with n_frames >= 2, got {tuple(R.shape)}")
    if f.shape != R.shape:
        raise ValueError(f"forces must have the shape of coordinates {tuple(R.shape)}, got {tuple(f.shape)}")
    if not (torch.isfinite(R).all() and torch.isfinite(f).all()):
        raise ValueError("coordinates or forces contain NaN or infinite values")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    device, dtype = params[0].device, params[0].dtype

    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(R.shape[0], generator=gen)
    n_val = max(1, int(round(float(validation_fraction) * R.shape[0])))
    if n_val >= R.shape[0]:
        raise ValueError(f"{R.shape[0]} frames leave none for training at validation_fraction={validation_fraction}")
    to = dict(device=device, dtype=dtype)
    R_val, f_val = R[perm[:n_val]].to(**to), f[perm[:n_val]].to(**to)
    R_tr, f_tr = R[perm[n_val:]].to(**to), f[perm[n_val:]].to(**to)
    if hasattr(model, "set_data_statistics"):
        model.set_data_statistics(R_tr)
    n_tr = R_tr.shape[0]
    bs = min(n_tr, FULL_BATCH) if batch_size is None else min(batch_size, n_tr)
    width = max((p.shape[0] for p in params if p.ndim == 2), default=1)

    opt = torch.optim.Adam(params, lr=float(learning_rate))
    result = TrainResult()
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    log = ProgressLog("force matching", epochs, stream=stream, interval=progress_interval, enabled=progress)
    with torch_threads(choose_threads(bs * width, threads)):
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n_tr, generator=gen, device="cpu").to(device) if bs < n_tr else None
            total = 0.0
            for start in range(0, n_tr, bs):
                if order is None:
                    xb, fb = R_tr, f_tr
                else:
                    sel = order[start:start + bs]
                    xb, fb = R_tr[sel], f_tr[sel]
                loss = force_matching_loss(model, xb, fb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * xb.shape[0]
            model.eval()
            v = 0.0
            for start in range(0, n_val, FULL_BATCH):
                sl = slice(start, start + FULL_BATCH)
                v += float(force_matching_loss(model, R_val[sl], f_val[sl], create_graph=False)) * R_val[sl].shape[0]
            v /= n_val
            result.train_loss.append(total / n_tr)
            result.validation_loss.append(v)
            if v < result.best_validation_loss:
                result.best_validation_loss, result.best_epoch = v, epoch
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
            stop = since_best >= patience
            log.update(epoch, total / n_tr, v, result.best_epoch, result.best_validation_loss,
                       final=stop or epoch == epochs - 1)
            if stop:
                result.stopped_early = True
                break
    model.load_state_dict(best_state)
    if loss_curve is not None:
        plot_loss_curve(result.train_loss, result.validation_loss, loss_curve, result.best_epoch,
                        title="force matching (χ² per coordinate)")
    return result
