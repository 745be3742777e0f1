"""The lanes BAOAB (integrators/lanes_langevin.py) against the eager BAOAB step, bit for bit.

The lanes runner keeps a segment of steps in the fused kernels' lanes layout; it is only
allowed to change speed. Each test compares against the eager step on the same fused force
field (whose own agreement with the torch terms and OpenMM is tested in tests/forcefield).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import langevin_md as lmd
from langevin_md.forcefield.fused.lanes import block_size, from_lanes, to_lanes
from langevin_md.integrators.base import with_temperature
from langevin_md.integrators.lanes_langevin import lanes_runner
from langevin_md.random import WalkerRNG

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def vacuum():
    return lmd.systems.alanine_dipeptide(temperature=300.0)


def _start(system, integrator, n_walkers, seed=3):
    x = system.initial_positions(n_walkers).to(torch.float64)
    x = x + 0.002 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    rng = WalkerRNG(seed, n_walkers)
    return integrator.init(system, x.contiguous(), rng), rng


def _same(a, b):
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("positions", "velocities", "forces", "energy"))


@pytest.mark.parametrize("n_walkers, friction", [(1, 1.0), (7, 1.0), (257, 1.0), (5, 0.0)])
def test_lanes_segment_is_bitwise_the_eager_steps(vacuum, n_walkers, friction):
    # 257 walkers: blocks of 86 lanes, one pad lane; friction 0 draws no noise (velocity Verlet)
    integ = lmd.integrators.BAOAB(timestep=0.001, friction=friction)
    eager, rng_eager = _start(vacuum, integ, n_walkers)
    lanes, rng_lanes = _start(vacuum, integ, n_walkers)
    runner = lanes_runner(vacuum, integ, lanes)
    assert runner is not None
    for _ in range(12):
        eager = integ.step(vacuum, eager, rng_eager)[0]
    given, start = lanes, lanes.positions.clone()
    lanes = runner.run(runner.run(lanes, rng_lanes, 5), rng_lanes, 7)  # two segments
    assert _same(eager, lanes)
    assert torch.equal(given.positions, start)  # the state it was given is not written into
    assert rng_eager.counter == rng_lanes.counter
    # and it moved: a runner that returned its input would pass the comparison above only if
    # the eager steps did nothing
    assert not torch.equal(eager.positions, _start(vacuum, integ, n_walkers)[0].positions)


def test_sample_runs_lanes_and_records_the_eager_trajectory(vacuum):
    integ = lmd.integrators.BAOAB(timestep=0.001, friction=1.0)
    result = lmd.sample(vacuum, integ, n_steps=30, n_walkers=9, record_every=7, backend="torch", seed=5)
    assert "lanes kernels" in result.metadata["compile_decision"]
    # the same run by hand, eager step by step, from the sampler's documented start
    rng = WalkerRNG(5, 9)
    x0 = vacuum.initial_positions(9).to(torch.float64).contiguous()
    state = integ.init(vacuum, x0, rng)
    frames = []
    for step in range(1, 31):
        state = integ.step(vacuum, state, rng)[0]
        if step % 7 == 0:
            frames.append(state.positions.numpy().copy())
    assert np.array_equal(np.asarray(result.positions), np.stack(frames))


def test_runner_declines_what_it_does_not_run(vacuum):
    baoab = lmd.integrators.BAOAB(timestep=0.001, friction=1.0)
    state, _ = _start(vacuum, baoab, 4)
    assert lanes_runner(vacuum, lmd.integrators.OBABO(timestep=0.001, friction=1.0), state) is None
    assert lanes_runner(vacuum.with_kernels("torch"), baoab, state) is None
    assert lanes_runner(vacuum.with_precision("mixed"), baoab, state) is None
    single = type(state)(**{k: getattr(state, k).to(torch.float32) for k in ("positions", "energy", "forces",
                                                                          "velocities")})
    assert lanes_runner(vacuum, baoab, single) is None  # float32 state: eager steps
    hot = with_temperature(vacuum, state, torch.full((4,), 2.5, dtype=torch.float64))  # per-walker kT
    assert lanes_runner(vacuum, baoab, hot) is None


def test_lanes_layout_round_trip_and_batch_independence(vacuum):
    x = np.random.default_rng(0).normal(size=(300, 22, 3))
    lanes = block_size(300)
    assert lanes == 100 and block_size(7) == 7 and block_size(129) == 65
    xl = to_lanes(x, 86)  # 4 blocks, 44 pad lanes
    assert xl.shape == (4, 22, 3, 86) and xl.flags.c_contiguous
    one = x[:1].copy()
    assert not np.shares_memory(to_lanes(one, 1), one)  # kernels write into lanes: never a view
    assert np.array_equal(from_lanes(xl, 300), x)
    # a walker's energy and forces do not depend on the batch it is evaluated in
    pos = vacuum.initial_positions(300).to(torch.float64)
    pos = (pos + 0.01 * torch.from_numpy(x)).contiguous()
    e_all, f_all = vacuum.energy_and_forces(pos)
    e_one, f_one = vacuum.energy_and_forces(pos[137:138].clone())
    assert torch.equal(e_all[137:138], e_one) and torch.equal(f_all[137:138], f_one)


@pytest.fixture(scope="module")
def hbonds():
    return lmd.systems.alanine_dipeptide(constraints="HBonds", engine="torch", temperature=300.0)


def test_constrained_lanes_follow_the_eager_steps_and_hold_the_bonds(hbonds):
    integ = lmd.integrators.BAOAB(timestep=0.002, friction=1.0)
    eager, rng_eager = _start(hbonds, integ, 40)
    lanes, rng_lanes = _start(hbonds, integ, 40)
    runner = lanes_runner(hbonds, integ, lanes)
    assert runner is not None and runner.constraints is not None
    for _ in range(20):
        eager = integ.step(hbonds, eager, rng_eager)[0]
    lanes = runner.run(runner.run(lanes, rng_lanes, 8), rng_lanes, 12)
    assert rng_eager.counter == rng_lanes.counter
    # the SHAKE solvers stop at different iterates below the 1e-12 tolerance; 20 steps of
    # dynamics keep that far below the 1e-3 nm scale of a thermal step
    assert torch.allclose(lanes.positions, eager.positions, rtol=0, atol=1e-9)
    assert torch.allclose(lanes.velocities, eager.velocities, rtol=0, atol=1e-6)
    solver = lmd.integrators.constraints.constraint_solver(hbonds, lanes.positions)
    assert float(solver.relative_violation(lanes.positions).max()) < 1e-10
    assert float(solver.velocity_violation(lanes.positions, lanes.velocities).max()) < 1e-10
    # the eager trajectory is not a fixed point: the comparison would catch a runner that stood still
    assert (eager.positions - _start(hbonds, integ, 40)[0].positions).abs().max() > 1e-3


def test_constrained_lanes_refuse_a_step_that_breaks_the_bonds(hbonds):
    integ = lmd.integrators.BAOAB(timestep=0.002, friction=1.0)
    state, rng = _start(hbonds, integ, 5)
    wild = state.velocities.clone()
    wild[3] *= 1e4  # walker 3 flies apart in one step
    state = type(state)(**{**{k: getattr(state, k) for k in ("positions", "energy", "forces")}, "velocities": wild})
    with pytest.raises(lmd.integrators.constraints.ConstraintError, match=r"walkers \[3\]"):
        lanes_runner(hbonds, integ, state).run(state, rng, 1)
