import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

# Small enough that one cycle trains in well under a second on a 2-core CPU.
SMOKE = ["dataset=synthetic", "model=small_cnn", "budget=tiny", "trainer=fast", "trainer.epochs=2",
         "trainer.progress=false", "budget.cycles=2"]


def make_cfg(overrides=()):
    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        return compose("config", overrides=list(overrides))


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
