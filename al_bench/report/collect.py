"""Collect run directories into one tidy table: one row per (run, finished cycle).

A run is a directory holding ``metrics.jsonl`` (one JSON object per finished active-learning
cycle, appended), ``run.json`` (dataset, model, strategy, seed, budget and every resolved knob)
and, at the end, a ``DONE`` or ``FAILED`` marker. A sweep is any directory tree of runs.

Messy sweeps are the normal case, so reading never stops at the first problem; every problem
becomes one line in ``problems`` (``path: what happened; what was done about it``):

- no ``DONE`` and no ``FAILED``: the run counts up to its last finished cycle, ``status`` is
  ``incomplete``;
- ``FAILED`` (and no ``DONE``): the run is left out of the table and listed;
  ``DONE`` wins over a stale ``FAILED`` from an attempt that a resume later finished;
- an unreadable line of ``metrics.jsonl`` (bad JSON, missing ``cycle`` / ``n_labeled`` /
  ``test_acc``, accuracy outside [0, 1]) is skipped and reported with its line number;
  a cycle logged twice keeps its later line;
- ``run.json`` missing or unreadable: the run stays in the table with dataset, model and strategy
  ``"?"`` (fields found among the knobs are still used), and ``aggregate`` leaves it out of every
  mean, test and figure.

Everything here only reads.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from al_bench.report.knobs import canonical, differing_knobs
from al_bench.rundir import DONE_FILE, FAILED_FILE, METRICS_FILE, REQUIRED_METRICS, RUN_FILE, RUN_MARKERS

UNKNOWN = "?"

SETTING_COLUMNS = ["dataset", "model", "budget_initial", "budget_step", "budget_subset"]
"""Runs that differ in any of these are never averaged or compared together."""
ID_COLUMNS = ["run_dir", "dataset", "model", "strategy", "seed", *SETTING_COLUMNS[2:]]


@dataclass
class Run:
    """One run directory as read from disk."""

    run_dir: Path
    identity: dict  # ID_COLUMNS values except run_dir; UNKNOWN / None where run.json lacks them
    knobs: dict  # flat dotted keys of the resolved config; empty when run.json has none
    cycles: list[dict]  # one metrics object per finished cycle, by cycle
    status: str  # "done", "incomplete" or "failed"

    @property
    def known(self) -> bool:
        """Whether the run says what it is (dataset, model, strategy, budget) well enough to aggregate.

        ``budget_subset`` may be None: candidates are then drawn from the whole unlabeled pool.
        """
        return all(self.identity[c] not in (UNKNOWN, None) for c in ("strategy", *SETTING_COLUMNS[:4]))


@dataclass
class Collection:
    """Everything read from a set of paths."""

    runs: pd.DataFrame  # one row per (run, finished cycle); failed runs are not in it
    knob_columns: list[str]  # the knob columns of ``runs``: knobs that differ between runs
    problems: list[str] = field(default_factory=list)  # one line per problem, with its path
    failed: list[Path] = field(default_factory=list)  # run directories with a FAILED marker


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every run directory at or under ``paths``, sorted, each once.

    A directory is a run when it holds ``metrics.jsonl``, ``run.json`` or ``FAILED`` (a run that
    failed before its first cycle has no metrics but must still be listed). Symbolic links to
    directories are not followed. Raises FileNotFoundError for a path that does not exist.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            if any(name in filenames for name in RUN_MARKERS):
                found.add(Path(dirpath).resolve())
    return sorted(found)


def parse_metrics_line(line: str) -> tuple[dict | None, str | None]:
    """One line of ``metrics.jsonl`` as a dict of scalars, or None and why it is unusable."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error.msg})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    for key in REQUIRED_METRICS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"{key!r} missing or not a finite number"
    if record["cycle"] != int(record["cycle"]) or record["n_labeled"] != int(record["n_labeled"]):
        return None, "'cycle' and 'n_labeled' must be whole numbers"
    if not 0.0 <= record["test_acc"] <= 1.0:
        return None, f"test_acc={record['test_acc']} is not a fraction in [0, 1]"
    record["cycle"], record["n_labeled"] = int(record["cycle"]), int(record["n_labeled"])
    return {k: canonical(v) for k, v in record.items()}, None


def read_metrics(path: Path) -> tuple[list[dict], list[str]]:
    """The usable cycles of one ``metrics.jsonl``, by cycle, and the problems met reading it."""
    by_cycle: dict[int, dict] = {}
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                record, why = parse_metrics_line(line)
                if record is None:
                    problems.append(f"{path}:{number}: {why}; line skipped")
                    continue
                if record["cycle"] in by_cycle:
                    problems.append(f"{path}:{number}: cycle {record['cycle']} logged again; later line kept")
                by_cycle[record["cycle"]] = record
    except OSError as error:
        problems.append(f"{path}: unreadable ({error.strerror}); run has no cycles")
    return [by_cycle[c] for c in sorted(by_cycle)], problems


def read_run_json(run_dir: Path) -> tuple[dict, str | None]:
    """The contents of ``run.json``, or an empty dict and why it could not be read."""
    path = run_dir / RUN_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "run.json missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, f"run.json unreadable ({type(error).__name__})"
    if not isinstance(info, dict):
        return {}, "run.json is not a JSON object"
    return info, None


def run_identity(info: Mapping) -> dict:
    """What a run is, from ``run.json``: dataset, model, strategy, seed and budget.

    Each field falls back to the matching knob (``dataset.name``, ``budget.step``, ...), then to
    ``"?"`` (names) or None (numbers).
    """
    knobs = info.get("knobs") if isinstance(info.get("knobs"), dict) else {}
    budget = info.get("budget") if isinstance(info.get("budget"), dict) else {}

    def pick(value: object, knob: str, missing: object) -> object:
        value = knobs.get(knob) if value is None else value
        return missing if value is None or isinstance(value, (dict, list)) else value

    identity = {name: str(pick(info.get(name), f"{name}.name", UNKNOWN)) for name in ("dataset", "model", "strategy")}
    identity["seed"] = pick(info.get("seed"), "seed", None)
    for part in ("initial", "step", "subset"):
        identity[f"budget_{part}"] = pick(budget.get(part), f"budget.{part}", None)
    return identity


def read_failure(run_dir: Path) -> str:
    """The last non-empty line of a FAILED marker (usually the exception), shortened."""
    try:
        lines = (run_dir / FAILED_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "unreadable FAILED marker"
    last = next((line.strip() for line in reversed(lines) if line.strip()), "no traceback")
    return last[:200]


def read_run(run_dir: Path) -> tuple[Run, list[str]]:
    """One run directory, and the problems met reading it."""
    problems: list[str] = []
    done, failed = (run_dir / DONE_FILE).exists(), (run_dir / FAILED_FILE).exists()
    info, why = read_run_json(run_dir)
    identity = run_identity(info)
    knobs = info.get("knobs") if isinstance(info.get("knobs"), dict) else {}
    cycles: list[dict] = []
    if (run_dir / METRICS_FILE).exists():
        cycles, problems = read_metrics(run_dir / METRICS_FILE)
    status = "done" if done else "failed" if failed else "incomplete"
    run = Run(run_dir, identity, knobs, cycles, status)

    if status == "failed":
        problems.append(f"{run_dir}: FAILED ({read_failure(run_dir)}); left out")
        return run, problems
    if done and failed:
        problems.append(f"{run_dir}: both DONE and FAILED; DONE is written last, so the run counts as done")
    if why or not run.known:
        lacking = [c for c in ("dataset", "model", "strategy", *SETTING_COLUMNS[2:4]) if identity[c] in (UNKNOWN, None)]
        problems.append(
            f"{run_dir}: {why or 'run.json lacks ' + ', '.join(lacking)}; "
            "listed in runs.csv with '?' and left out of tables and figures"
        )
    if not cycles:
        problems.append(f"{run_dir}: no finished cycle; nothing to report")
    elif [c["cycle"] for c in cycles] != list(range(cycles[-1]["cycle"] + 1)):
        missing = sorted(set(range(cycles[-1]["cycle"] + 1)) - {c["cycle"] for c in cycles})
        problems.append(f"{run_dir}: cycle(s) {', '.join(map(str, missing))} missing from {METRICS_FILE}; "
                        f"the other cycles are reported")
    if cycles and status == "incomplete":
        last = cycles[-1]
        problems.append(
            f"{run_dir}: no DONE marker; counted up to its last finished cycle "
            f"(cycle {last['cycle']}, n_labeled={last['n_labeled']}) and flagged incomplete"
        )
    return run, problems


def metric_order(names: Iterable[str]) -> list[str]:
    """Metric columns in reading order: n_labeled, test_acc, test_loss, other metrics, times."""
    first = [n for n in ("n_labeled", "test_acc", "test_loss") if n in names]
    times = sorted((n for n in names if n.endswith("_s")), key=lambda n: (n != "train_time_s", n))
    others = sorted(set(names) - set(first) - set(times) - {"cycle"})
    return first + others + times


def runs_table(runs: list[Run], knob_columns: list[str]) -> pd.DataFrame:
    """The tidy table of non-failed runs: identity, differing knobs, one row per cycle, status."""
    rows = []
    for run in runs:
        if run.status == "failed":
            continue
        for record in run.cycles:
            row = {"run_dir": str(run.run_dir), **run.identity}
            row.update({key: canonical(run.knobs[key]) for key in knob_columns if key in run.knobs})
            rows.append({**record, **row, "status": run.status})  # identity wins over a clashing metric key
    metric_names = {"n_labeled", "test_acc"} | {name for record in rows for name in record}
    metric_names -= {*ID_COLUMNS, *knob_columns, "status"}
    columns = [*ID_COLUMNS, *knob_columns, "cycle", *metric_order(metric_names), "status"]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("seed", "budget_initial", "budget_step", "budget_subset", "cycle", "n_labeled"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def collect(paths: Iterable[str | os.PathLike]) -> Collection:
    """Read every run at or under ``paths`` (run directories and sweep trees, mixed).

    Raises FileNotFoundError for a path that does not exist.
    """
    runs: list[Run] = []
    problems: list[str] = []
    for run_dir in find_run_dirs(paths):
        run, run_problems = read_run(run_dir)
        runs.append(run)
        problems.extend(run_problems)
    cells = [
        (tuple(str(run.identity[c]) for c in ("strategy", *SETTING_COLUMNS)), run.knobs)
        for run in runs
        if run.known and run.status != "failed"
    ]
    knob_columns = differing_knobs(cells)
    failed = [run.run_dir for run in runs if run.status == "failed"]
    return Collection(runs_table(runs, knob_columns), knob_columns, problems, failed)


def load_runs(paths: Iterable[str | os.PathLike]) -> tuple[pd.DataFrame, list[str]]:
    """One row per (run, finished cycle) of every run at or under ``paths``, and the problems met.

    Columns: run_dir, dataset, model, strategy, seed, budget_initial, budget_step, budget_subset,
    one column per knob that differs between runs (dotted config key, see
    ``knobs.differing_knobs``; also listed in ``table.attrs["knob_columns"]``), cycle, n_labeled,
    test_acc (a fraction), every other key of ``metrics.jsonl``, then status (done / incomplete).
    Failed runs are left out and named in the problems.
    """
    collection = collect(paths)
    collection.runs.attrs["knob_columns"] = list(collection.knob_columns)
    return collection.runs, collection.problems


def read_reference(path: str | os.PathLike) -> pd.DataFrame:
    """Published learning curves: accuracy in percent, indexed by n_labeled, one column per strategy.

    The file is a CSV with ``#`` comment lines (the source) and a header ``n_labeled,<strategy>,...``,
    like ``results/reference/ll4al_cifar10_fig4.csv``. Raises ValueError when it is not one.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [(number, row) for number, row in enumerate(csv.reader(f), start=1)
                    if row and not row[0].lstrip().startswith("#") and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"reference {path}: unreadable ({getattr(error, 'strerror', None) or error})") from None
    if not rows or rows[0][1][0].strip() != "n_labeled" or len(rows[0][1]) < 2:
        raise ValueError(f"reference {path}: needs a header n_labeled,<strategy>,... and one column per strategy")
    header = [cell.strip() for cell in rows[0][1]]
    values = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"reference {path}:{number}: {len(row)} fields, the header has {len(header)}")
        try:
            n_labeled, *accs = (float(cell) if cell.strip() else math.nan for cell in row)
        except ValueError:
            raise ValueError(f"reference {path}:{number}: not a number in {','.join(row)!r}") from None
        if not (n_labeled > 0 and n_labeled == int(n_labeled)):
            raise ValueError(f"reference {path}:{number}: n_labeled={row[0]} is not a positive whole number")
        if any(not 0 <= a <= 100 for a in accs if not math.isnan(a)):
            raise ValueError(f"reference {path}:{number}: accuracies are percentages in [0, 100]")
        values.append([int(n_labeled), *accs])
    table = pd.DataFrame(values, columns=header).set_index("n_labeled")
    if table.index.duplicated().any():
        raise ValueError(f"reference {path}: n_labeled {table.index[table.index.duplicated()][0]} appears twice")
    if table.empty or table.isna().all().any():
        raise ValueError(f"reference {path}: a strategy column holds no numbers")
    return table.sort_index()
