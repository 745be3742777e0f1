"""Small noise-conditional networks for energies and scores, with declared architectures.

Both take positions ``(n, *event_shape)`` and noise levels σ ``(n,)``, and are rebuilt from
:meth:`architecture` (plain JSON-able settings) plus a state dict, so that weights load
without pickle (:mod:`langevin_md.learned.io`).

Preconditioning (why the inputs and outputs are scaled): the network sees
h = (x − shift)/sqrt(scale² + σ²), which is O(1) at every noise level (the input scaling of
Karras et al. 2022, "Elucidating the design space of diffusion-based generative models"),
and log σ. Both networks are a Gaussian base (the data's mean and per-coordinate spread,
noised by σ) plus a learned residual, which keeps walkers from escaping where there were
no data. The energy network is E = kT (|h|²/2 + net(h, log σ)); the score network
outputs s = −h/sqrt(scale² + σ²) + net(h, log σ)/σ (the 1/σ output scaling of Song &
Ermon 2020, "Improved techniques for training score-based generative models"), so σ·s,
the quantity the σ²-weighted loss compares, is O(1). Periodic coordinates (angles, radians)
enter as (cos x, sin x) instead and get no base term.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn


def _mlp(n_in: int, hidden: int, n_layers: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.SiLU()]  # smooth: forces and their gradients exist
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class _NoiseConditionalMLP(nn.Module):
    noise_conditional = True

    def __init__(self, event_shape: Sequence[int], hidden: int = 64, n_layers: int = 3,
                 periodic: bool = False, sigma_min: float = 0.01, n_out: Optional[int] = None):
        super().__init__()
        shape = tuple(int(s) for s in event_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}")
        for name, v in (("hidden", hidden), ("n_layers", n_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not sigma_min > 0:
            raise ValueError(f"sigma_min must be positive, got {sigma_min!r}")
        self.event_shape = shape
        self.dim = math.prod(shape)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.periodic = bool(periodic)
        n_in = (2 * self.dim if self.periodic else self.dim) + 1
        self.net = _mlp(n_in, self.hidden, self.n_layers, self.dim if n_out is None else n_out)
        self.register_buffer("sigma_min", torch.tensor(float(sigma_min)))
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))

    def set_data_statistics(self, samples: torch.Tensor) -> None:
        """Set shift/scale to the per-coordinate mean and standard deviation of ``samples``."""
        flat = samples.reshape(samples.shape[0], -1).to(self.shift)
        self.shift.copy_(flat.mean(0) if not self.periodic else torch.zeros_like(self.shift))
        self.scale.copy_(flat.std(0).clamp_min(1e-6) if flat.shape[0] > 1 else torch.ones_like(self.scale))

    def _inputs(self, x: torch.Tensor, sigma: torch.Tensor):
        n = x.shape[0]
        flat = x.reshape(n, self.dim)
        s = sigma.reshape(n, 1).to(flat)
        if self.periodic:
            h = None
            feats = torch.cat([torch.cos(flat), torch.sin(flat)], dim=-1)
        else:
            h = (flat - self.shift) / torch.sqrt(self.scale ** 2 + s ** 2)
            feats = h
        return h, torch.cat([feats, torch.log(s)], dim=-1), s

    def _sigma(self, x, sigma):
        if sigma is None:
            return self.sigma_min.to(x).expand(x.shape[0])
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma

    def architecture(self) -> dict:
        """Constructor settings, JSON-able: ``{"class": name, "kwargs": {...}}``."""
        return {"class": type(self).__name__, "kwargs": self._kwargs()}

    def _kwargs(self) -> dict:
        return {"event_shape": list(self.event_shape), "hidden": self.hidden, "n_layers": self.n_layers,
                "periodic": self.periodic, "sigma_min": float(self.sigma_min)}


class EnergyMLP(_NoiseConditionalMLP):
    """Noise-conditional energy E(x, σ), shape ``(n,)``; E(x) = E(x, σ_min).

    Wrap it as ``TorchEnergy(model, model.event_shape, kT=model.kT)`` to sample
    exp(−E(x, σ_min)/kT) with any integrator (MALA included), or with the annealed samplers.

    Parameters
    ----------
    event_shape : sequence of int
    hidden, n_layers : int
        Width and depth of the MLP (SiLU activations).
    periodic : bool
        Treat every coordinate as an angle in radians.
    sigma_min : float
        Noise level of ``forward(x)`` without σ (set by training to the schedule's smallest).
    kT : float
        Energy unit: the model learns E = −kT log p_σ + const.
    """

    def __init__(self, event_shape, hidden: int = 64, n_layers: int = 3, periodic: bool = False,
                 sigma_min: float = 0.01, kT: float = 1.0):
        super().__init__(event_shape, hidden, n_layers, periodic, sigma_min, n_out=1)
        if not kT > 0:
            raise ValueError(f"kT must be positive, got {kT!r}")
        self.kT = float(kT)

    def forward(self, x: torch.Tensor, sigma: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, feats, _ = self._inputs(x, self._sigma(x, sigma))
        e = self.net(feats).squeeze(-1)
        if h is not None:
            e = e + 0.5 * (h * h).sum(-1)
        return self.kT * e

    def _kwargs(self):
        return {**super()._kwargs(), "kT": self.kT}


class ScoreMLP(_NoiseConditionalMLP):
    """Noise-conditional score s(x, σ) ≈ ∇ log p_σ(x), shape ``(n, *event_shape)``.

    Wrap it as ``ScoreModel(model, model.event_shape)`` (σ_min is read from the model).
    Parameters as :class:`EnergyMLP` (no kT: a score has none).
    """

    def forward(self, x: torch.Tensor, sigma: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, feats, s = self._inputs(x, self._sigma(x, sigma))
        out = self.net(feats) / s
        if h is not None:
            # the score of the Gaussian base, -(x - shift)/(scale² + σ²), as for EnergyMLP
            out = out - h / torch.sqrt(self.scale ** 2 + s ** 2)
        return out.reshape(x.shape)


MODEL_CLASSES = {"EnergyMLP": EnergyMLP, "ScoreMLP": ScoreMLP}


def build_model(architecture: dict) -> nn.Module:
    """Rebuild a model from :meth:`architecture` output (no code is loaded from files)."""
    if not isinstance(architecture, dict) or "class" not in architecture:
        raise ValueError(f"an architecture is a dict {{'class': ..., 'kwargs': {{...}}}}, got {architecture!r}")
    cls = MODEL_CLASSES.get(architecture["class"])
    if cls is None:
        raise ValueError(f"unknown model class {architecture['class']!r}; known: {sorted(MODEL_CLASSES)}")
    return cls(**architecture.get("kwargs", {}))
