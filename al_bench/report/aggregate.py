"""Table rows, per-budget statistics and the area under the budget curve.

A *setting* is a (dataset, model, budget schedule) triple: runs of different settings are never
averaged or compared. Inside a setting, a *row* is a strategy plus the knobs that tell its runs
apart (``lloss (margin=0.5)``); the runs of a row are its seeds. Rows come in a fixed order:
``STRATEGY_ORDER`` first, other strategies alphabetically, variants of one strategy by knob value.

Spread is always the sample standard deviation (ddof=1) over runs; it is undefined (NaN) for a
single run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from al_bench.report.collect import SETTING_COLUMNS, UNKNOWN
from al_bench.report.knobs import CELL_PREFIXES, format_knob, short_knob_name

STRATEGY_ORDER = ("random", "entropy", "least_confidence", "margin", "coreset", "lloss", "lloss_mse", "gt_loss")
ROW_COLUMNS = [*SETTING_COLUMNS, "strategy", "row"]
RUN_KEYS = ["setting", "setting_rank", "row_rank", "seed", "run_dir", "status"]


def strategy_rank(name: str) -> tuple[int, str]:
    """Sort key of a strategy: its place in STRATEGY_ORDER, else after them by name."""
    if name in STRATEGY_ORDER:
        return STRATEGY_ORDER.index(name), ""
    return len(STRATEGY_ORDER), name


def value_rank(value: object) -> tuple[int, float, str]:
    """Sort key of a knob value: missing first, then numbers by size, then text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0, 0.0, ""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        return 1, float(value), ""
    return 2, 0.0, str(value)


def setting_key(dataset: str, model: str, initial: int, step: int, subset: int | None) -> tuple:
    """A setting as plain values; ``subset`` None means candidates from the whole unlabeled pool."""
    return str(dataset), str(model), int(initial), int(step), None if pd.isna(subset) else int(subset)


def setting_title(dataset: str, model: str, initial: int, step: int, subset: int | None) -> str:
    """A setting as a heading: ``cifar10 / resnet18 / 1000 initial + 1000 per cycle, subset 10000``."""
    candidates = "whole pool" if subset is None else f"subset {subset}"
    return f"{dataset} / {model} / {initial} initial + {step} per cycle, {candidates}"


def setting_slug(dataset: str, model: str, initial: int, step: int, subset: int | None) -> str:
    """A setting as a file-name part: ``cifar10_resnet18_init1000_step1000_sub10000``."""
    candidates = "all" if subset is None else subset
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{dataset}_{model}_init{initial}_step{step}_sub{candidates}")


def known_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` whose run says what it is: no ``"?"``, initial and step budgets known.

    A missing ``budget_subset`` is kept: it means candidates are drawn from the whole pool.
    """
    named = (runs[["dataset", "model", "strategy"]] != UNKNOWN).all(axis=1)
    return runs[named & runs[["budget_initial", "budget_step"]].notna().all(axis=1)]


def varies(frame: pd.DataFrame, column: str) -> bool:
    """Whether a column holds two or more different non-missing values."""
    return frame[column].dropna().nunique() > 1


def label_rows(setting: pd.DataFrame, knob_columns: Sequence[str]) -> pd.DataFrame:
    """Row label and row sort key for each line of one setting's runs.

    A knob enters a row's label when its value differs inside the setting (for ``dataset.``,
    ``model.``, ``strategy.`` and ``budget.`` knobs: inside the strategy) and the row has it.
    """
    labels = pd.Series("", index=setting.index, dtype=object)
    keys = pd.Series(None, index=setting.index, dtype=object)
    for strategy, runs in setting.groupby("strategy"):
        shown = [k for k in knob_columns if varies(runs if k.startswith(CELL_PREFIXES) else setting, k)]
        # one tuple per run, () when no knob is shown (pandas 2's itertuples yields no rows without columns)
        rows = runs[shown].itertuples(index=False, name=None) if shown else [()] * len(runs)
        for index, values in zip(runs.index, rows):
            parts = [f"{short_knob_name(k)}={format_knob(v)}" for k, v in zip(shown, values) if not pd.isna(v)]
            labels[index] = f"{strategy} ({', '.join(parts)})" if parts else str(strategy)
            keys[index] = (strategy_rank(str(strategy)), tuple(value_rank(v) for v in values))
    return pd.DataFrame({"row": labels, "row_key": keys})


def annotate(runs: pd.DataFrame, knob_columns: Sequence[str]) -> pd.DataFrame:
    """The known runs of ``runs`` with columns setting, setting_rank, row and row_rank added.

    Ranks give the fixed order of settings (dataset, model, then budgets ascending) and of rows
    inside a setting; sorting by them gives report order.
    """
    known = known_runs(runs).copy()
    known["setting"] = pd.Series(dtype=object)
    known["row"] = pd.Series(dtype=object)
    if known.empty:
        return known.assign(setting_rank=pd.Series(dtype=int), row_rank=pd.Series(dtype=int))
    setting_keys = [setting_key(*values) for values in known[SETTING_COLUMNS].itertuples(index=False, name=None)]
    ordered = sorted(set(setting_keys), key=lambda k: (*k[:4], k[4] is None, k[4] or 0))
    known["setting"] = [setting_title(*key) for key in setting_keys]
    known["setting_rank"] = [ordered.index(key) for key in setting_keys]
    known["row_rank"] = 0
    for _, setting in known.groupby("setting_rank"):
        rows = label_rows(setting, knob_columns)
        known.loc[setting.index, "row"] = rows["row"]
        first_key = rows.groupby("row")["row_key"].first()
        order = sorted(first_key.index, key=lambda label: (first_key[label], label))
        known.loc[setting.index, "row_rank"] = rows["row"].map({label: i for i, label in enumerate(order)})
    return known.sort_values(["setting_rank", "row_rank", "run_dir", "cycle"], kind="stable")


def summarize(annotated: pd.DataFrame, knob_columns: Sequence[str]) -> pd.DataFrame:
    """Test accuracy per row and budget: mean, sample std (ddof=1) and number of seeds, in percent.

    One line per (setting, row, n_labeled), in report order. ``n_seeds`` counts the runs that
    reached that budget. Knob columns hold the row's value (empty where the row lacks the knob).
    """
    keys = ["setting_rank", "row_rank", "n_labeled"]
    grouped = annotated.groupby(keys, sort=True)
    described = grouped[[*ROW_COLUMNS, "setting", *knob_columns]].first()
    acc_pct = grouped["test_acc"]
    described["test_acc_mean_pct"] = acc_pct.mean() * 100
    described["test_acc_std_pct"] = acc_pct.std(ddof=1) * 100
    described["n_seeds"] = acc_pct.count()
    described = described.reset_index()
    return described[["setting_rank", "row_rank", *ROW_COLUMNS, "setting", *knob_columns, "n_labeled",
                      "test_acc_mean_pct", "test_acc_std_pct", "n_seeds"]]


def seed_problems(annotated: pd.DataFrame) -> list[str]:
    """Warnings about seeds: runs without one, and one seed run twice in the same row."""
    runs = annotated.drop_duplicates("run_dir")
    unseeded = runs.run_dir[runs.seed.isna()]
    problems = [f"{run_dir}: no seed recorded; counted in means but not paired in tests" for run_dir in unseeded]
    for (setting, row, seed), dupes in runs.dropna(subset=["seed"]).groupby(["setting", "row", "seed"]):
        if len(dupes) > 1:
            problems.append(
                f"seed {seed} of {row} in {setting} was run {len(dupes)} times ({', '.join(dupes.run_dir)}); "
                "each run counts in means, their mean is paired in tests"
            )
    return problems


def budget_grid(setting: pd.DataFrame) -> list[int]:
    """The budgets (n_labeled) that every row of one setting has at least one run for."""
    per_row = setting.groupby("row")["n_labeled"].agg(lambda n: set(n.astype(int)))
    return sorted(set.intersection(*per_row)) if len(per_row) else []


def area_under_budget_curve(n_labeled: Sequence[float], acc: Sequence[float]) -> float:
    """Trapezoid area under accuracy against n_labeled, divided by the n_labeled range.

    For accuracies in [0, 1] the result lies in [0, 1] (the curve's mean height). NaN for fewer
    than two budget points.
    """
    x, y = np.asarray(n_labeled, dtype=float), np.asarray(acc, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) < 2 or x[-1] == x[0]:
        return math.nan
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def aubc_per_run(annotated: pd.DataFrame) -> pd.DataFrame:
    """Area under the budget curve and final accuracy of every run, as fractions.

    Both use the setting's common grid (``budget_grid``), so rows of one table are compared over
    the same budgets: ``aubc`` is NaN for a run that misses a grid budget, ``final_test_acc`` is the
    accuracy at the grid's largest budget (NaN when the run did not reach it).
    """
    lines = []
    for _, setting in annotated.groupby("setting_rank"):
        grid = budget_grid(setting)
        for _run_dir, run in setting.groupby("run_dir", sort=False):
            acc = run.set_index(run.n_labeled.astype(int))["test_acc"]
            on_grid = acc.reindex(grid)
            lines.append({
                **run.iloc[0][[*ROW_COLUMNS, *RUN_KEYS]].to_dict(),
                "aubc": area_under_budget_curve(grid, on_grid) if on_grid.notna().all() else math.nan,
                "final_test_acc": on_grid.iloc[-1] if grid else math.nan,
                "grid_first": grid[0] if grid else None,
                "grid_last": grid[-1] if grid else None,
                "n_budgets": len(grid),
            })
    return pd.DataFrame(lines)


def aubc_per_row(per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1) of AUBC and final accuracy per row, as fractions."""
    grouped = per_run.groupby(["setting_rank", "row_rank"], sort=True)
    table = grouped[[*ROW_COLUMNS, "setting", "grid_first", "grid_last", "n_budgets"]].first()
    for metric in ("aubc", "final_test_acc"):
        table[f"{metric}_mean"] = grouped[metric].mean()
        table[f"{metric}_std"] = grouped[metric].std(ddof=1)
    table["n_seeds"] = grouped["aubc"].count()
    table["n_seeds_final"] = grouped["final_test_acc"].count()
    return table.reset_index()
