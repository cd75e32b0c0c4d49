"""Learning curves and the pairwise penalty heatmap, drawn without pyplot (no global backend).

Curves follow the deep active-learning papers' convention: test accuracy (%) against the number
of labeled images, one line with markers per strategy, a band of ±1 sample std over seeds, a
fixed colour per strategy (random in black with square markers), published curves dashed.

Every text stays readable whatever the labels: constrained layout keeps titles, axis labels and
the legend (below the axes) on the canvas, long titles and labels are wrapped, and tick labels
that would overlap are thinned out after a first draw (`thin_tick_labels`), e.g. runs at 40..240
labels drawn beside the paper's 1,000..10,000.
"""

from __future__ import annotations

import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STRATEGY_STYLE = {  # colour, marker
    "random": ("black", "s"),
    "entropy": ("tab:blue", "o"),
    "least_confidence": ("tab:cyan", "v"),
    "margin": ("tab:purple", "D"),
    "coreset": ("tab:green", "^"),
    "lloss": ("tab:red", "o"),
    "lloss_mse": ("tab:orange", "P"),
    "gt_loss": ("tab:brown", "*"),
}
OTHER_COLOURS = ("tab:pink", "tab:olive", "teal", "goldenrod", "navy", "maroon", "darkviolet", "lime")
VARIANT_LINESTYLES = ("-", ":", "-.")  # "--" is kept for published curves


def strategy_style(strategy: str) -> tuple[str, str]:
    """Colour and marker of a strategy; strategies outside the fixed list get a stable colour."""
    if strategy in STRATEGY_STYLE:
        return STRATEGY_STYLE[strategy]
    return OTHER_COLOURS[zlib.crc32(strategy.encode()) % len(OTHER_COLOURS)], "X"


def seeds_text(counts: pd.Series) -> str:
    """``mean of 5 seeds`` or ``mean of 3-5 seeds`` for the seed counts of one curve."""
    low, high = int(counts.min()), int(counts.max())
    return f"mean of {low} seed{'s' * (high > 1)}" if low == high else f"mean of {low}-{high} seeds"


def curve_lines(summary: pd.DataFrame, relative_to: str | None) -> list[dict]:
    """What to draw for each row of one setting: label, strategy, x, y, band half-width, seeds.

    With ``relative_to``, y is the row's mean minus the mean of the first row of that strategy at
    the same budget (percentage points) and the band is the row's own std.
    """
    baseline = None
    if relative_to is not None:
        base_rows = summary[summary.strategy == relative_to]
        first = base_rows[base_rows.row == base_rows.row.iloc[0]]
        baseline = first.set_index("n_labeled")["test_acc_mean_pct"]
    lines = []
    for row, part in summary.groupby("row", sort=False):
        part = part.sort_values("n_labeled")
        x = part.n_labeled.astype(float).to_numpy()
        y = part.test_acc_mean_pct.to_numpy(dtype=float)
        if baseline is not None:
            y = y - baseline.reindex(part.n_labeled).to_numpy(dtype=float)
        lines.append({"row": row, "strategy": part.strategy.iloc[0], "x": x, "y": y,
                      "std": part.test_acc_std_pct.to_numpy(dtype=float), "seeds": part.n_seeds})
    return lines


def reference_lines(reference: pd.DataFrame, relative_to: str | None) -> list[dict]:
    """Published curves to overlay; relative to the paper's own baseline when asked (else none)."""
    if relative_to is not None and relative_to not in reference.columns:
        return []
    lines = []
    for strategy in reference.columns:
        y = reference[strategy].to_numpy(dtype=float)
        if relative_to is not None:
            y = y - reference[relative_to].to_numpy(dtype=float)
        lines.append({"strategy": strategy, "x": reference.index.to_numpy(dtype=float), "y": y})
    return lines


def wrap(text: str, width: int) -> str:
    """`text` wrapped to lines of at most `width` characters (existing line breaks kept)."""
    return "\n".join(textwrap.fill(line, width, break_long_words=True) or line for line in str(text).split("\n"))


def drawn_tick_labels(axis) -> list[tuple[float, object]]:
    """(location, label) of the ticks of `axis` that are drawn: labelled, inside the view limits."""
    low, high = sorted(axis.get_view_interval())
    span = (high - low) * 1e-9
    return [(loc, label) for loc, label in zip(axis.get_ticklocs(), axis.get_ticklabels())
            if label.get_visible() and label.get_text() and low - span <= loc <= high + span]


def thin_tick_labels(figure: Figure, axis, gap_px: float = 4.0) -> None:
    """Keep the ticks of `axis` whose labels do not overlap the previous kept one (drawn once to
    measure them); the first tick always stays."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ticks = drawn_tick_labels(axis)
    vertical = axis.axis_name == "y"
    kept, last = [], None
    for loc, label in ticks:
        box = label.get_window_extent(renderer)
        low, high = (box.y0, box.y1) if vertical else (box.x0, box.x1)
        if last is None or low > last + gap_px:
            kept.append(loc)
            last = high
    if len(kept) < len(ticks):
        axis.set_ticks(kept)


def draw_curves(summary: pd.DataFrame, title: str, stem: Path, reference: pd.DataFrame | None = None,
                relative_to: str | None = None) -> list[Path]:
    """Learning curves of one setting, saved as ``stem``.png and ``stem``.pdf; returns the paths."""
    figure = curves_figure(summary, title, reference, relative_to)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        figure.savefig(path, dpi=150)
    return paths


def curves_figure(summary: pd.DataFrame, title: str, reference: pd.DataFrame | None = None,
                  relative_to: str | None = None) -> Figure:
    """The learning-curves figure of one setting, laid out (see draw_curves)."""
    figure = Figure(figsize=(7, 5), layout="constrained")
    FigureCanvasAgg(figure)  # a canvas to measure text on, without pyplot
    axes = figure.add_subplot()
    variants: dict[str, int] = {}
    for line in curve_lines(summary, relative_to):
        colour, marker = strategy_style(line["strategy"])
        variant = variants.setdefault(line["strategy"], 0)
        variants[line["strategy"]] += 1
        axes.plot(line["x"], line["y"], color=colour, marker=marker, markersize=5,
                  linestyle=VARIANT_LINESTYLES[variant % len(VARIANT_LINESTYLES)],
                  label=wrap(f"{line['row']} ({seeds_text(line['seeds'])})", 45), zorder=3)
        axes.fill_between(line["x"], line["y"] - line["std"], line["y"] + line["std"],
                          color=colour, alpha=0.15, linewidth=0)
    for line in reference_lines(reference, relative_to) if reference is not None else []:
        colour, _ = strategy_style(line["strategy"])
        axes.plot(line["x"], line["y"], color=colour, linestyle="--", linewidth=1.2, alpha=0.8,
                  label=f"{line['strategy']} (paper)")
    budgets = np.unique(np.concatenate([line.get_xdata() for line in axes.get_lines()]))
    if len(budgets) <= 12:
        axes.set_xticks(budgets.astype(int))
    if relative_to is not None:
        axes.axhline(0.0, color="black", linewidth=0.8)
        axes.set_ylabel(f"Accuracy minus {relative_to} (percentage points)\nmean ± 1 std over seeds")
    else:
        axes.set_ylabel("Test accuracy (%)\nmean ± 1 std over seeds")
    axes.set_xlabel("Number of labeled images")
    axes.set_title(wrap(title, 80), fontsize=10)
    axes.grid(True, alpha=0.3)
    # below the axes, not on them: a legend inside covers curves, and a long one ran off the canvas
    figure.legend(*axes.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=2)
    thin_tick_labels(figure, axes.xaxis)
    thin_tick_labels(figure, axes.yaxis)
    return figure


def draw_penalty_matrix(matrix: pd.DataFrame, column_mean: pd.Series, title: str, path: Path) -> Path:
    """Heatmap of a penalty matrix with its values and a column-mean row below; saved to ``path``."""
    penalty_figure(matrix, column_mean, title).savefig(path, dpi=150)
    return path


def penalty_figure(matrix: pd.DataFrame, column_mean: pd.Series, title: str) -> Figure:
    """The penalty-matrix heatmap (see draw_penalty_matrix)."""
    rows = list(matrix.index)
    values = np.vstack([matrix.to_numpy(dtype=float), column_mean.reindex(matrix.columns).to_numpy(dtype=float)])
    size = 1.6 + 0.9 * len(rows)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_facecolor("0.9")  # grey = not evaluated (diagonal, or no budget with two paired seeds)
    image = axes.imshow(np.ma.masked_invalid(values), cmap="Reds", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.6 else "black")
    axes.axhline(len(rows) - 0.5, color="black", linewidth=1.5)
    labels = [wrap(row, 30) for row in rows]
    # vertical: 45-degree labels' boxes overlap their neighbours' once the labels are long
    axes.set_xticks(range(len(rows)), labels=labels, rotation=90, fontsize=8)
    axes.set_yticks(range(len(rows) + 1), labels=[*labels, "column mean"], fontsize=8)
    axes.set_xlabel("column: beaten")
    axes.set_ylabel("row: wins")
    # centred on the figure (an axes title is centred on the heatmap, left of the colour bar, and a
    # wide one ran off the canvas), wrapped to the figure's width at about 0.6 em per character
    width = int((size + 1.5) * 72 / (8 * 0.6)) - 6
    figure.suptitle(wrap(f"{title}\nP[row, column] = share of budgets where row beats column\n"
                         "(paired t-test over seeds, p < 0.05; Ash et al. 2020)", width), fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure

