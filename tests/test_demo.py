import pytest

from .io.helpers import run_cli


@pytest.mark.slow
def test_demo_writes_its_pictures_and_report(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "walker-steps/s" in proc.stdout
    for name in ("muller_brown_samples.png", "alanine_ramachandran.png",
                 "report_muller_brown_mala/report.html", "report_muller_brown_mala/trace.png"):
        path = out / name
        assert path.exists() and path.stat().st_size > 1000, name
