"""Sweeps: the readable run-directory layout, the launcher presets, and a real multirun through
hydra-submitit-launcher's local executor followed by the reporter. (A sweep with a failing job:
tests/test_bad_input_cluster.py.)"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import al_bench.cli  # noqa: F401  registers the al_bench.knob_dir resolver

TINY = ["dataset=synthetic", "model=small_cnn", "trainer=fast", "trainer.device=cpu", "trainer.progress=false",
        "budget=tiny", "budget.initial=32", "budget.step=32", "budget.cycles=2", "trainer.epochs=2",
        "trainer.milestones=[1]"]
KNOBS = "budget.cycles=2,budget.initial=32,budget.step=32,budget=tiny,trainer.epochs=2,trainer.milestones=[1],trainer=fast"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def script(name):
    path = Path(sys.executable).with_name(name)
    return [str(path)] if path.exists() else [sys.executable, "-m", {"al-bench": "al_bench.cli",
                                                                     "al-bench-report": "al_bench.report"}[name]]


def run(name, args, cwd, timeout=240):
    env = dict(os.environ, **ENV)
    env.pop("HYDRA_FULL_ERROR", None)
    t0 = time.perf_counter()
    proc = subprocess.run(script(name) + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    print(f"{name} {' '.join(args[:3])}...: exit {proc.returncode} after {time.perf_counter() - t0:.1f} s")
    return proc


def subdir(overrides, sweep=()):
    """hydra.sweep.subdir as a job of `al-bench -m OVERRIDES` resolves it."""
    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        cfg = compose("config", overrides=list(overrides) + list(sweep), return_hydra_config=True)
    return OmegaConf.select(cfg, "hydra.sweep.subdir")


def test_run_dirs_read_well():
    # nothing but dataset, model, strategy and seed chosen: no knob level, no "//"
    assert subdir(["dataset=synthetic", "model=small_cnn", "strategy=entropy", "seed=3"]) == \
        "synthetic/small_cnn/entropy/seed=3"
    assert subdir(["experiment=quickstart", "seed=1", "out_root=/x", "trainer.progress=false"]) == \
        "digits/small_cnn/random/seed=1"
    # the paper sweep of docs/cluster.md
    paper = ["hydra/launcher=slurm", "experiment=ll4al_cifar10"]
    assert subdir(paper, ["strategy=coreset", "seed=4"]) == "cifar10/resnet18/coreset/seed=4"
    assert subdir(paper + ["trainer.warm_start=true"], ["strategy=lloss", "seed=0"]) == \
        "cifar10/resnet18/lloss/trainer.warm_start=true/seed=0"
    # a knob is a level between the strategy and the seed, written the same however it was typed
    # (a multirun hands its jobs "False" for a typed "false")
    assert subdir(["strategy=entropy", "trainer.warm_start=true"]) == \
        "cifar10/resnet18/entropy/trainer.warm_start=true/seed=0"
    assert subdir(["strategy=entropy", "trainer.warm_start=True"]) == \
        subdir(["strategy=entropy", "trainer.warm_start=true"])
    assert subdir(["trainer.lr=1e30", "trainer.milestones=[10,20]", "trainer=cpu"]) == \
        "cifar10/resnet18/random/trainer.lr=1e+30,trainer.milestones=[10,20],trainer=cpu/seed=0"
    # the single-run directory is the same as the sweep's
    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        cfg = compose("config", overrides=["trainer.warm_start=true", "out_root=/r"], return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.run.dir") == "/r/default/cifar10/resnet18/random/trainer.warm_start=true/seed=0"


def test_launcher_presets_compose():
    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        local = compose("config", overrides=["hydra/launcher=local_parallel"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert slurm.max_num_timeout > 0 and slurm.gpus_per_node == 1  # requeued after a time-out, one GPU a run
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == 2


@pytest.mark.slow
def test_submitit_local_sweep_then_report(tmp_path):
    """2 strategies x 2 seeds through hydra-submitit-launcher's local executor, then al-bench-report."""
    t0 = time.perf_counter()
    sweep = run("al-bench", ["-m", "hydra/launcher=submitit_local", *TINY, "strategy=random,entropy", "seed=0,1",
                             f"out_root={tmp_path}", "~hydra.callbacks.report"], cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    sweep_dir = tmp_path / "default"
    runs = sorted(p.parent.relative_to(sweep_dir).as_posix() for p in sweep_dir.rglob("metrics.jsonl"))
    assert runs == [f"synthetic/small_cnn/{s}/{KNOBS}/seed={seed}" for s in ("entropy", "random") for seed in (0, 1)]
    for run_dir in runs:
        run_dir = sweep_dir / run_dir
        assert (run_dir / "DONE").exists() and not (run_dir / "FAILED").exists()
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
        assert (run_dir / ".hydra" / "config.yaml").exists()
    # the initial labeled set depends on the seed only, never on the strategy
    for seed in (0, 1):
        a, b = ((sweep_dir / f"synthetic/small_cnn/{s}/{KNOBS}/seed={seed}/labeled/cycle_00.npy").read_bytes()
                for s in ("random", "entropy"))
        assert a == b

    report = run("al-bench-report", [str(sweep_dir)], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (sweep_dir / "report" / "summary.csv").exists()
    print(f"submitit_local sweep (4 runs) + report: {time.perf_counter() - t0:.1f} s wall")
