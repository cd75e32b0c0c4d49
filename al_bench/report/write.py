"""Write every report file for a collection of runs into one folder.

Files: runs.csv, summary.csv / .md / .tex, aubc.csv, pairwise.csv, and per setting the figures
curves.png / .pdf and pairwise.png; with ``--html`` also report.html, all of it in one page. With
several settings (datasets, models or budget schedules) each figure name gets the setting as a
suffix (``curves_cifar10_resnet18_init1000_step1000_sub10000.png``); the tables and CSV files hold
every setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from al_bench.report import aggregate, figures, html, pairwise, tables
from al_bench.report.collect import SETTING_COLUMNS, Collection

INTERNAL_COLUMNS = ["setting", "setting_rank", "row_rank"]


@dataclass
class Report:
    """What ``write_report`` wrote and what it has to say."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    markdown: str = ""  # the summary tables, as in summary.md
    problems: list[str] = field(default_factory=list)  # warnings found while aggregating


def setting_stems(annotated: pd.DataFrame, out_dir: Path, name: str) -> dict[int, Path]:
    """File stem of a figure per setting rank: ``name`` alone when there is one setting."""
    firsts = annotated.groupby("setting_rank")[SETTING_COLUMNS].first()
    if len(firsts) == 1:
        return {int(firsts.index[0]): out_dir / name}
    return {int(rank): out_dir / f"{name}_{aggregate.setting_slug(*aggregate.setting_key(*values))}"
            for rank, values in zip(firsts.index, firsts.itertuples(index=False, name=None))}


def write_csv(table: pd.DataFrame, path: Path, files: list[Path]) -> None:
    """Write ``table`` without the internal ordering columns and remember the path."""
    table.drop(columns=[c for c in INTERNAL_COLUMNS if c in table.columns]).to_csv(path, index=False)
    files.append(path)


def write_text(text: str, path: Path, files: list[Path]) -> None:
    """Write ``text`` to ``path`` and remember the path."""
    path.write_text(text, encoding="utf-8")
    files.append(path)


def write_aubc(annotated: pd.DataFrame, path: Path, files: list[Path]) -> pd.DataFrame:
    """aubc.csv: one ``kind=run`` line per run, then one ``kind=mean`` line per row."""
    per_run = aggregate.aubc_per_run(annotated)
    per_row = aggregate.aubc_per_row(per_run)
    table = pd.concat([per_run.assign(kind="run"), per_row.assign(kind="mean")], ignore_index=True)
    counts = ["seed", "grid_first", "grid_last", "n_budgets", "n_seeds", "n_seeds_final"]
    table[counts] = table[counts].astype("Int64")
    write_csv(table[["kind", *[c for c in table.columns if c != "kind"]]], path, files)
    return per_row


def write_pairwise(annotated: pd.DataFrame, out_dir: Path, report: Report) -> None:
    """pairwise.csv (every setting) and one heatmap per setting with two rows or more."""
    stems = setting_stems(annotated, out_dir, "pairwise")
    parts = []
    for rank, setting in annotated.groupby("setting_rank", sort=True):
        rows = list(dict.fromkeys(setting.row))
        title = setting.setting.iloc[0]
        if len(rows) < 2:
            report.problems.append(f"{title}: only one strategy row; no pairwise comparison")
            continue
        pairs = pairwise.penalty_matrix(setting, rows)
        matrix = pairwise.as_matrix(pairs, rows)
        png = stems[int(rank)].with_suffix(".png")
        report.files.append(figures.draw_penalty_matrix(matrix, pairwise.column_mean(matrix), title, png))
        for position, (column, value) in enumerate(zip(SETTING_COLUMNS, setting[SETTING_COLUMNS].iloc[0])):
            pairs.insert(position, column, value)
        parts.append(pairs)
    columns = [*SETTING_COLUMNS, "row", "column", "wins", "n_budgets", "penalty"]
    write_csv(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns),
              out_dir / "pairwise.csv", report.files)


def write_curves(summary: pd.DataFrame, annotated: pd.DataFrame, out_dir: Path, report: Report,
                 reference: pd.DataFrame | None, relative_to: str | None) -> None:
    """curves.png and curves.pdf per setting (absolute, or relative to a baseline strategy)."""
    stems = setting_stems(annotated, out_dir, "curves")
    if reference is not None and relative_to is not None and relative_to not in reference.columns:
        report.problems.append(f"reference has no {relative_to!r} column; published curves not drawn")
    for rank, part in summary.groupby("setting_rank", sort=True):
        title = part.setting.iloc[0]
        if relative_to is not None and relative_to not in set(part.strategy):
            report.problems.append(f"{title}: no {relative_to!r} runs; no curves relative to it drawn")
            continue
        report.files += figures.draw_curves(part, title, stems[int(rank)], reference, relative_to)


def write_aubc_rows(annotated: pd.DataFrame) -> pd.DataFrame:
    """AUBC per table row (as in aubc.csv's ``kind=mean`` lines, with the ordering columns)."""
    return aggregate.aubc_per_row(aggregate.aubc_per_run(annotated))


def write_report(collection: Collection, out_dir: str | Path, reference: pd.DataFrame | None = None,
                 relative_to: str | None = None, html_from: list | None = None) -> Report:
    """Write all report files for ``collection`` into ``out_dir`` (created if needed).

    ``reference``: published curves (``collect.read_reference``) overlaid dashed on every curves
    figure. ``relative_to``: a strategy whose mean curve is subtracted from every curve.
    ``html_from``: the paths the collection was read from; when given, report.html is written too.
    Raises ValueError when no run can be aggregated (all unknown or without finished cycles).
    """
    out_dir = Path(out_dir)
    annotated = aggregate.annotate(collection.runs, collection.knob_columns)
    if annotated.empty:
        raise ValueError("no run with a readable run.json and a finished cycle")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, problems=aggregate.seed_problems(annotated))

    write_csv(collection.runs, out_dir / "runs.csv", report.files)
    summary = aggregate.summarize(annotated, collection.knob_columns)
    write_csv(summary, out_dir / "summary.csv", report.files)
    aubc = write_aubc(annotated, out_dir / "aubc.csv", report.files)
    report.markdown = tables.markdown_tables(summary, aubc)
    write_text(report.markdown, out_dir / "summary.md", report.files)
    write_text(tables.latex_tables(summary, aubc), out_dir / "summary.tex", report.files)
    write_pairwise(annotated, out_dir, report)
    write_curves(summary, annotated, out_dir, report, reference, relative_to)
    if html_from is not None:
        page = html.render(html_from, out_dir, summary, write_aubc_rows(annotated), list(report.files),
                           [*collection.problems, *report.problems])
        write_text(page, out_dir / "report.html", report.files)
    return report
