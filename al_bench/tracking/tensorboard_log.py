"""`logger=tensorboard`: TensorBoard event files in the run directory (`pip install "al-bench[tensorboard]"`).

Written with torch's `SummaryWriter` into `<run_dir>/<folder>/`, so `tensorboard --logdir runs/NAME`
lists every run of a sweep under its run-directory path. Tags: `epoch/train_loss`, `epoch/lr`,
`epoch/<plugin scalar>` at step cycle x epochs + epoch; `cycle/test_acc`, `cycle/n_labeled`,
`cycle/<metric>` at step cycle; the config as text (`config`, JSON) and the run directory (`run_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from annotated_types import Ge

from al_bench.tracking import RunLogger, epoch_step, require, scalars


class TensorBoardLogger(RunLogger):
    """Scalars and the config into TensorBoard event files."""

    def __init__(self, folder: str, flush_secs: int):
        self.folder = folder
        self.flush_secs = flush_secs
        self.writer = None
        self._epochs = 1

    def open(self, run_dir: Path, experiment: str, epochs_per_cycle: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self._epochs = epochs_per_cycle
        self.writer = SummaryWriter(log_dir=str(self.run_dir / self.folder), flush_secs=self.flush_secs)
        self.writer.add_text("run_dir", str(self.run_dir))

    def log_config(self, config: dict) -> None:
        # Markdown: indented by four spaces, TensorBoard's text plugin shows the JSON as code
        text = "\n".join("    " + line for line in json.dumps(config, indent=1, sort_keys=True).splitlines())
        self.writer.add_text("config", text)

    def log_epoch(self, cycle: int, epoch: int, values: dict) -> None:
        step = epoch_step(cycle, epoch, self._epochs)
        for key, value in scalars(values, "epoch/").items():
            self.writer.add_scalar(key, value, step)

    def log_cycle(self, cycle: int, values: dict) -> None:
        for key, value in scalars(values, "cycle/").items():
            if key != "cycle/cycle":
                self.writer.add_scalar(key, value, cycle)
        self.writer.flush()  # a cycle is minutes of work: make it visible now, not after flush_secs

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def make(folder: str = "tensorboard", flush_secs: Annotated[int, Ge(1)] = 30) -> TensorBoardLogger:
    """`logger=tensorboard`: event files in `<run_dir>/<folder>/`."""
    require("tensorboard", "tensorboard", "tensorboard")
    return TensorBoardLogger(folder, flush_secs)
