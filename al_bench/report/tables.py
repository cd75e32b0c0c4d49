"""Markdown and LaTeX tables of the summary: one table per setting, rows in report order.

Rows are strategies (with their distinguishing knobs), columns are budgets (n_labeled), cells are
``mean ± std (seeds)`` of test accuracy in percent with one decimal, and the last column is the
area under the budget curve over the setting's common budgets. "X" marks a missing cell.
"""

from __future__ import annotations

import math

import pandas as pd

CAPTION = (
    "Test accuracy (%) by number of labeled images: mean ± sample standard deviation (ddof=1) "
    "over seeds, number of seeds in parentheses (no ± for a single seed); X = no finished cycle "
    "at that budget. AUBC (%): area under the accuracy-budget curve over {grid}, divided by the "
    "budget range."
)
MISSING = "X"
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def format_cell(mean: float, std: float, n: int, plus_minus: str = "±") -> str:
    """``87.6 ± 0.4 (5)``; ``87.6 (1)`` for one seed; ``X`` when nothing was measured."""
    if not n or mean is None or math.isnan(mean):
        return MISSING
    if n < 2 or std is None or math.isnan(std):
        return f"{mean:.1f} ({n})"
    return f"{mean:.1f} {plus_minus} {std:.1f} ({n})"


def grid_text(aubc: pd.DataFrame) -> str:
    """The budget range AUBC was taken over, as caption text."""
    first, last, count = aubc.iloc[0][["grid_first", "grid_last", "n_budgets"]]
    if pd.isna(first) or count < 2:
        return "fewer than two common budgets (AUBC undefined)"
    return f"the {int(count)} budgets from {int(first)} to {int(last)} that every row reached"


def cell_grid(summary: pd.DataFrame, aubc: pd.DataFrame, plus_minus: str) -> pd.DataFrame:
    """One setting as strings: index = row labels in report order, columns = budgets, then AUBC."""
    rows = list(dict.fromkeys(summary["row"]))
    cells = summary.assign(cell=[
        format_cell(m, s, n, plus_minus)
        for m, s, n in zip(summary.test_acc_mean_pct, summary.test_acc_std_pct, summary.n_seeds)
    ])
    grid = cells.pivot(index="row", columns="n_labeled", values="cell").reindex(rows)
    grid = grid.reindex(columns=sorted(grid.columns)).fillna(MISSING)
    grid.columns = [str(int(c)) for c in grid.columns]
    by_row = aubc.set_index("row")
    grid["AUBC"] = [
        format_cell(by_row.aubc_mean.get(r, math.nan) * 100, by_row.aubc_std.get(r, math.nan) * 100,
                    int(by_row.n_seeds.get(r, 0)), plus_minus)
        for r in rows
    ]
    return grid


def settings(summary: pd.DataFrame, aubc: pd.DataFrame):
    """(title, summary lines, AUBC lines) of each setting, in report order."""
    for rank, part in summary.groupby("setting_rank", sort=True):
        yield part["setting"].iloc[0], part, aubc[aubc.setting_rank == rank]


def markdown_tables(summary: pd.DataFrame, aubc: pd.DataFrame) -> str:
    """Every setting as a Markdown section: heading, caption, table."""
    sections = []
    for title, part, part_aubc in settings(summary, aubc):
        grid = cell_grid(part, part_aubc, "±")
        header = ["strategy", *grid.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(grid.columns)]
        for label, cells in grid.iterrows():
            lines.append("| " + " | ".join([str(label).replace("|", "\\|"), *cells]) + " |")
        caption = CAPTION.format(grid=grid_text(part_aubc))
        sections.append(f"## {title}\n\n{caption}\n\n" + "\n".join(lines) + "\n")
    return "\n".join(sections)


def latex_escape(text: str) -> str:
    """Text with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in str(text))


def latex_tables(summary: pd.DataFrame, aubc: pd.DataFrame) -> str:
    """Every setting as a LaTeX table (needs ``booktabs`` and ``graphicx``)."""
    tables = ["% al-bench-report tables; \\usepackage{booktabs,graphicx}"]
    for title, part, part_aubc in settings(summary, aubc):
        grid = cell_grid(part, part_aubc, "$\\pm$")
        caption = latex_escape(f"{title}. " + CAPTION.format(grid=grid_text(part_aubc))).replace("±", r"$\pm$")
        body = [" & ".join(["Strategy", *grid.columns]) + r" \\", r"\midrule"]
        body += [" & ".join([latex_escape(label), *cells]) + r" \\" for label, cells in grid.iterrows()]
        tables.append("\n".join([
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{caption}}}",
            r"\resizebox{\linewidth}{!}{%",
            r"\begin{tabular}{l" + "c" * len(grid.columns) + "}",
            r"\toprule",
            *body,
            r"\bottomrule",
            r"\end{tabular}}",
            r"\end{table}",
        ]))
    return "\n\n".join(tables) + "\n"
