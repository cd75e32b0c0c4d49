"""The active-learning cycle loop: seeds, cycles, selection, on plain values (al_bench.config).

Every random draw of cycle c is seeded from (seed, c, purpose), so a rerun of the same command
continues after the last line of metrics.jsonl and reproduces an uninterrupted run exactly (bit
for bit on CPU; tests/test_resume.py). The run directory's files and checks are al_bench.rundir's.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import socket
import time
import traceback
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import al_bench
from al_bench import ConfigError
from al_bench.budget import Budget
from al_bench.config import RunConfig
from al_bench.rundir import ResumeState, RunDir, check_writable
from al_bench.tracking import RunLogger

# torch and the training machinery are imported inside the functions that use them: deciding that
# a run is finished, foreign or damaged must not cost the seconds that importing torch takes (a
# rerun sweep skips its finished runs at once).
if TYPE_CHECKING:
    import torch

    from al_bench.data.pool import Pool
    from al_bench.strategies.base import Strategy

log = logging.getLogger("al_bench")


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for one purpose of one cycle, independent of every other draw."""
    words = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def initial_labeled(pool_name: str, n_pool: int, n_initial: int, seed: int) -> np.ndarray:
    """The initial labeled set: a function of (dataset, seed, size) only, so every strategy of one
    seed starts from the same images."""
    rng = np.random.default_rng(derive_seed(seed, "initial", pool_name))
    return np.sort(rng.choice(n_pool, size=n_initial, replace=False)).astype(np.int64)


def run_al(cfg: RunConfig, out_dir: str | Path, config_files: dict[str, str] | None = None,
           job_index: int | None = None) -> list[dict]:
    """Run (or continue) one active-learning experiment into `out_dir`; returns the metrics of
    every cycle.

    A finished run (DONE) of the same config returns at once, before any data is loaded. Bad input
    (data, an unwritable or foreign or corrupt run directory) raises ConfigError before anything in
    `out_dir` is written. Once the directory is known to hold this config's run, `config_files`
    (relative path -> text, e.g. Hydra's .hydra/config.yaml) are written into it, and any exception
    from then on leaves FAILED with its traceback (KeyboardInterrupt and SystemExit, e.g. a
    pre-empted cluster job, leave the run resumable and unmarked). `job_index`, the run's index in
    a sweep, places it on a GPU when trainer.device is auto (training.device.resolve_device).
    """
    run = RunDir(Path(out_dir))
    knobs = cfg.knobs
    if run.done:
        return _finished_run(run, knobs, cfg.budget)
    if run.started:
        run.check_same_config(knobs)  # before loading data for, or writing into, another config's directory
        run.finished_cycles(cfg.budget.cycles)

    from al_bench.training import resolve_device

    device = resolve_device(cfg.trainer.device, job_index)
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)  # code that says "cuda" without an index lands on this run's GPU too
    if cfg.trainer.threads:
        # Small models on a shared CPU: OpenMP threads that wait on each other at every tiny op
        # cost more than they give (the quickstart ran 10x slower with 2 threads beside another job).
        import torch

        torch.set_num_threads(cfg.trainer.threads)
    strategy: Strategy = cfg.strategy.build()
    pool: Pool = _normalised(cfg.dataset.build(), cfg.trainer)
    cfg.budget.check_pool(pool.n_train)
    if pool.num_classes < 2:
        raise ConfigError(f"dataset {pool.name} has {pool.num_classes} class; need at least 2")
    strategy.check(_new_model(cfg, 0, pool, "cpu"))

    check_writable(run.path)  # the first write: creates the directory
    with run.lock():
        if run.done:  # finished by another process in the meantime
            return _finished_run(run, knobs, cfg.budget)
        state = _resume_state(run, cfg, knobs, pool, device, strategy) if run.started else None
        removed = run.remove_stale_temporaries()
        if removed:
            log.info("removed %d temporary file(s) of an interrupted write in %s", removed, run.path)
        try:
            return _run_cycles(cfg, run, device, strategy, pool, state, config_files or {})
        except (KeyboardInterrupt, SystemExit):
            done = state.done if state is not None else []
            log.warning("interrupted %s; rerun the same command to resume",
                        f"after cycle {len(done) - 1}" if done else "before its first cycle finished")
            raise
        except BaseException as exc:
            run.mark_failed("".join(traceback.format_exception(exc)))
            raise


def _finished_run(run: RunDir, knobs: dict, budget: Budget) -> list[dict]:
    run.check_same_config(knobs)
    done = run.finished_cycles(budget.cycles)
    if len(done) != budget.cycles:
        raise run.corrupt(f"DONE but metrics.jsonl holds {len(done)} of {budget.cycles} cycles")
    log.info("%s is DONE; nothing to do", run.path)
    return done


def _normalised(pool: Pool, settings) -> Pool:
    """The pool with the trainer's normalisation constants, when given (else its own statistics)."""
    if settings.norm_mean is None:
        return pool
    if len(settings.norm_mean) != pool.in_channels:
        raise ConfigError(f"trainer.norm_mean has {len(settings.norm_mean)} values but dataset {pool.name} has "
                          f"{pool.in_channels} channel(s)")
    return dataclasses.replace(pool, mean=tuple(settings.norm_mean), std=tuple(settings.norm_std))


def _new_model(cfg: RunConfig, cycle: int, pool: Pool, device) -> torch.nn.Module:
    import torch

    torch.manual_seed(derive_seed(cfg.seed, "init", cycle))
    return cfg.model.build(num_classes=pool.num_classes, in_channels=pool.in_channels).to(device)


def _resume_state(run: RunDir, cfg: RunConfig, knobs: dict, pool: Pool, device, strategy) -> ResumeState:
    """Read (and check) what a continued run needs, writing nothing."""
    run.check_same_config(knobs)
    budget = cfg.budget
    done = run.finished_cycles(budget.cycles)
    start = len(done)
    if start == budget.cycles:
        return ResumeState(done, labeled=None)
    if start == 0:
        return ResumeState(done, labeled=initial_labeled(pool.name, pool.n_train, budget.initial, cfg.seed))
    if not cfg.trainer.warm_start:
        return ResumeState(done, labeled=run.load_labeled(start, budget.n_labeled(start)))
    model = _new_model(cfg, 0, pool, device)
    plugin_state, recovered = run.load_checkpoint(start - 1, model)
    if recovered is not None:
        start += 1
    labeled = run.load_labeled(start, budget.n_labeled(start)) if start < budget.cycles else None
    return ResumeState(done, labeled=labeled, model=model, plugin_state=plugin_state, recovered=recovered)


def _run_record(cfg: RunConfig, pool: Pool, device, plugin) -> dict:
    import torch

    from al_bench.training import lr_summary, resolved_knobs

    budget = cfg.budget
    return {
        "dataset": pool.name, "model": cfg.model.name, "strategy": cfg.strategy.name, "seed": cfg.seed,
        "budget": {"initial": budget.initial, "step": budget.step, "cycles": budget.cycles, "subset": budget.subset},
        "knobs": cfg.knobs,
        "derived": {"lr_schedule": lr_summary(cfg.trainer), "n_train": pool.n_train,
                    "n_test": int(pool.test_y.numel()), "num_classes": pool.num_classes,
                    "image_size": list(pool.image_size), **resolved_knobs(cfg.trainer, device),
                    **(plugin.describe(cfg.trainer) if plugin is not None else {}),
                    **({"ignored_options": cfg.ignored} if cfg.ignored else {})},
        "config": cfg.record, "versions": _versions(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:  # without importing it (torchvision costs a second per process)
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"al_bench": al_bench.__version__, "torch": torch.__version__, "torchvision": installed("torchvision"),
            "hydra": installed("hydra-core"), "numpy": np.__version__, "python": platform.python_version()}


def _run_cycles(cfg: RunConfig, run: RunDir, device, strategy, pool: Pool, state: ResumeState | None,
                config_files: dict[str, str]) -> list[dict]:
    budget, settings, seed = cfg.budget, cfg.trainer, cfg.seed
    plugin = strategy.train_plugin()
    if state is None:  # a new run
        run.write_run_json(_run_record(cfg, pool, device, plugin))
        state = ResumeState([], labeled=initial_labeled(pool.name, pool.n_train, budget.initial, seed))
    else:
        run.rewrite_metrics(state.done)
        if state.recovered is not None:
            run.append_metrics(state.recovered)
            state.done.append(state.recovered)
        if state.done:
            log.info("resuming %s after cycle %d", run.path, len(state.done) - 1)
    for name, text in config_files.items():
        run.write_text(name, text)
    run.clear_failed()

    # Opened once the directory is this config's run; closed however the cycles end.
    tracker = cfg.logger.build() if cfg.logger is not None else RunLogger()
    tracker.open(run.path, cfg.name, settings.epochs)
    try:
        tracker.log_config(cfg.record)
        return _train_cycles(cfg, run, device, strategy, pool, plugin, state, tracker)
    finally:
        tracker.close()


def _train_cycles(cfg: RunConfig, run: RunDir, device, strategy, pool: Pool, plugin, state: ResumeState,
                  tracker: RunLogger) -> list[dict]:
    import torch

    from al_bench.training import evaluate, fit, predict, train_context

    budget, settings, seed = cfg.budget, cfg.trainer, cfg.seed
    done, labeled, model, plugin_state = state.done, state.labeled, state.model, state.plugin_state
    pool_dev = pool.to(device)
    for cycle in range(len(done), budget.cycles):
        run.save_labeled(cycle, labeled)
        if model is None or not settings.warm_start:
            model = _new_model(cfg, cycle, pool, device)
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "augment", cycle))
        if plugin is not None:
            torch.manual_seed(derive_seed(seed, "aux_init", cycle))
            plugin.setup(model, train_context(model, pool_dev, labeled, settings, cycle, gen, plugin),
                         settings.warm_start)
            if plugin_state is not None:
                plugin.load_state_dict(plugin_state)
                plugin_state = None
        torch.manual_seed(derive_seed(seed, "train", cycle))
        stats = fit(model, pool_dev, labeled, settings, gen, plugin, cycle, desc=f"cycle {cycle}",
                    on_epoch_end=lambda epoch, values, c=cycle: tracker.log_epoch(c, epoch, values))

        test_preds = predict(model, pool_dev.test_x, pool.mean, pool.std, settings.eval_batch_size, plugin,
                             precision=settings.precision, channels_last=settings.channels_last)
        metrics = {"cycle": cycle, "n_labeled": int(len(labeled)), **evaluate(test_preds, pool_dev.test_y),
                   **{k: v for k, v in stats.items() if k != "eval_history"},
                   "train_time_s": round(stats["train_time_s"], 3)}
        if plugin is not None:
            metrics.update(plugin.metrics(test_preds, pool_dev.test_y))
        if "eval_history" in stats:
            metrics["eval_history"] = stats["eval_history"]
        del test_preds

        metrics["select_time_s"] = 0.0
        if cycle + 1 < budget.cycles:
            t0 = time.perf_counter()
            labeled = select(strategy, model, pool_dev, labeled, budget, seed, cycle, settings, plugin)
            metrics["select_time_s"] = round(time.perf_counter() - t0, 3)
            run.save_labeled(cycle + 1, labeled)
            if settings.warm_start:
                # The checkpoint carries the cycle's metrics: killed between this write and the
                # append below, a resumed run appends them instead of retraining from a model that
                # already saw this cycle.
                run.save_checkpoint(cycle, model, plugin.state_dict() if plugin is not None else None, metrics)
        run.append_metrics(metrics)
        done.append(metrics)
        tracker.log_cycle(cycle, metrics)
        log.info("cycle=%d n_labeled=%d test_acc=%.4f train_time_s=%.1f select_time_s=%.1f%s", cycle,
                 metrics["n_labeled"], metrics["test_acc"], metrics["train_time_s"], metrics["select_time_s"],
                 "".join(f" {k}={v:.4f}" for k, v in metrics.items() if k.endswith("rank_acc")))
    run.mark_done(datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return done


def select(strategy, model, pool: Pool, labeled, budget: Budget, seed, cycle, settings, plugin=None) -> np.ndarray:
    """Draw the candidate subset, ask the strategy for `step` of them, return the new labeled set."""
    import torch

    from al_bench.strategies.base import SelectionContext
    from al_bench.training import predict

    rng = np.random.default_rng(derive_seed(seed, "subset", cycle))
    unlabeled = np.setdiff1d(np.arange(pool.n_train), labeled)
    if budget.subset is not None and budget.subset < len(unlabeled):
        candidates = np.sort(rng.choice(unlabeled, size=budget.subset, replace=False))
    else:
        candidates = unlabeled
    device = pool.train_x.device
    mc_seed = derive_seed(seed, "mc_dropout", cycle)

    def predict_images(images, mc_samples=0):
        gen = torch.Generator(device=device).manual_seed(mc_seed) if mc_samples else None
        return predict(model, images, pool.mean, pool.std, settings.eval_batch_size, plugin, mc_samples=mc_samples,
                       precision=settings.precision, channels_last=settings.channels_last, generator=gen)

    def predictor(indices, mc_samples=0):
        return predict_images(pool.train_x[torch.as_tensor(indices, device=device)], mc_samples)

    ctx = SelectionContext(model=model, pool=pool, labeled=labeled, device=device, predictor=predictor,
                           rng=np.random.default_rng(derive_seed(seed, "select", cycle)), cycle=cycle,
                           settings=settings, image_predictor=predict_images)
    picked = np.asarray(strategy.select(ctx, candidates, budget.step), dtype=np.int64)
    name = type(strategy).__name__
    if picked.shape != (budget.step,) or len(np.unique(picked)) != budget.step:
        raise RuntimeError(f"strategy {name} returned {picked.shape} indices with "
                           f"{len(np.unique(picked))} distinct; expected {budget.step} distinct")
    if not np.isin(picked, candidates).all():
        raise RuntimeError(f"strategy {name} returned indices outside the candidate subset")
    return np.concatenate([labeled, picked])
