"""`langevin-md validate`: passes on the real integrators, fails on a wrong one registered by a user."""

from dataclasses import dataclass

import pytest

from langevin_md import laws, validate
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


def _row(out: str, name: str) -> list[str]:
    """The table row of law ``name``, split on whitespace after the name."""
    lines = [line for line in out.splitlines() if line.startswith(name)]
    assert len(lines) == 1, out
    return lines[0][len(name):].split()


def test_quick_subset_of_real_integrators_passes(capsys):
    assert validate.main(["--quick", "--no-openmm", "--only", "ULA"]) == 0
    out = capsys.readouterr().out
    # row: backend, mean, "±", se, exact, z, verdict, seconds, formula...
    backend, mean, pm, se, exact, z, verdict = _row(out, "ULA variance")[:7]
    assert (backend, pm, verdict) == ("torch", "±", "ok")
    assert float(exact) == pytest.approx(laws.ula_stationary_variance(0.5, 1.0), rel=1e-4)
    # the printed z is the one the printed numbers give, and it is within the pass range
    assert float(z) == pytest.approx((float(mean) - float(exact)) / float(se), abs=0.05 + 0.05 * abs(float(z)))
    assert abs(float(z)) <= validate.Z_FAIL


def test_a_wrong_integrator_claiming_exactness_fails(registered, capsys):
    registered("OverconfidentULA", lambda: OverconfidentULA(step_size=0.5))
    assert validate.main(["--quick", "--only", "OverconfidentULA"]) == 1
    out = capsys.readouterr().out
    row = _row(out, "OverconfidentULA")
    assert row[6] == "FAIL" and abs(float(row[5])) > validate.Z_FAIL


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
    if validate.openmm_unavailable():  # openmm is a hard dependency: this branch is a broken install
        assert code == 0 and "skip" in out
    else:
        assert code == 0 and "OpenMM BAOAB positions" in out and "OpenMM MALA exact" in out


@pytest.mark.slow
def test_every_builtin_law_passes():
    assert validate.main(["--quick"]) == 0
