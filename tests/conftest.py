import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

# conf/experiment/smoke.yaml: small enough that one cycle trains in well under a second on a 2-core CPU.
SMOKE = ["experiment=smoke"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests use tiny tensors: one thread is several times faster than two fighting over a shared
    CPU (one test took 59 s with the default threads, 24 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_cfg(overrides=()):
    """The composed DictConfig, as Hydra gives it to the CLI."""
    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        return compose("config", overrides=list(overrides))


def load_cfg(overrides=()):
    """The typed, validated RunConfig of the overrides (ConfigError for bad input)."""
    from al_bench import config

    return config.load(make_cfg(overrides), overrides=list(overrides))


def run_al(overrides, out_dir):
    """One run in-process, as `al-bench OVERRIDES hydra.run.dir=out_dir` would do it (`overrides`:
    a list, or a RunConfig from load_cfg)."""
    from al_bench import loop

    cfg = load_cfg(overrides) if isinstance(overrides, (list, tuple)) else overrides
    return loop.run_al(cfg, out_dir)


def run_interrupted_and_resumed(args, tmp_path, monkeypatch, at_cycle=2):
    """Run `args` whole into tmp_path/whole, and again into tmp_path/resumed interrupted (Ctrl-C) as
    training of `at_cycle` starts, then resumed; returns (whole metrics, resumed metrics) without
    the timings, for the bit-for-bit comparison of a resumed run with an uninterrupted one."""
    import al_bench.training as training

    whole = run_al(args, tmp_path / "whole")
    fit = training.fit

    def interrupted(*a, **k):
        if a[6] == at_cycle:  # fit(model, pool, labeled, settings, generator, plugin, cycle)
            raise KeyboardInterrupt
        return fit(*a, **k)

    monkeypatch.setattr(training, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_al(args, tmp_path / "resumed")
    monkeypatch.setattr(training, "fit", fit)
    resumed = run_al(args, tmp_path / "resumed")
    drop = lambda ms: [{k: v for k, v in m.items() if not k.endswith("_time_s")} for m in ms]  # noqa: E731
    return drop(whole), drop(resumed)


@pytest.fixture
def cli_run(capsys, monkeypatch):
    """`cli_run(args, cwd)`: the CLI in-process in `cwd`, as a result with returncode and stderr."""
    from types import SimpleNamespace

    def run(args, cwd):
        monkeypatch.chdir(cwd)
        code, err = cli(args, capsys)
        return SimpleNamespace(returncode=code, stderr=err)

    return run


def cli(args, capsys=None):
    """The CLI in-process: (exit code, stderr text) of `al-bench ARGS`."""
    from al_bench.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err if capsys is not None else ""


def run_cli(args, cwd, env_extra=None, timeout=300):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "al_bench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir):
    return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def cfg_factory():
    return make_cfg
