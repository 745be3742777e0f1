"""TorchEnergy / FeaturePrior / ScoreModel: autograd forces, devices, torch.compile, refusals."""

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators.overdamped import ULA
from langevin_md.systems.torch_models import FeaturePrior, ScoreModel, TorchEnergy
from langevin_md.learned.models import EnergyMLP, ScoreMLP


class Quartic(torch.nn.Module):
    def forward(self, x):
        return (x ** 4).sum(-1) - 2.0 * (x ** 2).sum(-1) + x[:, 0] * x[:, 1]


def finite_difference_forces(system, x, h=1e-6):
    f = torch.zeros_like(x)
    flat = x.reshape(x.shape[0], -1)
    for j in range(flat.shape[1]):
        d = torch.zeros_like(flat)
        d[:, j] = h
        ep = system.energy((flat + d).reshape(x.shape))
        em = system.energy((flat - d).reshape(x.shape))
        f.reshape(x.shape[0], -1)[:, j] = -(ep - em) / (2 * h)
    return f


@pytest.mark.parametrize("module", [Quartic(), EnergyMLP((3,), hidden=16, n_layers=2).double()])
def test_autograd_forces_match_finite_differences(module):
    system = TorchEnergy(module, (3,), kT=1.0)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(5, 3)))
    e, f = system.energy_and_forces(x)
    assert e.shape == (5,) and f.shape == (5, 3)
    assert not e.requires_grad and not f.requires_grad  # no graph kept between steps
    assert torch.allclose(f, finite_difference_forces(system, x), atol=1e-6, rtol=1e-6)


def test_feature_prior_forces_match_finite_differences():
    from langevin_md.systems.features import dihedral, distance

    class Prior(torch.nn.Module):
        def forward(self, feats):
            return torch.cos(feats[:, 0] - 1.0) * 3.0 + (feats[:, 1] - 0.2) ** 2

    def feats(x):
        return torch.stack([dihedral(x, 0, 1, 2, 3), distance(x, 0, 3)], -1)

    system = FeaturePrior(Prior(), feats, (4, 3), kT=2.5)
    x = torch.as_tensor(np.random.default_rng(1).normal(scale=0.15, size=(4, 4, 3)))
    e, f = system.energy_and_forces(x)
    assert f.shape == (4, 4, 3)
    assert torch.allclose(f, finite_difference_forces(system, x), atol=1e-5, rtol=1e-5)


def test_module_on_float32_gives_results_in_the_callers_dtype():
    system = TorchEnergy(EnergyMLP((2,), hidden=8, n_layers=1), (2,), kT=1.0)  # float32 params
    x = torch.zeros(3, 2, dtype=torch.float64)
    e, f = system.energy_and_forces(x)
    assert e.dtype == torch.float64 and f.dtype == torch.float64


def test_wrong_energy_shape_is_refused_clearly():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x  # (n, dim), not (n,)

    with pytest.raises(ValueError, match=r"one energy per walker, shape \(4,\)"):
        TorchEnergy(Bad(), (2,), kT=1.0).energy_and_forces(torch.zeros(4, 2, dtype=torch.float64))


def test_compiled_module_gives_the_same_energy_and_forces_and_samples():
    module = EnergyMLP((2,), hidden=16, n_layers=2).double()
    # aot_eager: the dynamo capture and AOT-autograd path of torch.compile without the C++
    # compile step, so the test stays quick and needs no compiler.
    compiled = torch.compile(module, backend="aot_eager")
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(8, 2)))
    e0, f0 = TorchEnergy(module, (2,), 1.0).energy_and_forces(x)
    system = TorchEnergy(compiled, (2,), 1.0)
    e1, f1 = system.energy_and_forces(x)
    assert torch.allclose(e0, e1) and torch.allclose(f0, f1)
    res = lmd.sample(system, ULA(step_size=0.01), n_steps=20, n_walkers=8, seed=0)
    assert np.isfinite(res.positions).all()


def test_compiled_module_with_inductor():
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's default backend needs a C compiler")
    module = Quartic()
    system = TorchEnergy(torch.compile(module), (2,), 1.0)
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(4, 2)))
    e, f = system.energy_and_forces(x)
    e0, f0 = TorchEnergy(module, (2,), 1.0).energy_and_forces(x)
    assert torch.allclose(e, e0) and torch.allclose(f, f0)


def test_score_model_forces_are_kT_times_the_score_at_sigma_min():
    net = ScoreMLP((2,), hidden=8, n_layers=1, sigma_min=0.05).double()
    system = ScoreModel(net, (2,), kT=2.0)
    assert system.sigma_min == pytest.approx(0.05) and system.score_only
    x = torch.as_tensor(np.random.default_rng(4).normal(size=(3, 2)))
    e, f = system.energy_and_forces(x)
    assert torch.equal(e, torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():
        # the module's own sigma_min (0.05 rounded through float32), not the literal 0.05
        expected = 2.0 * net(x, torch.full((3,), float(net.sigma_min), dtype=torch.float64))
    assert torch.allclose(f, expected)
    res = lmd.sample(system, ULA(step_size=0.01), n_steps=5, n_walkers=3, seed=0)
    assert np.isfinite(res.positions).all()


def test_score_model_without_sigma_min_is_refused():
    class S(torch.nn.Module):
        def forward(self, x, sigma):
            return -x

    with pytest.raises(ValueError, match="sigma_min"):
        ScoreModel(S(), (2,))


def test_score_model_refused_by_mala_with_reason():
    system = ScoreModel(ScoreMLP((2,), hidden=8, n_layers=1), (2,))
    with pytest.raises(ValueError, match="MALA needs an energy for its Metropolis test"):
        lmd.Sampler(system, lmd.integrators.MALA(step_size=0.1), n_walkers=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_energy_runs_on_the_modules_device():
    module = Quartic()
    x = torch.zeros(3, 2, dtype=torch.float64, device="cuda")
    e, f = TorchEnergy(EnergyMLP((2,)).cuda().double(), (2,), 1.0).energy_and_forces(x)
    assert e.device.type == "cuda" and f.device.type == "cuda"
    e, f = TorchEnergy(EnergyMLP((2,)).cuda(), (2,), 1.0).energy_and_forces(x.cpu())
    assert e.device.type == "cpu"


def test_models_keep_their_old_module_path_for_pickles():
    """Models moved to langevin_md.learned; a pickle written before names langevin_md.training.models."""
    import pickle

    import langevin_md.training.models as old_path

    assert old_path.EnergyMLP is EnergyMLP and old_path.ScoreMLP is ScoreMLP
    model = EnergyMLP((2,), hidden=8, n_layers=1)
    # protocol 0 writes class paths as newline-ended text, so the old path can be put in place
    old = pickle.dumps(model, protocol=0).replace(b"langevin_md.learned.models", b"langevin_md.training.models")
    assert b"langevin_md.training.models" in old
    assert isinstance(pickle.loads(old), EnergyMLP)
