"""`langevin-md validate`: passes on the real integrators, fails on a wrong one registered by a user."""

from dataclasses import dataclass

import pytest

from langevin_md import validate
from langevin_md.integrators import ULA


@dataclass(frozen=True)
class OverconfidentULA(ULA):
    """ULA that a user wrongly believes to be exact (no Metropolis test)."""


@pytest.fixture
def registered():
    names = []

    def add(name, factory, law="exact"):
        names.append(name)
        return validate.register(name, factory, law)

    yield add
    for name in names:
        validate.unregister(name)


def test_quick_subset_of_real_integrators_passes(capsys):
    assert validate.main(["--quick", "--no-openmm", "--only", "ULA"]) == 0
    out = capsys.readouterr().out
    assert "ULA variance" in out and "ok" in out and "z" in out


def test_a_wrong_integrator_claiming_exactness_fails(registered, capsys):
    registered("OverconfidentULA", lambda: OverconfidentULA(step_size=0.5))
    assert validate.main(["--quick", "--only", "OverconfidentULA"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "OverconfidentULA" in out


def test_a_correct_user_integrator_passes(registered):
    from langevin_md.integrators import MALA

    registered("MyMALA", lambda: MALA(step_size=0.4))
    assert validate.main(["--quick", "--only", "MyMALA"]) == 0


def test_registration_errors(registered):
    registered("Dup", lambda: ULA(step_size=0.1))
    with pytest.raises(ValueError, match="already registered"):
        validate.register("Dup", lambda: ULA(step_size=0.1))
    with pytest.raises(ValueError, match="law must be"):
        validate.register("Other", lambda: ULA(step_size=0.1), law="approximately")
    with pytest.raises(KeyError):
        validate.unregister("nobody")


def test_list_and_bad_arguments(capsys):
    assert validate.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "BAOAB positions" in out and "Brownian diffusion" in out
    assert validate.main(["--only", "no-such-law"]) == 2
    with pytest.raises(SystemExit):
        validate.main(["--dtype", "float16"])


def test_openmm_laws_run_or_are_skipped_with_a_reason(capsys):
    code = validate.main(["--quick", "--only", "OpenMM", "--platform", "Reference"])
    out = capsys.readouterr().out
    if validate.openmm_unavailable():
        assert code == 0 and "skip" in out
    else:
        assert code == 0 and "OpenMM BAOAB positions" in out and "OpenMM MALA exact" in out


@pytest.mark.slow
def test_every_builtin_law_passes():
    assert validate.main(["--quick"]) == 0
