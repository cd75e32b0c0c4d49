"""Report figures never cut a title or label off the canvas and never print tick labels over each
other: quickstart-like fabricated runs (40..240 labels), alone, beside the paper's curves
(1,000..10,000) and relative to random; long setting titles and knob-laden row labels."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from matplotlib.text import Text
from test_report import REFERENCE, make_run

from al_bench.report import aggregate, figures, pairwise
from al_bench.report.collect import collect, read_reference

LONG_KNOB = {"strategy.some_rather_long_option_name": 0.123456, "trainer.another_long_knob_name": "a_long_value"}


def quickstart_like(root: Path, long_rows: bool) -> None:
    """random / entropy (and lloss with long knobs) x 2 seeds, 40 + 40 x 5 labels."""
    for seed in (0, 1):
        for strategy, accs in (("random", [0.3, 0.45, 0.55, 0.62, 0.7, 0.74]),
                               ("entropy", [0.3, 0.5, 0.6, 0.7, 0.76, 0.8])):
            make_run(root, f"{strategy}/{seed}", strategy, seed, [a + 0.01 * seed for a in accs], dataset="digits",
                     initial=40, step=40, subset=None)
        if long_rows:
            for value in (0.5, 1.0):
                make_run(root, f"lloss/{value}/{seed}", "lloss", seed, [0.3, 0.5, 0.58, 0.69, 0.75, 0.79],
                         dataset="digits", initial=40, step=40, subset=None,
                         knobs={**LONG_KNOB, "strategy.some_rather_long_option_name": value})


def layout_problems(figure) -> list[str]:
    """Text outside the canvas, and overlapping tick labels, of a drawn figure."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    canvas = figure.bbox
    problems = []
    hidden = {id(t) for axes in figure.axes for axis in (axes.xaxis, axes.yaxis) for t in axis.get_ticklabels()}
    hidden -= {id(t) for axes in figure.axes for axis in (axes.xaxis, axes.yaxis)
               for _, t in figures.drawn_tick_labels(axis)}  # matplotlib does not draw ticks outside the limits
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < canvas.x0 - 0.5 or box.y0 < canvas.y0 - 0.5 or box.x1 > canvas.x1 + 0.5 or box.y1 > canvas.y1 + 0.5:
            problems.append(f"{text.get_text()!r} at {box.bounds} outside the canvas {canvas.bounds}")
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for _, t in figures.drawn_tick_labels(axis)]
            for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
                if box_a.overlaps(box_b):
                    problems.append(f"tick labels {a!r} and {b!r} overlap")
    return problems


def setting_of(root: Path):
    collection = collect([root])
    annotated = aggregate.annotate(collection.runs, collection.knob_columns)
    summary = aggregate.summarize(annotated, collection.knob_columns)
    return annotated, summary


@pytest.mark.parametrize("long_rows", [False, True], ids=["quickstart", "long_rows"])
@pytest.mark.parametrize("overlay", ["none", "reference", "reference_relative"])
def test_curves_keep_every_text_on_the_canvas_and_ticks_apart(tmp_path, long_rows, overlay):
    quickstart_like(tmp_path, long_rows)
    _, summary = setting_of(tmp_path)
    reference = read_reference(REFERENCE) if overlay != "none" else None
    relative = "random" if overlay == "reference_relative" else None
    title = summary.setting.iloc[0] + (" with a deliberately long suffix that must wrap" * 2 if long_rows else "")
    figure = figures.curves_figure(summary, title, reference, relative)
    assert layout_problems(figure) == []
    assert len(figures.drawn_tick_labels(figure.axes[0].xaxis)) >= 3  # thinned, not emptied
    if overlay != "none":  # both ranges are on the axis: 40..240 and up to 10,000
        assert figure.axes[0].get_xlim()[1] >= 10000 and figure.axes[0].get_xlim()[0] <= 40


def test_before_the_fix_the_reference_overlay_overlapped(tmp_path):
    """The check above can fail: tick labels at every budget (the old rule for <= 12 budgets)
    overlap when 40..240 share an axis with 1,000..10,000."""
    quickstart_like(tmp_path, False)
    _, summary = setting_of(tmp_path)
    reference = read_reference(REFERENCE).iloc[:5]  # 6 run budgets + 5 paper budgets: 11 ticks
    figure = figures.curves_figure(summary, "t", reference)
    axes = figure.axes[0]
    budgets = sorted({*summary.n_labeled.astype(int), *reference.index.astype(int)})
    axes.set_xticks(budgets)
    assert any("overlap" in p for p in layout_problems(figure))
    figures.thin_tick_labels(figure, axes.xaxis)
    assert layout_problems(figure) == []


@pytest.mark.parametrize("long_rows", [False, True], ids=["quickstart", "long_rows"])
def test_penalty_matrix_keeps_every_text_on_the_canvas(tmp_path, long_rows):
    quickstart_like(tmp_path, long_rows)
    annotated, _ = setting_of(tmp_path)
    rows = list(dict.fromkeys(annotated.row))
    matrix = pairwise.as_matrix(pairwise.penalty_matrix(annotated, rows), rows)
    figure = figures.penalty_figure(matrix, pairwise.column_mean(matrix), annotated.setting.iloc[0])
    assert layout_problems(figure) == []
