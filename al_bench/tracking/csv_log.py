"""`logger=csv`: plain CSV files in the run directory, no extra package.

`<run_dir>/<folder>/epochs.csv` (cycle, epoch, step, name, value), `cycles.csv` (cycle, name,
value) and `config.json`. Long format: a plugin's scalars and a strategy's metrics differ between
runs, and a long table takes any of them without rewriting its header. Files are appended to and
flushed after every line, so a resumed run continues them and an interrupted one keeps its lines.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from al_bench.tracking import RunLogger, epoch_step, scalars

EPOCH_COLUMNS = ["cycle", "epoch", "step", "name", "value"]
CYCLE_COLUMNS = ["cycle", "name", "value"]


class CsvLogger(RunLogger):
    """Appends scalars to CSV files in a folder of the run directory."""

    def __init__(self, folder: str):
        self.folder = folder
        self._files: dict = {}
        self._epochs = 1

    def open(self, run_dir: Path, experiment: str, epochs_per_cycle: int) -> None:
        self.path = Path(run_dir) / self.folder
        self.path.mkdir(parents=True, exist_ok=True)
        self._epochs = epochs_per_cycle
        for name, columns in (("epochs", EPOCH_COLUMNS), ("cycles", CYCLE_COLUMNS)):
            file = self.path / f"{name}.csv"
            new = not file.exists() or file.stat().st_size == 0
            handle = file.open("a", newline="", encoding="utf-8")
            writer = csv.writer(handle)
            if new:
                writer.writerow(columns)
            self._files[name] = (handle, writer)

    def log_config(self, config: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def _write(self, name: str, rows) -> None:
        handle, writer = self._files[name]
        writer.writerows(rows)
        handle.flush()

    def log_epoch(self, cycle: int, epoch: int, values: dict) -> None:
        step = epoch_step(cycle, epoch, self._epochs)
        self._write("epochs", [[cycle, epoch, step, k, repr(v)] for k, v in scalars(values).items()])

    def log_cycle(self, cycle: int, values: dict) -> None:
        self._write("cycles", [[cycle, k, repr(v)] for k, v in scalars(values).items() if k != "cycle"])

    def close(self) -> None:
        for handle, _ in self._files.values():
            handle.close()
        self._files = {}


def make(folder: str = "tracking") -> CsvLogger:
    """`logger=csv`: CSV files in `<run_dir>/<folder>/`."""
    return CsvLogger(folder)
