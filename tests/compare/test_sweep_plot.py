"""The step-size sweep picture, read back from its artists: diverged steps drawn apart from the
values, the |z| label inside its axes, step-size tick labels that do not overlap."""

import numpy as np
import pytest

from langevin_md.compare import plot_step_size_sweep, step_size_sweep
from langevin_md.compare.plots import step_size_sweep_figure
from langevin_md.integrators import ULA
from langevin_md.systems.mixture import GaussianMixture


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture([[-1.5], [1.5]], covariances=0.5, weights=[0.3, 0.7])


@pytest.fixture(scope="module")
def wide_sweep(mixture):
    # ULA is stable for ε < 2σ² = 1 in each peak: 5 and 20 diverge, 0.01 and 0.3 do not.
    return step_size_sweep(mixture, ULA(step_size=0.1), [0.01, 0.3, 5.0, 20.0], n_force_evals=200,
                           n_walkers=16, seed=0, initial_positions=np.zeros(1))


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def inside(box, outer, slack=1.0):
    return (box.x0 >= outer.x0 - slack and box.x1 <= outer.x1 + slack and box.y0 >= outer.y0 - slack
            and box.y1 <= outer.y1 + slack)


def visible_tick_labels(axis, renderer):
    lo, hi = sorted(axis.get_view_interval())
    labels = [t for t in axis.get_ticklabels(which="both")
              if t.get_visible() and t.get_text() and lo <= t.get_position()[axis.axis_name == "y"] <= hi]
    return [t.get_window_extent(renderer) for t in labels]


def test_diverged_steps_sit_in_a_labelled_band_not_at_a_value(wide_sweep):
    assert [r.diverged for r in wide_sweep.rows] == [False, False, True, True]
    fig = step_size_sweep_figure(wide_sweep)
    renderer = drawn(fig)
    for ax, at_bottom in ((fig.axes[0], True), (fig.axes[1], False)):
        marks = [c for c in ax.collections if c.get_label() == "diverged (no value)"]
        assert len(marks) == 1, [c.get_label() for c in ax.collections]
        ys = marks[0].get_offset_transform().transform(marks[0].get_offsets())[:, 1]  # display pixels
        xs = marks[0].get_offsets()[:, 0]
        assert sorted(xs.tolist()) == [5.0, 20.0]
        live = [c for c in ax.collections if c is not marks[0]]
        live_y = np.concatenate([c.get_offset_transform().transform(c.get_offsets())[:, 1] for c in live])
        box = ax.get_window_extent(renderer)
        if at_bottom:  # below every value, including ESS = 0 (the old picture put them at the best ESS)
            zero = ax.transData.transform((1.0, 0.0))[1]
            assert ys.max() < zero and ys.max() < live_y.min()
            assert ys.min() > box.y0
        else:  # above every |z|
            assert ys.min() > live_y.max() and ys.max() < box.y1
        label = [t for t in ax.texts if t.get_text() == "diverged"]
        assert len(label) == 1 and inside(label[0].get_window_extent(renderer), box)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "diverged (no value)" in legend


def test_z_label_is_inside_the_bias_axes(wide_sweep):
    fig = step_size_sweep_figure(wide_sweep)
    renderer = drawn(fig)
    ax = fig.axes[1]
    (label,) = [t for t in ax.texts if t.get_text() == "|z| = 5"]
    assert inside(label.get_window_extent(renderer), ax.get_window_extent(renderer))
    lo, hi = ax.get_ylim()
    assert lo < 5.0 < hi


@pytest.mark.parametrize("sizes", [[0.12, 0.2, 0.3, 0.45, 0.7], [1e-4, 3e-3, 0.1, 0.3, 1.0, 30.0, 1e3]])
def test_step_axis_tick_labels_do_not_overlap(mixture, sizes):
    # Less than one decade (the old axis labelled minor ticks 2e-1, 3e-1, 4e-1 ... on top of
    # each other) and seven decades.
    sweep = step_size_sweep(mixture, ULA(step_size=0.1), sizes, n_force_evals=60, n_walkers=8, seed=0,
                            initial_positions=np.zeros(1))
    fig = step_size_sweep_figure(sweep, mixture)
    renderer = drawn(fig)
    for ax in fig.axes[:2]:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = visible_tick_labels(axis, renderer)
            assert len(boxes) >= 2, axis
            # Touching labels read as one ("3×10⁻¹4×10⁻¹"): ask for a gap of 4 pixels at 100 dpi.
            boxes = [b.expanded(1.0, 1.0).padded(2.0) for b in boxes]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), (axis.axis_name, [t.get_text() for t in axis.get_ticklabels(which="both")])


def test_png_is_written(wide_sweep, mixture, tmp_path):
    path = plot_step_size_sweep(wide_sweep, tmp_path / "sweep.png", system=mixture)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
