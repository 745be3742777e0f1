"""`analyze --reference` writes its comparison only inside RUN_DIR/report, never through a link."""

from __future__ import annotations

import numpy as np
import pytest

from langevin_md.run.analyze import COMPARISON_JSON, VERDICT_TXT, compare_runs
from langevin_md.safe_paths import UnsafePathError


@pytest.fixture(scope="module")
def runs():
    """Two small 'runs' of alanine dipeptide: the reference positions, jittered."""
    import langevin_md as lmd
    from langevin_md.result import SampleResult

    system = lmd.systems.alanine_dipeptide(platform="Reference")
    x0 = np.asarray(system.positions, dtype=np.float64)
    out = []
    for seed in (0, 1):
        x = x0 + 0.01 * np.random.default_rng(seed).standard_normal((20, 4) + x0.shape)
        out.append(SampleResult(positions=x, energies=np.zeros((20, 4)), steps=np.arange(20), kT=2.494,
                                metadata={"topology": system.topology}))
    return out


def test_a_link_at_report_is_refused(tmp_path, runs):
    run, ref, outside = tmp_path / "run", tmp_path / "ref", tmp_path / "outside"
    for d in (run, ref, outside):
        d.mkdir()
    (run / "report").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        compare_runs(run, ref, *runs)
    assert list(outside.iterdir()) == []


def test_links_at_the_comparison_files_are_replaced_not_followed(tmp_path, runs):
    run, ref = tmp_path / "run", tmp_path / "ref"
    (run / "report").mkdir(parents=True)
    ref.mkdir()
    victims = {}
    for name in (COMPARISON_JSON, VERDICT_TXT):
        victims[name] = tmp_path / f"victim_{name}"
        victims[name].write_text("precious\n")
        (run / "report" / name).symlink_to(victims[name])
    data = compare_runs(run, ref, *runs)
    for name, victim in victims.items():
        assert victim.read_text() == "precious\n"
        assert not (run / "report" / name).is_symlink()
    assert (run / "report" / VERDICT_TXT).read_text().strip() == data["verdict"]
