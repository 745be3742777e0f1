import numpy as np
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


def test_ramachandran_labels_sit_on_their_clouds():
    # Real matplotlib, synthetic clouds where the basins are: αR near (−70°, −40°), far from
    # the middle of its core box (−112.5°, −55°) where the old label sat; C7eq/β near
    # (−80°, 170°), wrapping through ψ = ±180°.
    from matplotlib.figure import Figure

    from langevin_md.demo import draw_ramachandran_scatter

    rng = np.random.default_rng(0)
    phi = np.concatenate([rng.normal(-70, 8, 2000), rng.normal(-80, 10, 2000)])
    psi = np.concatenate([rng.normal(-40, 10, 2000), (rng.normal(170, 15, 2000) + 180) % 360 - 180])
    labels = draw_ramachandran_scatter(Figure().add_subplot(), phi, psi)
    assert set(labels) == {"C7eq/β", "αR"}

    def angle(a, b):
        return abs((a - b + 180) % 360 - 180)

    x, y = labels["αR"].get_position()
    assert angle(x, -70) < 5 and angle(y, -40) < 5, (x, y)
    assert labels["αR"].get_ha() == "center" and labels["αR"].get_va() == "center"
    x, y = labels["C7eq/β"].get_position()
    assert angle(x, -80) < 5 and angle(y, 170) < 8, (x, y)  # the circular median, not ψ ≈ 0


def test_population_line_says_it_is_not_equilibrium():
    from langevin_md.demo import population_line

    line = population_line([0.45, 0.55, 0.0], 1.0)
    assert "after 1 ps" in line and "not equilibrium" in line
    assert "C7eq/β 45%" in line and "αR 55%" in line
