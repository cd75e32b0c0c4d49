"""The active-learning cycle loop and the run-directory contract.

    <run_dir>/run.json          dataset, model, strategy, seed, budget, every resolved knob, versions, device
    <run_dir>/metrics.jsonl     one JSON object per finished cycle (the commit point of a cycle)
    <run_dir>/labeled/cycle_XX.npy   pool indices (int64) used to train cycle XX
    <run_dir>/checkpoint.pt     model (+ auxiliary module) after the last finished cycle, warm start only
    <run_dir>/DONE | FAILED     written last / with the traceback

Every random draw of cycle c is seeded from (seed, c, purpose), so a rerun of the same command
continues after the last line of metrics.jsonl and reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import socket
import time
import zlib
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import al_bench
from al_bench import ConfigError
from al_bench.data.pool import Pool
from al_bench.io import (append_jsonl, atomic_save_npy, atomic_torch_save, atomic_write_json,
                         atomic_write_text, read_jsonl)
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.train import TrainSettings, evaluate, fit, lr_at_epoch, predict, resolve_device

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
    """Instantiate a config node whose `name` key is metadata (the CLI word), not an argument."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name", None)
    return instantiate(params, **kwargs, _convert_="all")


def trainer_settings(node: DictConfig) -> TrainSettings:
    names = {f.name for f in fields(TrainSettings)}
    params = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(params) - names - {"name", "device", "warm_start"})
    if unknown:
        raise ConfigError(f"unknown trainer option(s): {', '.join(unknown)}")
    return TrainSettings(**{k: v for k, v in params.items() if k in names})


def _versions() -> dict:
    import hydra
    import torchvision

    return {"al_bench": al_bench.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "hydra": hydra.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _lr_summary(settings: TrainSettings) -> str:
    """E.g. "0.1 x160, 0.01 x40": the per-epoch lr actually used, run-length encoded."""
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


def _check_resume(run: RunDir, record: dict) -> None:
    """Refuse to continue a run directory written by a different configuration."""
    try:
        old = json.loads((run.path / "run.json").read_text())
        old_knobs = old["knobs"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"resume state in {run.path} is corrupt: run.json unreadable ({exc}); "
                          f"move the run directory away to start over") from None
    new_knobs = record["knobs"]
    keys = sorted((set(old_knobs) | set(new_knobs)) - set(VOLATILE_KEYS))
    diff = [k for k in keys if old_knobs.get(k) != new_knobs.get(k)]
    if diff:
        shown = "; ".join(f"{k}: {old_knobs.get(k)!r} -> {new_knobs.get(k)!r}" for k in diff[:4])
        raise ConfigError(f"{run.path} holds a run of a different config ({shown}); "
                          f"choose another output dir (hydra.run.dir=...) or move it away")


def run_al(cfg: DictConfig, out_dir: str | Path) -> list[dict]:
    """Run (or continue) one active-learning experiment into `out_dir`; returns the metrics of
    every cycle. Bad input raises ConfigError before anything is written."""
    container = OmegaConf.to_container(cfg, resolve=True)
    seed = int(cfg.seed)
    budget = Budget(**{k: v for k, v in container["budget"].items() if k != "name"})
    device = resolve_device(str(cfg.trainer.get("device", "auto")))
    settings = trainer_settings(cfg.trainer)
    warm_start = bool(cfg.trainer.get("warm_start", False))
    strategy: Strategy = _build(cfg.strategy)
    pool: Pool = _build(cfg.dataset)
    budget.check(pool.n_train)
    if pool.num_classes < 2:
        raise ConfigError(f"dataset {pool.name} has {pool.num_classes} class; need at least 2")

    def new_model(cycle: int) -> torch.nn.Module:
        torch.manual_seed(derive_seed(seed, "init", cycle))
        return _build(cfg.model, num_classes=pool.num_classes, in_channels=pool.in_channels).to(device)

    run = RunDir(Path(out_dir))
    knobs = flatten(container)
    record = {
        "dataset": pool.name, "model": cfg.model.name, "strategy": cfg.strategy.name, "seed": seed,
        "budget": {"initial": budget.initial, "step": budget.step, "cycles": budget.cycles, "subset": budget.subset},
        "knobs": knobs,
        "derived": {"lr_schedule": _lr_summary(settings), "n_train": pool.n_train, "n_test": int(pool.test_y.numel()),
                    "num_classes": pool.num_classes, "image_size": list(pool.image_size)},
        "config": container, "versions": _versions(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "host": socket.gethostname(),
    }
    hooks = strategy.train_hooks()
    if hooks is not None:
        record["derived"].update(hooks.describe())

    if (run.path / "DONE").exists():
        _check_resume(run, record)
        log.info("%s is DONE; nothing to do", run.path)
        return run.finished_cycles()
    _check_writable(run.path)
    done = []
    if (run.path / "run.json").exists():
        _check_resume(run, record)
        done = run.finished_cycles()
        if [m.get("cycle") for m in done] != list(range(len(done))):
            raise ConfigError(f"resume state in {run.path} is corrupt: metrics.jsonl cycles are "
                              f"{[m.get('cycle') for m in done]}; move the run directory away to start over")
        atomic_write_text(run.metrics_file, "".join(json.dumps(m) + "\n" for m in done))  # drop a torn line
        if done:
            log.info("resuming %s after cycle %d", run.path, len(done) - 1)
    else:
        record["started_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        atomic_write_json(run.path / "run.json", record)
    (run.path / "FAILED").unlink(missing_ok=True)

    start_cycle = len(done)
    model = aux_state = None
    if start_cycle == 0:
        labeled = initial_labeled(pool.name, pool.n_train, budget.initial, seed)
    elif start_cycle < budget.cycles:
        labeled = _load_labeled(run, start_cycle, budget)
        if warm_start:
            model, aux_state = _load_checkpoint(run, start_cycle - 1, new_model(0))

    pool_dev = pool.to(device)
    for cycle in range(start_cycle, budget.cycles):
        atomic_save_npy(run.labeled_file(cycle), labeled)
        if model is None or not warm_start:
            model = new_model(cycle)
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
        del test_preds

        metrics["select_time_s"] = 0.0
        if cycle + 1 < budget.cycles:
            t0 = time.perf_counter()
            labeled = _select(strategy, model, pool_dev, labeled, budget, seed, cycle, device, settings, hooks)
            metrics["select_time_s"] = round(time.perf_counter() - t0, 3)
            atomic_save_npy(run.labeled_file(cycle + 1), labeled)
            if warm_start:
                atomic_torch_save(run.path / "checkpoint.pt", {
                    "cycle": cycle, "model": model.state_dict(),
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


def _load_checkpoint(run: RunDir, cycle: int, model: torch.nn.Module):
    path = run.path / "checkpoint.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["cycle"] != cycle:
            raise ValueError(f"it is from cycle {state['cycle']}, expected {cycle}")
        model.load_state_dict(state["model"])
    except Exception as exc:  # missing, truncated, from another model...
        raise ConfigError(f"resume state in {run.path} is corrupt: checkpoint.pt unusable ({exc}); "
                          f"move the run directory away to start over") from None
    return model, state.get("aux")


def remove_if_unstarted(out_dir: Path) -> None:
    """After bad input, remove the directory Hydra made if the run never started (no run.json)."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and not (out_dir / "run.json").exists():
        leftovers = [p for p in out_dir.iterdir() if p.name not in (".hydra", "al-bench.log")]
        if not leftovers:
            shutil.rmtree(out_dir, ignore_errors=True)
