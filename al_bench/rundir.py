"""The run-directory contract: file names and how they are written and read, shared by the
writer (al_bench.loop) and the readers (al_bench.report, external tools).

    <run_dir>/run.json               dataset, model, strategy, seed, budget, every resolved knob, versions, device
    <run_dir>/metrics.jsonl          one JSON object per finished cycle (the commit point of a cycle);
                                     at least {"cycle": 0, "n_labeled": 1000, "test_acc": 0.5123}
    <run_dir>/labeled/cycle_XX.npy   pool indices (int64) used to train cycle XX
    <run_dir>/checkpoint.pt          model (+ the training plugin's state, + that cycle's metrics) after
                                     the last finished cycle; warm start only
    <run_dir>/.hydra/*.yaml          the composed config, written once the directory is this run's
    <run_dir>/DONE | FAILED          written last / with the traceback

Every file is written atomically (al_bench.io); a cycle commits by appending its line to
metrics.jsonl. While a process runs it holds a lock on the directory, so the same run started
twice at once is refused. Nothing here imports torch until a checkpoint is read or written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from al_bench import ConfigError
from al_bench.io import (
    append_jsonl,
    atomic_save_npy,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
)

log = logging.getLogger("al_bench")

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LABELED_DIR = "labeled"
CHECKPOINT_FILE = "checkpoint.pt"
DONE_FILE = "DONE"
FAILED_FILE = "FAILED"
LOG_FILE = "al-bench.log"
HYDRA_DIR = ".hydra"
RUN_MARKERS = (METRICS_FILE, RUN_FILE, FAILED_FILE)  # a directory holding any of these is a run
REQUIRED_METRICS = ("cycle", "n_labeled", "test_acc")

# Keys that may change between an interrupted run and its resumption without changing results.
VOLATILE_KEYS = ("trainer.progress", "dataset.root", "dataset.download", "dataset.cache_dir",
                 "trainer.eval_batch_size", "out_root")


def labeled_name(cycle: int) -> str:
    return f"{LABELED_DIR}/cycle_{cycle:02d}.npy"


class RunDir:
    """One run directory: its files, read and written by the contract above."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def done(self) -> bool:
        return (self.path / DONE_FILE).exists()

    @property
    def started(self) -> bool:
        return (self.path / RUN_FILE).exists()

    def corrupt(self, what: str) -> ConfigError:
        return ConfigError(f"resume state in {self.path} is corrupt: {what}; move the run directory away to start over")

    # --- reading -----------------------------------------------------------------------------------
    def finished_cycles(self, cycles: int) -> list[dict]:
        """The metrics of the finished cycles, checked: cycles 0, 1, ... and no more than `cycles`."""
        try:
            done = read_jsonl(self.path / METRICS_FILE)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self.corrupt(f"metrics.jsonl unreadable ({exc})") from None
        found = [m.get("cycle") if isinstance(m, dict) else None for m in done]
        if found != list(range(len(done))) or len(done) > cycles:
            raise self.corrupt(f"metrics.jsonl holds cycles {found}, expected 0..{cycles - 1} in order")
        return done

    def check_same_config(self, knobs: dict) -> None:
        """Refuse to continue a run directory written by a different configuration."""
        try:
            old = json.loads((self.path / RUN_FILE).read_text())
            old_knobs = old["knobs"]
            if not isinstance(old_knobs, dict):
                raise TypeError(f"knobs is a {type(old_knobs).__name__}")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise self.corrupt(f"run.json unreadable ({exc})") from None
        keys = sorted((set(old_knobs) | set(knobs)) - set(VOLATILE_KEYS))
        diff = [k for k in keys if old_knobs.get(k) != knobs.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {old_knobs.get(k)!r} -> {knobs.get(k)!r}" for k in diff[:4])
            raise ConfigError(f"{self.path} holds a run of a different config ({shown}); "
                              f"choose another output dir (hydra.run.dir=...) or move it away")

    def load_labeled(self, cycle: int, expected: int) -> np.ndarray:
        path = self.path / labeled_name(cycle)
        try:
            labeled = np.load(path)
        except (OSError, ValueError) as exc:
            raise self.corrupt(f"{path.name} unreadable ({exc})") from None
        if labeled.shape != (expected,):
            raise self.corrupt(f"{path.name} holds {labeled.shape} indices, expected {expected}")
        return labeled

    def load_checkpoint(self, cycle: int, model) -> tuple[dict | None, dict | None]:
        """Load the warm-start model after `cycle` (or after `cycle + 1` when that cycle finished but
        was killed before its metrics line was appended) into `model`; returns (plugin state,
        recovered metrics of cycle + 1 or None)."""
        import torch

        path = self.path / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise self.corrupt("checkpoint.pt is missing (a warm-start run needs it)") from None
        except Exception as exc:  # garbage, truncated: torch's message is pages long
            raise self.corrupt(f"checkpoint.pt is not a readable checkpoint ({type(exc).__name__})") from None
        try:
            recovered = None
            if state["cycle"] == cycle + 1 and isinstance(state.get("metrics"), dict) \
                    and state["metrics"].get("cycle") == cycle + 1:
                recovered = state["metrics"]
            elif state["cycle"] != cycle:
                raise ValueError(f"it is from cycle {state['cycle']}, expected {cycle}")
            model.load_state_dict(state["model"])
        except Exception as exc:  # not our format, from another model...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.corrupt(f"checkpoint.pt unusable ({reason})") from None
        return state.get("plugin"), recovered

    # --- writing -----------------------------------------------------------------------------------
    def write_run_json(self, record: dict) -> None:
        atomic_write_json(self.path / RUN_FILE, record)

    def rewrite_metrics(self, done: list[dict]) -> None:
        """metrics.jsonl holding exactly `done` (drops a torn last line)."""
        atomic_write_text(self.path / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in done))

    def append_metrics(self, metrics: dict) -> None:
        append_jsonl(self.path / METRICS_FILE, metrics)

    def save_labeled(self, cycle: int, labeled: np.ndarray) -> None:
        atomic_save_npy(self.path / labeled_name(cycle), labeled)

    def save_checkpoint(self, cycle: int, model, plugin_state: dict | None, metrics: dict) -> None:
        atomic_torch_save(self.path / CHECKPOINT_FILE, {"cycle": cycle, "model": model.state_dict(),
                                                       "metrics": metrics, "plugin": plugin_state})

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def mark_done(self, when: str) -> None:
        atomic_write_text(self.path / DONE_FILE, when + "\n")

    def mark_failed(self, text: str) -> None:
        try:
            atomic_write_text(self.path / FAILED_FILE, text)
        except OSError as write_error:  # e.g. the disk is full: the original error matters more
            log.error("could not write %s: %s", self.path / FAILED_FILE, write_error)

    def clear_failed(self) -> None:
        (self.path / FAILED_FILE).unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> int:
        """Delete the temporary files of atomic writes that a killed process left (`.NAME.*.tmp`);
        call only while holding the lock. Returns how many were removed."""
        removed = 0
        for folder in (self.path, self.path / LABELED_DIR, self.path / HYDRA_DIR):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self):
        """An exclusive lock on the directory itself (no file is created), held while the run
        writes: the same command started twice at once stops with a clear error instead of two
        processes appending to one metrics.jsonl. The kernel releases it when a process dies."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"{self.path} is being run by another al-bench process right now (the same command "
                                  f"twice?); let it finish or stop it first") from None
            except OSError as exc:  # some network file systems cannot lock directories
                log.warning("cannot lock %s (%s); make sure no other process runs it at the same time", self.path, exc)
            yield
        finally:
            os.close(fd)


def check_writable(path: Path) -> None:
    """Create `path` (the first write of a run) or say in one line why it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".al_bench_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {path} is not writable ({exc.strerror or exc})") from None


def remove_if_unstarted(out_dir: Path, stop_at: Path | None = None) -> None:
    """After bad input, remove the directory Hydra made if the run never started (no run.json, and
    nothing but Hydra's files in it), then its parents up to `stop_at` while they are empty."""
    out_dir = Path(out_dir).absolute()
    if not out_dir.is_dir() or (out_dir / RUN_FILE).exists():
        return
    if any(p.name not in (HYDRA_DIR, LOG_FILE) for p in out_dir.iterdir()):
        return
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not a directory another process is starting in
    except OSError:
        return
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        os.close(fd)
    if stop_at is None:
        return
    stop_at = Path(stop_at).absolute()
    for parent in out_dir.parents:
        if parent == stop_at or stop_at not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


@dataclass
class ResumeState:
    """What a continued run needs, read and checked before anything is written."""

    done: list[dict]
    labeled: np.ndarray | None  # for the next cycle to train; None when every cycle finished
    model: object | None = None  # warm start: the model after the last finished cycle
    plugin_state: dict | None = None
    recovered: dict | None = None  # metrics of a cycle that finished but whose line was not appended
