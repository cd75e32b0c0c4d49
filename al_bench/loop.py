"""The active-learning cycle loop and the run-directory contract.

    <run_dir>/run.json          dataset, model, strategy, seed, budget, every resolved knob, versions, device
    <run_dir>/metrics.jsonl     one JSON object per finished cycle (the commit point of a cycle)
    <run_dir>/labeled/cycle_XX.npy   pool indices (int64) used to train cycle XX
    <run_dir>/checkpoint.pt     model (+ auxiliary module, + that cycle's metrics) after the last
                                finished cycle, warm start only
    <run_dir>/.hydra/*.yaml     the composed config, written by the CLI once the directory is this run's
    <run_dir>/DONE | FAILED     written last / with the traceback

Every file is written atomically (al_bench.io) and a cycle commits by appending its line to
metrics.jsonl. Every random draw of cycle c is seeded from (seed, c, purpose), so a rerun of the
same command continues after the last line of metrics.jsonl and reproduces an uninterrupted run
exactly (bit for bit on CPU; tests/test_resume.py). While a process runs, it holds a lock on the
run directory, so the same run started twice at once is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import logging
import os
import platform
import shutil
import socket
import time
import traceback
import zlib
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

import al_bench
from al_bench import ConfigError
from al_bench.io import (append_jsonl, atomic_save_npy, atomic_torch_save, atomic_write_json,
                         atomic_write_text, read_jsonl)

# torch and the training machinery (train, strategies, data) are imported inside the functions that
# use them: deciding that a run is finished, foreign or damaged must not cost the seconds that
# importing torch takes (a rerun sweep skips its finished runs at once).
if TYPE_CHECKING:
    import torch

    from al_bench.data.pool import Pool
    from al_bench.strategies.base import Strategy
    from al_bench.train import TrainSettings

log = logging.getLogger("al_bench")

# Keys that may change between an interrupted run and its resumption without changing results.
VOLATILE_KEYS = ("trainer.progress", "dataset.root", "dataset.download", "dataset.cache_dir",
                 "trainer.eval_batch_size", "out_root")


@dataclass(frozen=True)
class Budget:
    """The AL schedule: `initial` random labels, then `step` more per cycle, `cycles` training
    rounds in all (n_labeled = initial, initial + step, ..., initial + (cycles - 1) step), each
    selection ranking a random candidate subset of `subset` unlabeled images (None = all)."""

    initial: int
    step: int
    cycles: int
    subset: int | None = None

    def n_labeled(self, cycle: int) -> int:
        return self.initial + cycle * self.step

    def check(self, n_pool: int) -> None:
        for key in ("initial", "step", "cycles"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"budget.{key} must be >= 1, got {getattr(self, key)}")
        if self.subset is not None and self.subset < self.step:
            raise ConfigError(f"budget.subset={self.subset} is smaller than budget.step={self.step}: "
                              f"a cycle could not select enough images")
        final = self.n_labeled(self.cycles - 1)
        if final > n_pool:
            raise ConfigError(f"the budget needs {final} labeled images (initial {self.initial} + "
                              f"{self.cycles - 1} x step {self.step}) but the pool has only {n_pool}")


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for one purpose of one cycle, independent of every other draw."""
    words = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def initial_labeled(pool_name: str, n_pool: int, n_initial: int, seed: int) -> np.ndarray:
    """The initial labeled set: a function of (dataset, seed, size) only, so every strategy of one
    seed starts from the same images."""
    rng = np.random.default_rng(derive_seed(seed, "initial", pool_name))
    return np.sort(rng.choice(n_pool, size=n_initial, replace=False)).astype(np.int64)


def flatten(node, prefix: str = "") -> dict:
    """{"trainer.epochs": 200, ...} for a nested dict."""
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _build(node: DictConfig, **kwargs):
    """Instantiate a config node whose `name` key is metadata (the CLI word), not an argument.
    Bad input found while building (ConfigError, an unknown argument) stays one clear ConfigError
    instead of Hydra's InstantiationException around it."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name", None)
    accepted = inspect.signature(get_method(params["_target_"])).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        # A preset may set knobs of another option of the group (experiment=ll4al_reference_impl
        # strategy=random gets lloss's detach_rule); those do not apply. Typos on the command line
        # never get here: Hydra refuses keys that are not in the config.
        ignored = sorted(k for k in params if not k.startswith("_") and k not in accepted)
        if ignored:
            log.info("%s: ignoring options that do not apply to it: %s", node.get("name"), ", ".join(ignored))
        params = {k: v for k, v in params.items() if k not in ignored}
    try:
        return instantiate(params, **kwargs, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError) and "argument" in str(cause):
            raise ConfigError(f"{params.get('_target_')}: {cause}") from None
        raise


def budget_from(node: dict) -> Budget:
    names = {f.name for f in fields(Budget)}
    unknown = sorted(set(node) - names - {"name"})
    if unknown:
        raise ConfigError(f"unknown budget option(s): {', '.join(unknown)}")
    return Budget(**{k: v for k, v in node.items() if k in names})


def trainer_settings(node: DictConfig) -> TrainSettings:
    from al_bench.train import TrainSettings

    names = {f.name for f in fields(TrainSettings)}
    params = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(params) - names - {"name", "device", "warm_start", "threads"})
    if unknown:
        raise ConfigError(f"unknown trainer option(s): {', '.join(unknown)}")
    return TrainSettings(**{k: v for k, v in params.items() if k in names})


def _versions() -> dict:
    import hydra
    import torch
    from importlib.metadata import PackageNotFoundError, version

    try:
        torchvision = version("torchvision")  # without importing it (a second per process otherwise)
    except PackageNotFoundError:
        torchvision = None
    return {"al_bench": al_bench.__version__, "torch": torch.__version__, "torchvision": torchvision,
            "hydra": hydra.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _lr_summary(settings: TrainSettings) -> str:
    """E.g. "0.1 x160, 0.01 x40": the per-epoch lr actually used, run-length encoded."""
    from al_bench.train import lr_at_epoch

    runs: list[list] = []
    for epoch in range(settings.epochs):
        lr = lr_at_epoch(epoch, settings.lr, settings.milestones, settings.gamma, settings.sched_step)
        if runs and np.isclose(runs[-1][0], lr):
            runs[-1][1] += 1
        else:
            runs.append([lr, 1])
    return ", ".join(f"{lr:g} x{n}" for lr, n in runs)


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def labeled_file(self, cycle: int) -> Path:
        return self.path / "labeled" / f"cycle_{cycle:02d}.npy"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def finished_cycles(self) -> list[dict]:
        try:
            return read_jsonl(self.metrics_file)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"resume state in {self.path} is corrupt: metrics.jsonl unreadable ({exc}); "
                              f"move the run directory away to start over") from None


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".al_bench_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {path} is not writable ({exc.strerror or exc})") from None


def _check_resume(run: RunDir, knobs: dict) -> None:
    """Refuse to continue a run directory written by a different configuration."""
    try:
        old = json.loads((run.path / "run.json").read_text())
        old_knobs = old["knobs"]
        if not isinstance(old_knobs, dict):
            raise TypeError(f"knobs is a {type(old_knobs).__name__}")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"resume state in {run.path} is corrupt: run.json unreadable ({exc}); "
                          f"move the run directory away to start over") from None
    keys = sorted((set(old_knobs) | set(knobs)) - set(VOLATILE_KEYS))
    diff = [k for k in keys if old_knobs.get(k) != knobs.get(k)]
    if diff:
        shown = "; ".join(f"{k}: {old_knobs.get(k)!r} -> {knobs.get(k)!r}" for k in diff[:4])
        raise ConfigError(f"{run.path} holds a run of a different config ({shown}); "
                          f"choose another output dir (hydra.run.dir=...) or move it away")


def _finished_cycles(run: RunDir, budget: Budget) -> list[dict]:
    """The metrics of the finished cycles, checked: cycles 0, 1, ... and no more than the budget."""
    done = run.finished_cycles()
    cycles = [m.get("cycle") if isinstance(m, dict) else None for m in done]
    if cycles != list(range(len(done))) or len(done) > budget.cycles:
        raise ConfigError(f"resume state in {run.path} is corrupt: metrics.jsonl holds cycles {cycles}, "
                          f"expected 0..{budget.cycles - 1} in order; move the run directory away to start over")
    return done


def run_al(cfg: DictConfig, out_dir: str | Path, config_files: dict[str, str] | None = None) -> list[dict]:
    """Run (or continue) one active-learning experiment into `out_dir`; returns the metrics of
    every cycle.

    A finished run (DONE) of the same config returns at once, before any data is loaded. Bad input
    (config, data, an unwritable or foreign or corrupt run directory) raises ConfigError before
    anything in `out_dir` is written. Once the directory is known to hold this config's run,
    `config_files` (relative path -> text, e.g. Hydra's .hydra/config.yaml) are written into it,
    and any exception from then on leaves FAILED with its traceback (KeyboardInterrupt and
    SystemExit, e.g. a pre-empted cluster job, leave the run resumable and unmarked).
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    seed = int(cfg.seed)
    budget = budget_from(container["budget"])
    run = RunDir(Path(out_dir))
    knobs = flatten(container)

    if (run.path / "DONE").exists():
        return _finished_run(run, knobs, budget)
    if (run.path / "run.json").exists():
        _check_resume(run, knobs)  # before loading data for, or writing into, another config's directory
        _finished_cycles(run, budget)

    from al_bench.train import resolve_device

    device = resolve_device(str(cfg.trainer.get("device", "auto")))
    settings = trainer_settings(cfg.trainer)
    threads = cfg.trainer.get("threads")
    if threads:
        # Small models on a shared CPU: OpenMP threads that wait on each other at every tiny op
        # cost more than they give (the quickstart ran 10x slower with 2 threads beside another job).
        import torch

        torch.set_num_threads(int(threads))
    strategy: Strategy = _build(cfg.strategy)
    pool: Pool = _build(cfg.dataset)
    budget.check(pool.n_train)
    if pool.num_classes < 2:
        raise ConfigError(f"dataset {pool.name} has {pool.num_classes} class; need at least 2")
    strategy.check(_new_model(cfg, seed, 0, pool, "cpu"))
    hooks = strategy.train_hooks()

    _check_writable(run.path)  # the first write: creates the directory
    with _run_lock(run.path):
        if (run.path / "DONE").exists():  # finished by another process in the meantime
            return _finished_run(run, knobs, budget)
        resuming = (run.path / "run.json").exists()
        done = []
        if resuming:
            _check_resume(run, knobs)
            done = _finished_cycles(run, budget)
        state = _resume_state(run, done, budget, cfg, seed, pool, device) if resuming else None

        try:
            return _run_cycles(cfg, run, container, knobs, seed, budget, device, settings, strategy, pool, hooks,
                               done, state, config_files or {})
        except (KeyboardInterrupt, SystemExit):
            log.warning("interrupted %s; rerun the same command to resume",
                        f"after cycle {len(done) - 1}" if done else "before its first cycle finished")
            raise
        except BaseException as exc:
            try:
                atomic_write_text(run.path / "FAILED", "".join(traceback.format_exception(exc)))
            except OSError as write_error:  # e.g. the disk is full: the original error matters more
                log.error("could not write %s: %s", run.path / "FAILED", write_error)
            raise


def _finished_run(run: RunDir, knobs: dict, budget: Budget) -> list[dict]:
    _check_resume(run, knobs)
    done = _finished_cycles(run, budget)
    if len(done) != budget.cycles:
        raise ConfigError(f"resume state in {run.path} is corrupt: DONE but metrics.jsonl holds "
                          f"{len(done)} of {budget.cycles} cycles; move the run directory away to start over")
    log.info("%s is DONE; nothing to do", run.path)
    return done


@contextlib.contextmanager
def _run_lock(path: Path):
    """An exclusive lock on the run directory itself (no file is created), held while the run
    writes: the same command started twice at once stops with a clear error instead of two
    processes appending to one metrics.jsonl. The kernel releases it when a process dies."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{path} is being run by another al-bench process right now (the same command "
                              f"twice?); let it finish or stop it first") from None
        except OSError as exc:  # some network file systems cannot lock directories
            log.warning("cannot lock %s (%s); make sure no other process runs it at the same time", path, exc)
        yield
    finally:
        os.close(fd)


@dataclass
class _ResumeState:
    labeled: np.ndarray | None  # for the next cycle to train; None when every cycle finished
    model: torch.nn.Module | None = None  # warm start: the model after the last finished cycle
    aux_state: dict | None = None
    recovered: dict | None = None  # metrics of a cycle that finished but whose line was not appended


def _new_model(cfg: DictConfig, seed: int, cycle: int, pool: Pool, device: torch.device) -> torch.nn.Module:
    import torch

    torch.manual_seed(derive_seed(seed, "init", cycle))
    return _build(cfg.model, num_classes=pool.num_classes, in_channels=pool.in_channels).to(device)


def _resume_state(run: RunDir, done: list[dict], budget: Budget, cfg, seed, pool: Pool, device) -> _ResumeState:
    """Read (and check) what a continued run needs, writing nothing."""
    warm_start = bool(cfg.trainer.get("warm_start", False))
    start = len(done)
    if start == budget.cycles:
        return _ResumeState(labeled=None)
    if start == 0:
        return _ResumeState(labeled=initial_labeled(pool.name, pool.n_train, budget.initial, seed))
    if not warm_start:
        return _ResumeState(labeled=_load_labeled(run, start, budget))
    state = _load_checkpoint(run, start - 1, _new_model(cfg, seed, 0, pool, device))
    if state.recovered is not None:
        start += 1
    state.labeled = _load_labeled(run, start, budget) if start < budget.cycles else None
    return state


def _run_cycles(cfg, run: RunDir, container, knobs, seed, budget: Budget, device, settings, strategy, pool: Pool,
                hooks, done: list[dict], state: _ResumeState | None, config_files: dict[str, str]) -> list[dict]:
    import torch

    from al_bench.train import evaluate, fit, predict, resolved_knobs

    warm_start = bool(cfg.trainer.get("warm_start", False))
    if state is None:  # a new run
        record = {
            "dataset": pool.name, "model": cfg.model.name, "strategy": cfg.strategy.name, "seed": seed,
            "budget": {"initial": budget.initial, "step": budget.step, "cycles": budget.cycles,
                       "subset": budget.subset},
            "knobs": knobs,
            "derived": {"lr_schedule": _lr_summary(settings), "n_train": pool.n_train,
                        "n_test": int(pool.test_y.numel()), "num_classes": pool.num_classes,
                        "image_size": list(pool.image_size), **resolved_knobs(settings, device),
                        **(hooks.describe() if hooks is not None else {})},
            "config": container, "versions": _versions(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(run.path / "run.json", record)
        state = _ResumeState(labeled=initial_labeled(pool.name, pool.n_train, budget.initial, seed))
    else:
        atomic_write_text(run.metrics_file, "".join(json.dumps(m) + "\n" for m in done))  # drops a torn line
        if state.recovered is not None:
            append_jsonl(run.metrics_file, state.recovered)
            done.append(state.recovered)
        if done:
            log.info("resuming %s after cycle %d", run.path, len(done) - 1)
    for name, text in config_files.items():
        atomic_write_text(run.path / name, text)
    (run.path / "FAILED").unlink(missing_ok=True)

    labeled, model, aux_state = state.labeled, state.model, state.aux_state
    pool_dev = pool.to(device)
    for cycle in range(len(done), budget.cycles):
        atomic_save_npy(run.labeled_file(cycle), labeled)
        if model is None or not warm_start:
            model = _new_model(cfg, seed, cycle, pool, device)
        if hooks is not None:
            torch.manual_seed(derive_seed(seed, "aux_init", cycle))
            hooks.start_cycle(model, warm_start)
            if aux_state is not None:
                hooks.module.load_state_dict(aux_state)
                aux_state = None
        torch.manual_seed(derive_seed(seed, "train", cycle))
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "augment", cycle))
        stats = fit(model, pool_dev, labeled, settings, gen, hooks, desc=f"cycle {cycle}")

        test_preds = predict(model, pool_dev.test_x, pool.mean, pool.std, settings.eval_batch_size, hooks,
                             precision=settings.precision, channels_last=settings.channels_last)
        metrics = {"cycle": cycle, "n_labeled": int(len(labeled)), **evaluate(test_preds, pool_dev.test_y),
                   "train_loss": stats["train_loss"], "train_time_s": round(stats["train_time_s"], 3)}
        if hooks is not None:
            metrics.update(hooks.metrics(test_preds, pool_dev.test_y))
        if "eval_history" in stats:
            metrics["eval_history"] = stats["eval_history"]
        del test_preds

        metrics["select_time_s"] = 0.0
        if cycle + 1 < budget.cycles:
            t0 = time.perf_counter()
            labeled = _select(strategy, model, pool_dev, labeled, budget, seed, cycle, device, settings, hooks)
            metrics["select_time_s"] = round(time.perf_counter() - t0, 3)
            atomic_save_npy(run.labeled_file(cycle + 1), labeled)
            if warm_start:
                # The checkpoint carries the cycle's metrics: killed between this write and the
                # append below, a resumed run appends them instead of retraining from a model that
                # already saw this cycle.
                atomic_torch_save(run.path / "checkpoint.pt", {
                    "cycle": cycle, "model": model.state_dict(), "metrics": metrics,
                    "aux": hooks.module.state_dict() if hooks is not None and hooks.module is not None else None})
        append_jsonl(run.metrics_file, metrics)
        done.append(metrics)
        log.info("cycle=%d n_labeled=%d test_acc=%.4f train_time_s=%.1f select_time_s=%.1f%s", cycle,
                 metrics["n_labeled"], metrics["test_acc"], metrics["train_time_s"], metrics["select_time_s"],
                 "".join(f" {k}={v:.4f}" for k, v in metrics.items() if k.endswith("rank_acc")))
    atomic_write_text(run.path / "DONE", datetime.now(timezone.utc).isoformat(timespec="seconds") + "\n")
    return done


def _select(strategy, model, pool: Pool, labeled, budget: Budget, seed, cycle, device, settings, hooks) -> np.ndarray:
    """Draw the candidate subset, ask the strategy for `step` of them, return the new labeled set."""
    import torch

    from al_bench.strategies.base import SelectionContext
    from al_bench.train import predict

    rng = np.random.default_rng(derive_seed(seed, "subset", cycle))
    unlabeled = np.setdiff1d(np.arange(pool.n_train), labeled)
    if budget.subset is not None and budget.subset < len(unlabeled):
        candidates = np.sort(rng.choice(unlabeled, size=budget.subset, replace=False))
    else:
        candidates = unlabeled

    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(indices, device=device)
        return predict(model, pool.train_x[idx], pool.mean, pool.std, settings.eval_batch_size, hooks,
                       mc_samples=mc_samples, precision=settings.precision, channels_last=settings.channels_last)

    ctx = SelectionContext(model=model, pool=pool, labeled=labeled, device=device, predictor=predictor,
                           rng=np.random.default_rng(derive_seed(seed, "select", cycle)), cycle=cycle)
    picked = np.asarray(strategy.select(ctx, candidates, budget.step), dtype=np.int64)
    name = type(strategy).__name__
    if picked.shape != (budget.step,) or len(np.unique(picked)) != budget.step:
        raise RuntimeError(f"strategy {name} returned {picked.shape} indices with "
                           f"{len(np.unique(picked))} distinct; expected {budget.step} distinct")
    if not np.isin(picked, candidates).all():
        raise RuntimeError(f"strategy {name} returned indices outside the candidate subset")
    return np.concatenate([labeled, picked])


def _load_labeled(run: RunDir, cycle: int, budget: Budget) -> np.ndarray:
    path = run.labeled_file(cycle)
    try:
        labeled = np.load(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"resume state in {run.path} is corrupt: {path.name} unreadable ({exc}); "
                          f"move the run directory away to start over") from None
    if labeled.shape != (budget.n_labeled(cycle),):
        raise ConfigError(f"resume state in {run.path} is corrupt: {path.name} holds {labeled.shape} "
                          f"indices, expected {budget.n_labeled(cycle)}")
    return labeled


def _load_checkpoint(run: RunDir, cycle: int, model: torch.nn.Module) -> _ResumeState:
    """The warm-start state after `cycle` (checkpoint.pt), or after `cycle + 1` when that cycle
    finished but was killed before its metrics line was appended (then `recovered` holds it)."""
    import torch

    path = run.path / "checkpoint.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"resume state in {run.path} is corrupt: checkpoint.pt is missing (a warm-start run "
                          f"needs it); move the run directory away to start over") from None
    except Exception as exc:  # garbage, truncated: torch's message is pages long
        raise ConfigError(f"resume state in {run.path} is corrupt: checkpoint.pt is not a readable checkpoint "
                          f"({type(exc).__name__}); move the run directory away to start over") from None
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
        raise ConfigError(f"resume state in {run.path} is corrupt: checkpoint.pt unusable ({reason}); "
                          f"move the run directory away to start over") from None
    return _ResumeState(labeled=None, model=model, aux_state=state.get("aux"), recovered=recovered)


def remove_if_unstarted(out_dir: Path, stop_at: Path | None = None) -> None:
    """After bad input, remove the directory Hydra made if the run never started (no run.json, and
    nothing but Hydra's files in it), then its parents up to `stop_at` while they are empty."""
    out_dir = Path(out_dir).absolute()
    if not out_dir.is_dir() or (out_dir / "run.json").exists():
        return
    if any(p.name not in (".hydra", "al-bench.log") for p in out_dir.iterdir()):
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
