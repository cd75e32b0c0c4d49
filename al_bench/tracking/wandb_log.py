"""`logger=wandb`: a Weights & Biases run per al-bench run (`pip install "al-bench[wandb]"`).

Offline by default (`logger.mode=offline`): nothing leaves the machine; the run is written under
`<run_dir>/wandb/offline-run-*` and can be uploaded later with `wandb sync`. Online only when asked
(`logger.mode=online`, which needs `wandb login`). The W&B project is `logger.project` or the
config's `name`; the W&B run's name is the run directory. Metrics: `epoch/train_loss`, `epoch/lr`,
... against `epoch/step` (cycle x epochs + epoch) and `cycle/test_acc`, `cycle/n_labeled`, ...
against `cycle/cycle`, declared with `define_metric` so both curves have their own x axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from al_bench.tracking import RunLogger, epoch_step, require, scalars


class WandbLogger(RunLogger):
    """The config and metrics into one W&B run."""

    def __init__(self, mode: str, project: str | None, entity: str | None):
        self.mode = mode
        self.project = project
        self.entity = entity
        self.run = None
        self._epochs = 1

    def open(self, run_dir: Path, experiment: str, epochs_per_cycle: int) -> None:
        import wandb

        self._epochs = epochs_per_cycle
        # mode is passed explicitly: the user's choice (offline unless asked), never the environment's
        self.run = wandb.init(mode=self.mode, project=self.project or experiment, entity=self.entity,
                              dir=str(run_dir), name=str(run_dir), reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))
        self.run.define_metric("epoch/step")
        self.run.define_metric("epoch/*", step_metric="epoch/step")
        self.run.define_metric("cycle/cycle")
        self.run.define_metric("cycle/*", step_metric="cycle/cycle")

    def log_config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_epoch(self, cycle: int, epoch: int, values: dict) -> None:
        self.run.log({**scalars(values, "epoch/"), "epoch/step": epoch_step(cycle, epoch, self._epochs)})

    def log_cycle(self, cycle: int, values: dict) -> None:
        self.run.log({**scalars(values, "cycle/"), "cycle/cycle": cycle})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def make(mode: Literal["offline", "online", "disabled"] = "offline", project: str | None = None,
         entity: str | None = None) -> WandbLogger:
    """`logger=wandb`: a W&B run, offline unless `mode=online` is asked for."""
    require("wandb", "wandb", "wandb")
    return WandbLogger(mode, project, entity)
