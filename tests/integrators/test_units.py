"""Physical integrator settings given as openmm.unit Quantities or as config text with units.

A Quantity is converted to MD units (ps, 1/ps, nm, nm²) when the integrator is built, so the
integrator is the very one built from plain floats, and a wrong unit is refused by name.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

import numpy as np
import pytest
from openmm import unit as u

import langevin_md as lmd
from langevin_md.run.config import ConfigError, parse_config
from langevin_md.run.build import build_integrator
from langevin_md.integrators import (HMC, MALA, SGLD, ULA, BAOAB, OBABO, AnnealedLangevin, Brownian,
                                     PredictorCorrector, RandomWalkMetropolis)
from langevin_md.systems.harmonic import Harmonic
from langevin_md.units import parse_quantity, parse_unit

fs, ps, ns, nm, A = u.femtosecond, u.picosecond, u.nanosecond, u.nanometer, u.angstrom

# (built from Quantities, built from plain floats in MD units)
SAME = {
    "baoab": (lambda: BAOAB(2 * fs, 1 / ps), lambda: BAOAB(0.002, 1.0)),
    "obabo": (lambda: OBABO(timestep=0.5 * fs, friction=10 / ns), lambda: OBABO(0.0005, 0.01)),
    "brownian": (lambda: Brownian(1 * fs, 5 / ps), lambda: Brownian(0.001, 5.0)),
    "ula": (lambda: ULA(0.01 * nm ** 2), lambda: ULA(0.01)),
    "ula_angstrom": (lambda: ULA(1 * A ** 2), lambda: ULA(0.01)),
    "ula_preconditioned": (lambda: ULA(0.5 * u.dimensionless, preconditioner="diagonal"),
                           lambda: ULA(0.5, preconditioner="diagonal")),
    "mala": (lambda: MALA(0.01 * nm ** 2, target_accept=0.5), lambda: MALA(0.01, target_accept=0.5)),
    "hmc": (lambda: HMC(1 * fs, n_leapfrog=5), lambda: HMC(0.001, n_leapfrog=5)),
    "rwm": (lambda: RandomWalkMetropolis(0.5 * A), lambda: RandomWalkMetropolis(0.05)),
    "sgld": (lambda: SGLD(1e-4 * nm ** 2, decay_time=10.0), lambda: SGLD(1e-4, decay_time=10.0)),
    "annealed": (lambda: AnnealedLangevin([1.0, 0.1] * nm, 10, 1e-5 * nm ** 2),
                 lambda: AnnealedLangevin((1.0, 0.1), 10, 1e-5)),
    "predictor_corrector": (lambda: PredictorCorrector([1 * nm, 1 * A]),
                            lambda: PredictorCorrector((1.0, 0.1))),
}


@pytest.mark.parametrize("name", list(SAME))
def test_quantities_build_the_integrator_of_plain_floats(name):
    with_units, plain = (f() for f in SAME[name])
    assert with_units == plain
    assert hash(with_units) == hash(plain)
    for key, unit_name in type(plain).physical_units.items():
        value = getattr(with_units, key)
        # stored as plain floats, bit for bit those of the float-built integrator
        values = value if isinstance(value, tuple) else (value,)
        expected = getattr(plain, key)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert all(type(v) is float for v in values), f"{key} holds {value!r}"
        assert [v.hex() for v in values] == [float(e).hex() for e in expected]


def test_equality_is_not_vacuous():
    assert BAOAB(1 * fs, 1 / ps) != BAOAB(0.002, 1.0)   # 1 fs is not 2 fs
    assert ULA(1 * A ** 2) != ULA(1.0)                    # Å² are converted, not taken as nm²


@pytest.mark.parametrize("build,message", [
    (lambda: BAOAB(timestep=2 * nm), r"timestep must be in picosecond or a compatible unit, got 2 nm"),
    (lambda: OBABO(0.002, friction=1 * ps), r"friction must be in 1/picosecond or a compatible unit, got 1 ps"),
    (lambda: Brownian(timestep=300 * u.kelvin), r"timestep must be in picosecond .*got 300 K"),
    (lambda: ULA(step_size=0.1 * nm), r"step_size must be in nanometer\*\*2 .*got 0.1 nm"),
    (lambda: ULA(0.01 * nm ** 2, preconditioner="dense"),
     r"step_size must be a plain number or a dimensionless quantity, got 0.01 nm\*\*2 \(with a preconditioner"),
    (lambda: MALA(step_size=1 * fs), r"step_size must be in nanometer\*\*2 .*got 1 fs"),
    (lambda: HMC(timestep=0.1 * nm ** 2), r"timestep must be in picosecond .*got 0.1 nm\*\*2"),
    (lambda: RandomWalkMetropolis(scale=1 * ps), r"scale must be in nanometer .*got 1 ps"),
    (lambda: SGLD(step_size=1 * nm), r"step_size must be in nanometer\*\*2 .*got 1 nm"),
    (lambda: AnnealedLangevin(sigmas=[1 * nm, 1 * u.second]), r"sigmas must be in nanometer .*got 1 s"),
    (lambda: AnnealedLangevin(step_size=1 * fs), r"step_size must be in nanometer\*\*2 .*got 1 fs"),
    (lambda: BAOAB(timestep=-1 * fs), r"timestep must be a finite positive number"),
])
def test_wrong_units_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_plain_settings_import_no_openmm():
    code = ("import sys; from langevin_md.integrators import BAOAB, MALA; BAOAB(0.002, 1.0); MALA(0.01);"
            "print('openmm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------- text
@pytest.mark.parametrize("text,value,unit", [
    ("2 fs", 2.0, fs),
    ("2*fs", 2.0, fs),
    ("0.5 femtoseconds", 0.5, fs),
    ("1/ps", 1.0, ps ** -1),
    ("10 ns**-1", 10.0, ns ** -1),
    ("0.01 nm**2", 0.01, nm ** 2),
    ("1e-3 angstrom**2", 1e-3, A ** 2),
    ("4.184 kJ/mol", 4.184, u.kilojoule_per_mole),
    ("3 kJ/(mol*nm**2)", 3.0, u.kilojoule_per_mole / nm ** 2),
])
def test_parse_quantity(text, value, unit):
    q = parse_quantity(text)
    assert q.value_in_unit(unit) == pytest.approx(value, rel=1e-15)
    assert q.unit.is_compatible(unit)


@pytest.mark.parametrize("text,message", [
    ("2", r"has no unit"),
    ("fs", r"does not start with a number"),
    ("2 blorps", r"unknown unit 'blorps'"),
    ("2 A", r"ambiguous .*ampere, angstrom"),
    ("2 nm^2", r"cannot read '\^2'"),
    ("2 nm**x", r"integer power"),
    ("2 (nm", r"unbalanced parentheses"),
    ("2 nm nm", r"unexpected 'nm'"),
    ("__import__('os').system('true')", r"does not start with a number"),
    ("1 nm; import os", r"cannot read ';"),
    ("1 sqrt", r"unknown unit 'sqrt'"),
])
def test_parse_quantity_refuses_anything_else(text, message):
    with pytest.raises(ValueError, match=message):
        parse_quantity(text)


def test_parse_unit_reciprocal():
    assert parse_unit("/picosecond") == (1 / ps).unit
    assert parse_unit("nanometer**2") == nm ** 2


# --------------------------------------------------------------------------- configs
CONFIG = """
[system]
name = "harmonic"
dim = 3
[integrator]
name = "{name}"
{keys}
[sampler]
n_steps = 20
n_walkers = 4
"""


def _config(name, keys):
    return parse_config(tomllib.loads(CONFIG.format(name=name, keys=keys)))


@pytest.mark.parametrize("name,text_keys,number_keys", [
    ("baoab", 'timestep = "2 fs"\nfriction = "1/ps"', "timestep = 0.002\nfriction = 1.0"),
    ("brownian", 'timestep = "1 fs"\nfriction = "5 ps**-1"', "timestep = 0.001\nfriction = 5.0"),
    ("ula", 'step_size = "0.01 nm**2"', "step_size = 0.01"),
    ("mala", 'step_size = "1 angstrom**2"\ntarget_accept = 0.5', "step_size = 0.01\ntarget_accept = 0.5"),
    ("hmc", 'timestep = "1 fs"\nn_leapfrog = 4', "timestep = 0.001\nn_leapfrog = 4"),
    ("rwm", 'scale = "0.5 angstrom"', "scale = 0.05"),
    ("annealed_langevin", 'sigmas = ["1 nm", "1 angstrom"]\nstep_size = "1e-5 nm**2"',
     "sigmas = [1.0, 0.1]\nstep_size = 1e-5"),
])
def test_config_text_with_units_resolves_to_md_units(name, text_keys, number_keys):
    text, numbers = _config(name, text_keys), _config(name, number_keys)
    assert text.integrator == numbers.integrator
    assert text.fingerprint() == numbers.fingerprint()
    assert text.to_toml() == numbers.to_toml()  # the run folder's resolved config holds numbers
    assert build_integrator(text) == build_integrator(numbers)


@pytest.mark.parametrize("name,keys,message", [
    ("baoab", 'timestep = "2 blorps"', r'\[integrator\] timestep = "2 blorps": unknown unit \'blorps\''),
    ("baoab", 'timestep = "two fs"', r'\[integrator\] timestep = "two fs": .*does not start with a number'),
    ("baoab", 'timestep = "2"', r'\[integrator\] timestep = "2": .*has no unit'),
    ("baoab", 'friction = "1 ps"',
     r'\[integrator\] name = \'baoab\' friction = "1 ps": friction must be in 1/picosecond'),
    ("ula", 'step_size = "0.01 nm**2"\npreconditioner = "diagonal"',
     r'step_size = "0.01 nm\*\*2": step_size must be a plain number or a dimensionless quantity'),
    ("hmc", 'n_leapfrog = "10 fs"', r"\[integrator\] n_leapfrog: expected an integer"),
    ("sgld", 'decay_time = "2 ps"', r"\[integrator\] decay_time: expected a number"),
    ("annealed_langevin", 'sigmas = ["1 nm", true]', r"sigmas = \[\"1 nm\", true\]: expected numbers"),
])
def test_config_refuses_bad_unit_text_naming_key_and_value(name, keys, message):
    with pytest.raises(ConfigError, match=message):
        _config(name, keys)


# --------------------------------------------------------------------------- runs
@pytest.mark.parametrize("with_units,plain", [
    (lambda: BAOAB(20 * fs, 1 / ps), lambda: BAOAB(0.02, 1.0)),
    (lambda: MALA(0.05 * nm ** 2, target_accept=0.6), lambda: MALA(0.05, target_accept=0.6)),
])
def test_a_run_with_quantities_equals_one_with_floats(with_units, plain):
    system = Harmonic(dim=3, k=2.0)
    runs = [lmd.sample(system, make(), n_steps=30, n_walkers=6, burn_in=20, seed=11, dtype="float64")
            for make in (with_units, plain)]
    np.testing.assert_array_equal(runs[0].positions, runs[1].positions)
    np.testing.assert_array_equal(runs[0].energies, runs[1].energies)
    # and the run moved: equal because the settings are equal, not because nothing happened
    assert not np.array_equal(runs[0].positions[0], runs[0].positions[-1])
    other = lmd.sample(system, plain().__class__(**{**_fields(plain()), **_doubled(plain())}), n_steps=30,
                       n_walkers=6, burn_in=20, seed=11, dtype="float64")
    assert not np.array_equal(other.positions, runs[0].positions)


def _fields(integrator) -> dict:
    import dataclasses

    return {f.name: getattr(integrator, f.name) for f in dataclasses.fields(integrator)}


def _doubled(integrator) -> dict:
    """The integrator's first physical setting doubled: a different kernel."""
    key = next(iter(type(integrator).physical_units))
    return {key: 2 * getattr(integrator, key)}


def test_cli_run_with_units_in_the_config(tmp_path, capsys):
    from langevin_md import cli

    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.format(name="baoab", keys='timestep = "2 nm"'))
    code = cli.main(["run", str(bad), "-o", str(tmp_path / "bad_run")])
    err = capsys.readouterr().err
    assert code == 2 and 'timestep = "2 nm": timestep must be in picosecond' in err
    assert not (tmp_path / "bad_run").exists()

    good = tmp_path / "good.toml"
    good.write_text(CONFIG.format(name="baoab", keys='timestep = "20 fs"\nfriction = "1/ps"'))
    assert cli.main(["run", str(good), "-o", str(tmp_path / "run"), "--no-progress"]) == 0
    resolved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert resolved["integrator"]["timestep"] == 0.02 and resolved["integrator"]["friction"] == 1.0
