"""Which resolved config values ("knobs") make two runs different experiments.

A run records every resolved config value in ``run.json["knobs"]`` as flat dotted keys. Two runs
belong to the same table row only if they agree on every knob that matters; this module decides
which knobs matter.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

# Paths, devices, progress bars and the trial's seed never change what is being measured. Only the
# top-level `seed` is a trial: `dataset.seed` (the synthetic data's own seed) is a setting.
IGNORED_SUFFIXES = ("root", "out_dir", "cache_dir", "device", "progress")
IGNORED_PREFIXES = ("hydra.",)
# The budget schedule is part of the setting (its own columns); a shorter run of the same
# schedule (fewer cycles) is compared at the budgets it reached, like an incomplete run.
SETTING_KNOBS = ("budget.initial", "budget.step", "budget.subset", "budget.cycles")
# Knobs under these groups describe the dataset / model / strategy / budget themselves (their
# name, class, number of classes...). They split groups only when they differ between runs of the
# same dataset, model, strategy and budget; a value found only in some strategies never splits.
CELL_PREFIXES = ("dataset.", "model.", "strategy.", "budget.")


def is_ignored_knob(key: str) -> bool:
    """Whether a knob never splits groups: the trial's seed, paths, device, progress, Hydra's own keys."""
    return (
        key == "seed"
        or key.endswith(IGNORED_SUFFIXES)
        or key.startswith(IGNORED_PREFIXES)
        or key in SETTING_KNOBS
    )


def canonical(value: object) -> Hashable:
    """A hashable stand-in for a knob value: lists and mappings become sorted JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def differing_knobs(runs: Iterable[tuple[Hashable, Mapping[str, object]]]) -> list[str]:
    """The knobs that split runs into different groups, sorted.

    ``runs`` holds one ``(cell, knobs)`` pair per run, where ``cell`` identifies the run's
    dataset, model, strategy and budget. A knob differs when two runs that both have it disagree:
    for knobs under ``dataset.``, ``model.``, ``strategy.`` and ``budget.`` only runs of the same
    cell are compared; for all other knobs (``trainer.*`` and the like) all runs are. A knob
    missing from a run never counts as a difference, and ignored knobs (``is_ignored_knob``)
    never differ.
    """
    values: dict[str, dict[Hashable, set]] = defaultdict(lambda: defaultdict(set))
    for cell, knobs in runs:
        for key, value in knobs.items():
            if is_ignored_knob(key):
                continue
            scope = cell if key.startswith(CELL_PREFIXES) else None
            values[key][scope].add(canonical(value))
    return sorted(key for key, scopes in values.items() if any(len(v) > 1 for v in scopes.values()))


def format_knob(value: object) -> str:
    """A knob value as written in row labels: YAML-like booleans, floats as Python writes them."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def short_knob_name(key: str) -> str:
    """A knob's name in a row label; the row already names its strategy, so ``strategy.`` goes."""
    return key.removeprefix("strategy.")
