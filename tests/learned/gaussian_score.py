"""The exact score of a noised Gaussian, shared by the annealed-Langevin tests."""

import torch

#: Standard deviation s₀ of the clean target N(0, s₀² I).
S0 = 1.0


class GaussianScore(torch.nn.Module):
    """Exact score of N(0, s0^2 I) convolved with N(0, sigma^2 I): s(x, σ) = −x/(s₀² + σ²)."""

    noise_conditional = True

    def forward(self, x, sigma):
        return -x / (S0 ** 2 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2)
