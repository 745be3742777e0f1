"""Denoising score matching over a geometric noise schedule (Vincent 2011; Song & Ermon 2019).

For data x, a level σ drawn uniformly from the schedule and z ~ N(0, I), the noised point
x̃ = x + σz has the conditional score ∇ log q(x̃|x) = −z/σ. The loss, weighted by σ² so that
every level contributes O(1) (Song & Ermon 2019, eq. 6), is

.. math::  L = E_{σ, x, z}\\; \\tfrac12 \\,\\| σ\\, s_θ(x̃, σ) + z \\|^2 ,

whose minimiser is the score of the noised data density p_σ. For an energy model the
score is s = −∇E(x̃, σ)/kT, taken by autograd with ``create_graph=True`` so that the loss
can be differentiated with respect to the parameters.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> np.ndarray:
    """Noise levels σ_max = σ₁ > … > σ_n = σ_min in geometric progression, shape ``(n,)``."""
    if not (math.isfinite(sigma_max) and math.isfinite(sigma_min) and sigma_max > sigma_min > 0):
        raise ValueError(f"need sigma_max > sigma_min > 0, got sigma_max={sigma_max!r}, sigma_min={sigma_min!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"the number of noise levels must be an integer >= 2, got {n!r}")
    return np.geomspace(sigma_max, sigma_min, int(n))


def model_score(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """s(x, σ): the model's output for a score model, −∇E/kT for an energy model.

    Energy models are recognised by a ``kT`` attribute (see :class:`EnergyMLP`) or by
    returning one value per sample.
    """
    if hasattr(model, "kT"):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            energy = model(x, sigma)
            (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
        return -grad / float(model.kT)
    return model(x, sigma)


def dsm_loss(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor,
             create_graph: bool = True) -> torch.Tensor:
    """Mean over the batch of ½‖σ s(x + σz, σ) + z‖² (a scalar).

    Parameters
    ----------
    x : torch.Tensor, shape ``(B, *event_shape)``
    sigma : torch.Tensor, shape ``(B,)``
    z : torch.Tensor, shape ``(B, *event_shape)``, standard normal
    """
    sv = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
    s = model_score(model, x + sv * z, sigma, create_graph)
    r = (sv * s + z).reshape(x.shape[0], -1)
    return 0.5 * (r * r).sum(-1).mean()


@dataclass
class TrainResult:
    """What :func:`fit` did.

    Attributes
    ----------
    train_loss, validation_loss : list of float
        Per epoch (the validation loss uses fixed noise draws, so epochs compare).
    best_epoch : int
        0-based epoch of the lowest validation loss; the model holds those weights.
    best_validation_loss : float
    stopped_early : bool
    checkpoint : str or None
        Path of the saved best model.
    sigmas : numpy.ndarray
    """

    train_loss: list = field(default_factory=list)
    validation_loss: list = field(default_factory=list)
    best_epoch: int = -1
    best_validation_loss: float = math.inf
    stopped_early: bool = False
    checkpoint: Optional[str] = None
    sigmas: Optional[np.ndarray] = None


def _draw(gen: torch.Generator, n: int, shape, n_sigmas: int):
    z = torch.randn((n,) + tuple(shape), generator=gen, dtype=torch.float64)
    idx = torch.randint(n_sigmas, (n,), generator=gen)
    return z, idx


def fit(model: nn.Module, samples, sigmas: Sequence[float], epochs: int = 100, batch_size: int = 256,
        learning_rate: float = 1e-3, validation_fraction: float = 0.1, patience: int = 10,
        checkpoint: Optional[str] = None, seed: int = 0, progress: Optional[bool] = None,
        learning_rate_schedule: str = "constant", validation_samples: int = 16384,
        threads: Optional[int] = None,
        stream=None, progress_interval: float = 2.0, loss_curve=None,
        on_epoch: Optional[Callable[[int, float, float, int, float], None]] = None) -> TrainResult:
    """Fit an energy or score model to samples by denoising score matching.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(x, sigma)``: an :class:`~langevin_md.learned.models.EnergyMLP` or
        :class:`~langevin_md.learned.models.ScoreMLP` (or any module with that signature;
        energy models carry a ``kT`` attribute). Trained in place, on its own device and
        dtype; at the end it holds the weights of the best validation epoch. Models with
        ``set_data_statistics`` get their input normalisation from the training split, and
        a ``sigma_min`` buffer is set to ``min(sigmas)``.
    samples : array_like, shape ``(n_samples, *event_shape)``
    sigmas : sequence of float
        Noise levels (e.g. :func:`geometric_sigmas`); each sample draws one uniformly.
    epochs : int
        Maximum passes over the training split.
    batch_size : int
    learning_rate : float
        Adam's (initial) step.
    validation_fraction : float
        Share of the samples held out, in (0, 1).
    patience : int
        Stop after this many epochs without a lower validation loss.
    checkpoint : str, optional
        Where to save the best model (``.safetensors``, or ``.pt`` for a weights-only torch
        file), rewritten whenever the validation loss improves.
    seed : int
        Seed of the local ``torch.Generator`` for the split, shuffling and noise.
    progress : bool, optional
        Show progress (default; False: nothing): a tqdm bar when ``stream`` is a terminal,
        else a plain line every ``progress_interval`` seconds (epoch, losses, best epoch,
        epochs/s), so that logs of batch jobs and pipes show how training goes.
    learning_rate_schedule : {"constant", "cosine"}
        ``"constant"`` (default) keeps Adam's step at ``learning_rate``. ``"cosine"`` decays it
        to 0 along a half cosine over ``epochs`` (per batch; Loshchilov & Hutter 2017, "SGDR"),
        for long fits that need an accurate energy at small σ: there the DSM target −z is
        almost pure noise (the signal σ∇log p is O(σ/data scale)), and with a constant step
        Adam's parameter jitter exceeds the small-σ energy differences being learned. On the
        2-D three-mode mixture of ``examples/learned_energy_mixture.py`` (200 epochs) it
        roughly halves the total variation of the learned density; on short fits (tens of
        epochs) it decays too early and does worse than a constant step.
    validation_samples : int
        About how many (sample, noise draw) pairs the validation loss averages each epoch
        (each held-out sample is used with up to 32 fixed draws). Validation has no double
        backward but is not free: at 16,384 (the default) it costs about as much as an epoch
        of 11,520 training samples; 4,096 makes epochs about a third cheaper, with a noisier
        choice of the best epoch.
    threads : int, optional
        Torch intra-op threads for the fit (default: chosen for the batch size and the
        machine's load, :func:`langevin_md.threads.choose_threads`; restored afterwards). On
        a loaded 2-core machine the old default (torch's 2 threads) made the 12,800-point
        φ/ψ fit 20× slower in CPU time than one thread (``benchmarks/bench_training.py``).
    stream : file-like, optional
        Where progress lines go (default ``sys.stderr``).
    progress_interval : float
        Seconds between progress lines.
    loss_curve : str or PathLike, optional
        Write the training and validation losses per epoch there as a PNG.

    on_epoch : callable, optional
        ``on_epoch(epoch, train_loss, validation_loss, best_epoch, best_validation_loss)``
        after each epoch (0-based epochs): progress reports off a terminal, e.g.
        :class:`~langevin_md.training.status.TrainingStatus`. Not a config key: it changes
        nothing in the fit.

    Notes
    -----
    Speed: the work per sample is fixed, so large batches are the fast path on a CPU (one
    2048-sample step costs far less than eight 256-sample steps). With batches of 2048 a
    larger step (``learning_rate=1e-2``) and ``learning_rate_schedule="cosine"`` reach the
    validation loss of 60 epochs of batch 256 at 10⁻³ in the same 60 epochs, in about a
    third of the CPU time (``benchmarks/bench_training.py``).

    Returns
    -------
    TrainResult
    """
    import sys

    from tqdm.auto import tqdm

    from ..threads import choose_threads, torch_threads
    from langevin_md.learned.io import save_model
    from .progress import ProgressLog, plot_loss_curve

    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience),
                    ("validation_samples", validation_samples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must lie strictly between 0 and 1, got {validation_fraction!r}")
    if not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if learning_rate_schedule not in ("cosine", "constant"):
        raise ValueError(f"learning_rate_schedule must be 'cosine' or 'constant', got {learning_rate_schedule!r}")
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or sig.size < 1 or not np.all(sig > 0):
        raise ValueError(f"sigmas must be a 1-D sequence of positive numbers, got {sigmas!r}")
    data = torch.as_tensor(np.asarray(samples, dtype=np.float64))
    if data.ndim < 2 or data.shape[0] < 2:
        raise ValueError(f"samples must have shape (n_samples, *event_shape) with n_samples >= 2, got {tuple(data.shape)}")
    if not torch.isfinite(data).all():
        raise ValueError("samples contain NaN or infinite values")

    param = next(iter(model.parameters()))
    device, dtype = param.device, param.dtype
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(data.shape[0], generator=gen)
    n_val = max(1, int(round(validation_fraction * data.shape[0])))
    if n_val >= data.shape[0]:
        raise ValueError(f"{data.shape[0]} samples leave none for training at validation_fraction={validation_fraction}")
    val, train = data[perm[:n_val]], data[perm[n_val:]]
    if hasattr(model, "set_data_statistics"):
        model.set_data_statistics(train)
    if isinstance(getattr(model, "sigma_min", None), torch.Tensor):
        model.sigma_min.fill_(float(sig.min()))
    sig_t = torch.as_tensor(sig)
    event_shape = tuple(data.shape[1:])
    # Fixed noise draws, so that validation losses of different epochs compare. Each held-out
    # sample is used with several draws (up to ~16k evaluations): the DSM loss of one draw is
    # dominated by model-independent noise (½|z|² at small σ), and with a single draw the
    # epoch-to-epoch differences that pick the best epoch drown in it.
    # The extra draws come from their own generator so that the training stream (shuffles,
    # noise) is the same as with one draw.
    z_val, i_val = _draw(gen, n_val, event_shape, sig.size)
    n_draws = max(1, min(32, -(-int(validation_samples) // n_val)))
    if n_draws > 1:
        z_more, i_more = _draw(torch.Generator().manual_seed(int(seed) + 1), (n_draws - 1) * n_val,
                               event_shape, sig.size)
        val = val.repeat((n_draws,) + (1,) * (val.ndim - 1))
        z_val, i_val = torch.cat([z_val, z_more]), torch.cat([i_val, i_more])
    to = dict(device=device, dtype=dtype)
    val, z_val, s_val = val.to(**to), z_val.to(**to), sig_t[i_val].to(**to)

    opt = torch.optim.Adam(model.parameters(), lr=float(learning_rate))
    n_batches = -(-train.shape[0] // int(batch_size))
    total_steps = int(epochs) * n_batches

    def decay(step: int) -> float:  # factor on learning_rate after `step` optimiser steps
        if learning_rate_schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    result = TrainResult(sigmas=sig, checkpoint=checkpoint)
    out = sys.stderr if stream is None else stream
    on_terminal = bool(getattr(out, "isatty", lambda: False)())
    show = progress is not False
    bar = tqdm(range(int(epochs)), disable=not (show and on_terminal), desc="DSM", unit="epoch", file=out)
    log = ProgressLog("DSM", int(epochs), stream=out, interval=progress_interval, enabled=show and not on_terminal)
    width = max((p.shape[0] for p in model.parameters() if p.ndim == 2), default=1)
    with torch_threads(choose_threads(min(int(batch_size), train.shape[0]) * width, threads)):
        _epochs(model, bar, log, train, val, z_val, s_val, sig_t, gen, event_shape, sig, to, opt, lr_schedule,
                int(batch_size), int(patience), result, checkpoint, save_model, on_epoch)
    bar.close()
    if loss_curve is not None:
        plot_loss_curve(result.train_loss, result.validation_loss, loss_curve, result.best_epoch,
                        title="denoising score matching")
    return result


def _epochs(model, bar, log, train, val, z_val, s_val, sig_t, gen, event_shape, sig, to, opt, lr_schedule,
            batch_size, patience, result, checkpoint, save_model, on_epoch) -> None:
    """The epoch loop of :func:`fit`; leaves the best epoch's weights in ``model``."""
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    epoch = -1
    for epoch in bar:
        model.train()
        order = torch.randperm(train.shape[0], generator=gen)
        total, count = 0.0, 0
        for start in range(0, train.shape[0], batch_size):
            xb = train[order[start:start + batch_size]]
            z, idx = _draw(gen, xb.shape[0], event_shape, sig.size)
            loss = dsm_loss(model, xb.to(**to), sig_t[idx].to(**to), z.to(**to))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_schedule.step()
            total += float(loss.detach()) * xb.shape[0]
            count += xb.shape[0]
        model.eval()
        v = 0.0
        for start in range(0, val.shape[0], 4096):
            sl = slice(start, start + 4096)
            v += float(dsm_loss(model, val[sl], s_val[sl], z_val[sl], create_graph=False).detach()) * val[sl].shape[0]
        v /= val.shape[0]
        result.train_loss.append(total / count)
        result.validation_loss.append(v)
        bar.set_postfix(train=f"{total / count:.4f}", val=f"{v:.4f}")
        log.update(epoch, total / count, v, result.best_epoch if v >= result.best_validation_loss else epoch,
                   min(v, result.best_validation_loss))
        if v < result.best_validation_loss:
            result.best_validation_loss, result.best_epoch = v, epoch
            best_state = copy.deepcopy(model.state_dict())
            since_best = 0
            if checkpoint is not None:
                save_model(model, checkpoint)
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch, total / count, v, result.best_epoch, result.best_validation_loss)
        if since_best >= patience:
            result.stopped_early = True
            break
    if epoch >= 0:
        log.update(epoch, result.train_loss[-1], result.validation_loss[-1], result.best_epoch,
                   result.best_validation_loss, final=True)
    model.load_state_dict(best_state)
