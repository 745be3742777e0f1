"""Annealed Langevin and the predictor-corrector sampler: schedules, state and refusals.

Their exact variance recursions (statistical) are in ``tests/statistical/test_annealed.py``.
"""

import pytest
import torch

import langevin_md as lmd
from langevin_md.integrators.annealed import AnnealedLangevin
from langevin_md.integrators.metropolis import MALA
from langevin_md.systems.torch_models import ScoreModel
from tests.learned.gaussian_score import S0, GaussianScore


def test_annealed_schedule_and_state():
    integ = AnnealedLangevin(sigmas=[2.0, 1.0, 0.5], steps_per_sigma=4, step_size=0.1)
    assert integ.n_steps == 12
    assert [integ.level(k) for k in (0, 3, 4, 11, 12, 50)] == [0, 0, 1, 2, 2, 2]
    assert integ.alpha(0) == pytest.approx(0.1 * 16)
    sampler = lmd.Sampler(ScoreModel(GaussianScore(), (2,), sigma_min=0.5), integ, n_walkers=3, seed=0)
    sampler.run(5)
    assert sampler.state.count == 5
    # the cached forces are kT s(x, sigma) at the level of the next step (level 1)
    x = sampler.state.positions
    assert torch.allclose(sampler.state.forces, -x / (S0 ** 2 + 1.0 ** 2))


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, 1.0], [], [1.0, -0.5]])
def test_annealed_refuses_bad_schedules(bad):
    with pytest.raises(ValueError, match="sigmas"):
        AnnealedLangevin(sigmas=bad, steps_per_sigma=2, step_size=0.1)


def test_score_model_refused_by_mala_and_hmc_with_reason():
    system = ScoreModel(GaussianScore(), (1,), sigma_min=0.1)
    for integ in (MALA(step_size=0.1), lmd.integrators.HMC(timestep=0.1)):
        with pytest.raises(ValueError, match="needs an energy.*only provides a score"):
            lmd.sample(system, integ, n_steps=1)
