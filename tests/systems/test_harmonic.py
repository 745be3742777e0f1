import numpy as np
import pytest
import torch

from langevin_md.systems import FreeParticle, Harmonic


def autograd_forces(system, x):
    x = x.clone().requires_grad_(True)
    e = system.energy(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    return -g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_harmonic_forces_match_autograd_and_exact_moments(dtype):
    system = Harmonic(dim=3, k=[1.0, 2.0, 0.5], kT=1.5, mean=[0.0, 1.0, -1.0])
    x = torch.randn(7, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    e, f = system.energy_and_forces(x)
    assert e.dtype == dtype and f.shape == x.shape
    torch.testing.assert_close(f, autograd_forces(system, x))
    np.testing.assert_allclose(system.variance, [1.5, 0.75, 3.0])
    np.testing.assert_allclose(system.omega, np.sqrt([1.0, 2.0, 0.5]))


def test_sum_forces_match_autograd():
    s = Harmonic(dim=2, k=1.0) + 0.3 * Harmonic(dim=2, k=[2.0, 5.0], mean=1.0)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.energy_and_forces(x)[1], autograd_forces(s, x))


def test_free_particle_is_flat():
    s = FreeParticle(dim=2, kT=2.0, masses=[1.0, 3.0])
    e, f = s.energy_and_forces(torch.ones(4, 2))
    assert torch.all(e == 0) and torch.all(f == 0)
