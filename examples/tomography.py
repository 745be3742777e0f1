"""A tomography-style posterior: a 16x16 image from a few projections with a missing wedge.

The data are line sums of a phantom along 8 directions spanning only 0-120 degrees (a 60
degree missing wedge), plus Gaussian noise. The posterior energy is

    U(x) = |A x - y|^2 / (2 s_n^2) + lam * sum_pixels sqrt(|grad x|^2 + delta^2)

(data term + a smoothed total-variation prior), wrapped as a TorchEnergy (forces by
autograd) and sampled with MALA on many walkers. We save the posterior mean and the per-pixel
standard deviation (the uncertainty is largest along the missing directions) as a PNG.

Run:  python examples/tomography.py [--quick] [--output tomography.png]
"""

import argparse
import math

import numpy as np
import torch

import langevin_md as lmd
from langevin_md.integrators.metropolis import MALA
from langevin_md.systems.torch_models import TorchEnergy

N = 16


def phantom():
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    img = 1.0 * ((xx - 6) ** 2 + (yy - 7) ** 2 < 12)
    img[9:13, 9:14] = 0.6
    return img


def projection_matrix(angles_deg, n_det=24, sub=4):
    """Line-sum operator A, shape (n_angles * n_det, N*N): each pixel split into sub x sub
    points, each point's value deposited on the detector by linear interpolation."""
    offs = (np.arange(sub) + 0.5) / sub
    py, px = np.meshgrid(np.arange(N)[:, None] + offs, np.arange(N)[:, None] + offs, indexing="ij")
    # sub-point coordinates relative to the image centre, per pixel (N, sub, N, sub)
    cy = (np.arange(N)[:, None, None, None] + offs[None, :, None, None] - N / 2) * np.ones((N, sub, N, sub))
    cx = (np.arange(N)[None, None, :, None] + offs[None, None, None, :] - N / 2) * np.ones((N, sub, N, sub))
    a = np.zeros((len(angles_deg), n_det, N * N))
    for k, ang in enumerate(np.deg2rad(angles_deg)):
        t = cx * math.cos(ang) + cy * math.sin(ang) + n_det / 2 - 0.5  # detector coordinate
        lo = np.floor(t).astype(int)
        frac = t - lo
        pix = np.broadcast_to((np.arange(N)[:, None, None, None] * N + np.arange(N)[None, None, :, None]),
                              t.shape)
        for b, w in ((lo, 1 - frac), (lo + 1, frac)):
            ok = (b >= 0) & (b < n_det)
            np.add.at(a[k], (b[ok], pix[ok]), w[ok] / sub ** 2)
    return a.reshape(-1, N * N)


class PosteriorEnergy(torch.nn.Module):
    def __init__(self, a, y, noise_sd, lam, delta):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a))
        self.register_buffer("y", torch.as_tensor(y))
        self.noise_sd, self.lam, self.delta = noise_sd, lam, delta

    def forward(self, x):  # x (n, 16, 16)
        r = x.reshape(x.shape[0], -1) @ self.a.T - self.y
        data = 0.5 * (r * r).sum(-1) / self.noise_sd ** 2
        gx = x[:, :, 1:] - x[:, :, :-1]
        gy = x[:, 1:, :] - x[:, :-1, :]
        tv = torch.sqrt(gx[:, :-1, :] ** 2 + gy[:, :, :-1] ** 2 + self.delta ** 2).sum((1, 2))
        return data + self.lam * tv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--output", default="tomography.png", help="PNG with the posterior mean and sd")
    args = parser.parse_args(argv)

    truth = phantom()
    a = projection_matrix(np.linspace(0.0, 120.0, 8, endpoint=False))
    noise_sd = 0.3
    y = a @ truth.ravel() + noise_sd * np.random.default_rng(0).normal(size=a.shape[0])
    system = TorchEnergy(PosteriorEnergy(a, y, noise_sd, lam=3.0, delta=0.05), (N, N), kT=1.0)

    n_walkers, burn_in, n_steps = (4, 20, 20) if args.quick else (64, 3000, 4000)
    res = lmd.sample(system, MALA(step_size=1e-3, target_accept=0.57), n_steps=n_steps, n_walkers=n_walkers,
                     burn_in=burn_in, record_every=20, seed=0, initial_positions=np.zeros((N, N)))
    frames = res.positions.reshape(-1, N, N)
    mean, sd = frames.mean(0), frames.std(0)
    rmse = math.sqrt(((mean - truth) ** 2).mean())
    print(f"MALA acceptance {res.acceptance_rate.mean():.2f}, step size {res.step_sizes.mean():.2e}")
    print(f"posterior mean RMSE to the phantom {rmse:.3f}; mean per-pixel sd {sd.mean():.3f} "
          f"(max {sd.max():.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    for ax, img, title in zip(axes, (truth, mean, sd), ("phantom", "posterior mean", "posterior sd")):
        im = ax.imshow(img, cmap="viridis" if title != "posterior sd" else "magma")
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("8 projections over 0-120 degrees (60 degree missing wedge)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")
    return rmse


if __name__ == "__main__":
    main()
