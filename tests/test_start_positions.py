"""Starting positions: ångström coordinates are refused for every molecular system, not only
for OpenMMSystem's own structure, and Quantities are converted, never dropped."""

import dataclasses

import numpy as np
import pytest
from openmm import unit

import langevin_md as lmd


@pytest.fixture(scope="module")
def alanine():
    return lmd.systems.alanine_dipeptide(engine="openmm")


def test_angstrom_initial_positions_are_refused(alanine):
    x = alanine.initial_positions(1, None)[0].numpy()
    with pytest.raises(ValueError, match="ångström"):
        lmd.sample(alanine, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=1,
                   initial_positions=10.0 * x)


def test_quantity_in_angstrom_is_converted(alanine):
    x = alanine.initial_positions(1, None)[0].numpy()
    q = unit.Quantity(10.0 * x, unit.angstrom)
    res = lmd.sample(alanine, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=1,
                     record_every=1, initial_positions=q)
    assert np.all(np.isfinite(res.energies))


# --------------------------------------------------------------------------- default starts
# A system that can draw exact samples must not start walkers at them: a sampler that never
# moves would then still report the target's answer (issue 13: HMC at acceptance 0.0
# reproduced a mixture's weights). Default starts are documented points; exact draws are
# asked for by name, initial_positions="exact".
from langevin_md.run.config import ConfigError, parse_config  # noqa: E402
from langevin_md.run.build import build_sampler, build_system, check_config  # noqa: E402
from langevin_md.random import WalkerRNG  # noqa: E402
from langevin_md.systems import DoubleWell, GaussianMixture, Harmonic, MullerBrown, UniformBox  # noqa: E402
from langevin_md.systems.base import EXACT_SAMPLE_SYSTEMS  # noqa: E402

TWO_MODES = dict(means=[[-3.0], [3.0]], covariances=0.5)


def test_default_starts_are_the_documented_points_whatever_the_weights():
    rng = WalkerRNG(7, range(3, 9))  # global walkers 3..8: a shard starts as the full run does
    h = Harmonic(dim=2, k=[1.0, 4.0], mean=[0.5, -1.0])
    np.testing.assert_array_equal(h.initial_positions(6, rng).numpy(), np.tile([0.5, -1.0], (6, 1)))
    # Mixture: walker i at component mean i mod K, the same for any weights.
    starts = [GaussianMixture(weights=w, **TWO_MODES).initial_positions(6, rng).numpy()[:, 0]
              for w in ([0.5, 0.5], [0.9, 0.1], [0.01, 0.99])]
    for s in starts:
        np.testing.assert_array_equal(s, [3.0, -3.0, 3.0, -3.0, 3.0, -3.0])
    # Double well: minima in turn (left for even i), transverse coordinates 0, whatever the tilt.
    for tilt in (0.0, 1.0):
        dw = DoubleWell(dim=3, barrier=3.0, tilt=tilt)
        x = dw.initial_positions(6, rng).numpy()
        np.testing.assert_array_equal(x[:, 0], dw.minima[[1, 0, 1, 0, 1, 0]])
        assert (x[:, 1:] == 0).all()
    box = UniformBox(low=[-1.0, 0.0], high=[3.0, 1.0])
    np.testing.assert_array_equal(box.initial_positions(6, rng).numpy(), np.tile([1.0, 0.5], (6, 1)))


@pytest.mark.parametrize("system", [
    Harmonic(dim=2, k=[1.0, 4.0], kT=1.5, mean=[0.5, -1.0]),
    GaussianMixture(weights=[0.8, 0.2], **TWO_MODES),
    DoubleWell(dim=2, barrier=3.0, tilt=0.5),
    UniformBox(low=[-1.0, 0.0], high=[3.0, 1.0], wall_stiffness=50.0),
], ids=lambda s: type(s).__name__)
def test_exact_draws_are_per_walker_reproducible(system):
    full = system.exact_samples(10, WalkerRNG(4, 10)).numpy()
    shard = system.exact_samples(4, WalkerRNG(4, range(6, 10))).numpy()
    np.testing.assert_array_equal(shard, full[6:])
    assert full.shape == (10, *system.event_shape) and np.isfinite(full).all()
    assert len(np.unique(full[:, 0])) == 10  # draws, not a shared point
    # The executor's "exact" start is these draws from the walkers' own streams.
    s = lmd.Sampler(system, lmd.integrators.ULA(1e-3), n_walkers=10, seed=4, initial_positions="exact")
    np.testing.assert_array_equal(s.state.positions.numpy(), full)


def test_double_well_exact_draws_follow_the_quadrature_marginal():
    system = DoubleWell(dim=1, barrier=3.0, tilt=0.5)
    n = 40000
    x = system.exact_samples(n, WalkerRNG(2, n)).numpy()[:, 0]
    edges = np.linspace(-2.0, 2.0, 21)
    p = system.bin_probabilities(edges)
    counts = np.histogram(x, edges)[0]
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() <= 5, z
    # The untilted well's law (equal weights) is rejected by the same draws.
    q = DoubleWell(dim=1, barrier=3.0, tilt=0.0).bin_probabilities(edges)
    assert np.abs((counts - n * q) / np.sqrt(n * q * (1 - q))).max() >= 20


def test_box_exact_draws_follow_the_marginal_cdf_tails_included():
    from scipy import stats

    box = UniformBox(low=[-1.0, 0.0], high=[2.0, 0.5], wall_stiffness=50.0)
    x = box.exact_samples(20000, WalkerRNG(1, 20000)).numpy()
    for axis in range(2):
        assert stats.kstest(x[:, axis], lambda v: box.marginal_cdf(v, axis)).pvalue > 1e-3
        # Known-wrong: uniform in the box without the soft walls' tails.
        lo, hi = box.low[axis], box.high[axis]
        assert stats.kstest(x[:, axis], stats.uniform(lo, hi - lo).cdf).pvalue < 1e-20


def test_the_list_of_exact_samplers_names_exactly_the_systems_that_have_one():
    import langevin_md.systems as systems

    listed = {name.split(" ")[0] for name in EXACT_SAMPLE_SYSTEMS}
    overriding = {name for name in systems.__all__
                  if isinstance(getattr(systems, name), type) and issubclass(getattr(systems, name), systems.System)
                  and getattr(systems, name) not in (systems.System, systems.SumSystem)
                  and getattr(systems, name).exact_samples not in (systems.System.exact_samples,
                                                                   systems.SumSystem.exact_samples)}
    assert overriding == listed == {"Harmonic", "GaussianMixture", "DoubleWell", "UniformBox"}


def test_exact_start_is_refused_by_systems_without_exact_draws():
    integ = lmd.integrators.ULA(1e-4)
    for system in (MullerBrown(), Harmonic(dim=1) + Harmonic(dim=1), 0.5 * Harmonic(dim=1)):
        with pytest.raises(ValueError, match=r"has no exact sampler; exact starts exist for Harmonic, "
                                             r"GaussianMixture \(at kT = 1\), DoubleWell, UniformBox"):
            lmd.sample(system, integ, n_steps=1, initial_positions="exact")
    with pytest.raises(ValueError, match="only at kT = 1.*kT=2"):
        lmd.sample(GaussianMixture(kT=2.0, **TWO_MODES), integ, n_steps=1, initial_positions="exact")
    with pytest.raises(ValueError, match="'random' is not a known start"):
        lmd.sample(Harmonic(dim=1), integ, n_steps=1, initial_positions="random")
    # A one-term sum of weight 1 is the term itself.
    assert lmd.Sampler(1.0 * Harmonic(dim=1), integ, n_walkers=3, initial_positions="exact").n_walkers == 3


def test_exact_start_is_refused_by_openmm_systems(alanine):
    with pytest.raises(ValueError, match="has no exact sampler"):
        lmd.sample(alanine, lmd.integrators.BAOAB(timestep=0.001, friction=1.0), n_steps=1,
                   initial_positions="exact", backend="openmm")


def _config(name, start=None, **system):
    table = {"system": {"name": name, **system}, "integrator": {"name": "ula", "step_size": 1e-4},
             "sampler": {"n_steps": 10, "n_walkers": 6, "seed": 3}}
    if start is not None:
        table["sampler"]["initial_positions"] = start
    return parse_config(table)


def test_config_key_selects_the_exact_start_and_refuses_other_values():
    cfg = _config("gaussian_mixture", "exact", means=TWO_MODES["means"], weights=[0.8, 0.2])
    sampler = build_sampler(cfg)
    np.testing.assert_array_equal(sampler.state.positions.numpy(),
                                  build_system(cfg).exact_samples(6, WalkerRNG(3, 6)).numpy())
    default = _config("gaussian_mixture", means=TWO_MODES["means"], weights=[0.8, 0.2])
    assert default.sampler["initial_positions"] is None
    np.testing.assert_array_equal(build_sampler(default).state.positions.numpy()[:, 0],
                                  [-3.0, 3.0, -3.0, 3.0, -3.0, 3.0])
    # The default key leaves the fingerprint of run folders made before it existed alone;
    # the exact start, a different trajectory, changes it.
    before = dataclasses.replace(default, sampler={k: v for k, v in default.sampler.items()
                                                   if k != "initial_positions"})
    assert before.fingerprint() == default.fingerprint() != cfg.fingerprint()
    with pytest.raises(ConfigError, match=r"initial_positions = \"random\": the only value is \"exact\""):
        _config("harmonic", "random")
    with pytest.raises(ConfigError, match="MullerBrown.*has no exact sampler"):
        check_config(_config("muller_brown", "exact"))


# --------------------------------------------------------------------------- the complaint
def _mode_weight_z(system, result):
    """z of each mode's per-walker frequency against the exact weights, shape (K,)."""
    frames, walkers = result.positions.shape[:2]
    labels = np.asarray(system.mode_assignment(result.positions.reshape(frames * walkers, -1)))
    labels = labels.reshape(frames, walkers)
    z = []
    for j, w in enumerate(system.mode_weights):
        per_walker = (labels == j).mean(0)
        se = max(per_walker.std(ddof=1), np.sqrt(w * (1 - w))) / np.sqrt(walkers)
        z.append((per_walker.mean() - w) / se)
    return np.array(z)


def test_stuck_hmc_no_longer_reproduces_mixture_weights_from_the_default_start():
    # HMC with a step far beyond the modes' width rejects every proposal. From exact draws it
    # still "reproduced" the weights 0.8/0.2 (the old default start hid it); from the default
    # start (the modes in turn) it reports 1/2 each, far from the truth, and sample() warns.
    system = GaussianMixture(weights=[0.8, 0.2], **TWO_MODES)
    run = dict(n_steps=50, n_walkers=2000, record_every=10, seed=0)
    hmc = lmd.integrators.HMC(timestep=50.0, n_leapfrog=5)
    with pytest.warns(RuntimeWarning, match="acceptance .* below 0.05"):
        stuck = lmd.sample(system, hmc, **run)
    assert stuck.acceptance_rate.mean() < 0.01
    assert np.abs(_mode_weight_z(system, stuck)).min() >= 20
    with pytest.warns(RuntimeWarning, match="acceptance .* below 0.05"):
        hidden = lmd.sample(system, hmc, initial_positions="exact", **run)
    assert np.abs(_mode_weight_z(system, hidden)).max() <= 5
    # The same exact-start data reject equal weights, so "reproduced" is not vacuous.
    labels = np.asarray(system.mode_assignment(hidden.positions[0]))
    assert abs((labels == 0).mean() - 0.5) / np.sqrt(0.25 / labels.size) >= 20
