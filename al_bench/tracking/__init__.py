"""Experiment trackers: one small interface through which a run reports what it measures.

The loop opens a `RunLogger` on the run directory, logs the resolved config once, then per epoch
the training loss and learning rate (and a training plugin's epoch means), and per cycle the
cycle's metrics (test accuracy and loss, n_labeled, times, a strategy's extra metrics such as
lpl_rank_acc). The trainer only calls back (`fit(on_epoch_end=...)`) and never imports a tracker.

Options (`logger=<word>`, `conf/logger/<word>.yaml`, `al_bench/tracking/<word>_log.py`; the suffix
keeps a module from shadowing the library it wraps, e.g. the standard `csv`): `none` (this
module's `RunLogger`, which logs nothing), `csv`, `tensorboard`, `mlflow`, `wandb`. Each
module imports its library inside its functions; its factory checks that the library is installed
and raises ConfigError naming the pip extra otherwise, so a missing extra stops the run while the
config is loaded, before the run directory is written. A tracker observes a run and never changes
it: `logger.*` is not a knob (not in run.json's knobs, free to change when resuming).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from al_bench import ConfigError


class RunLogger:
    """The tracker interface, and the `none` option: every method does nothing."""

    def open(self, run_dir: Path, experiment: str, epochs_per_cycle: int) -> None:
        """Start logging the run in `run_dir` (its path is the run's name) of experiment `experiment`
        (the config's `name`); a resumed run opens again."""

    def log_config(self, config: dict) -> None:
        """The resolved config (nested dict, as run.json's `config`)."""

    def log_epoch(self, cycle: int, epoch: int, values: dict) -> None:
        """One finished epoch of cycle `cycle`: train_loss, lr and the plugin's epoch means."""

    def log_cycle(self, cycle: int, values: dict) -> None:
        """One finished cycle's metrics (the metrics.jsonl line)."""

    def close(self) -> None:
        """Flush and release; called once per open, also when the run fails."""


def none() -> RunLogger:
    """`logger=none`: log nothing."""
    return RunLogger()


def require(module: str, extra: str, option: str) -> None:
    """ConfigError unless `module` can be imported: names the pip extra that installs it."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"logger={option} needs the {module} package, which is not installed; "
                          f"install it with: pip install \"al-bench[{extra}]\" (or choose another logger=...)")


def scalars(values: dict, prefix: str = "") -> dict[str, int | float]:
    """The finite numbers of `values`, keys prefixed (lists such as eval_history and strings left
    out: trackers plot scalars)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{prefix}{key}"] = value
    return out


def epoch_step(cycle: int, epoch: int, epochs_per_cycle: int) -> int:
    """A step that grows over the whole run (trackers want one monotone axis per curve)."""
    return cycle * epochs_per_cycle + epoch


def flat_config(config: dict, prefix: str = "") -> dict[str, str]:
    """{"trainer.epochs": "200", ...}: the nested config as flat text values (tracker parameters)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out
