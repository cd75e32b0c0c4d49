"""Several runs per GPU: a sweep's job i goes to GPU i mod n_gpus when trainer.device=auto
(docs/cluster.md). Tested on CPU with faked device counts; untested on real GPUs here."""

import pytest
import torch

from al_bench import ConfigError
from al_bench.training import device as device_mod
from al_bench.training.device import gpu_for_job, resolve_device


def test_jobs_go_round_robin_over_the_gpus():
    assert [gpu_for_job(i, 4) for i in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert [gpu_for_job(i, 1) for i in range(3)] == [0, 0, 0]  # one GPU per SLURM array task: always its own
    with pytest.raises(ValueError):
        gpu_for_job(0, 0)


@pytest.fixture
def fake_gpus(monkeypatch):
    def install(n, current=0):
        monkeypatch.setattr(device_mod.torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(device_mod.torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(device_mod.torch.cuda, "current_device", lambda: current)
    return install


def test_auto_places_a_sweep_job_on_its_gpu(fake_gpus):
    fake_gpus(3)
    assert [resolve_device("auto", i) for i in range(5)] == [torch.device("cuda", g) for g in (0, 1, 2, 0, 1)]
    fake_gpus(3, current=2)
    assert resolve_device("auto") == torch.device("cuda", 2)  # a single run: the current GPU
    fake_gpus(0)
    assert resolve_device("auto", 7) == torch.device("cpu")


def test_an_explicit_device_is_not_moved(fake_gpus):
    fake_gpus(4)
    assert resolve_device("cuda:3", 1) == torch.device("cuda", 3)
    assert resolve_device("cpu", 1) == torch.device("cpu")


def test_cuda_without_an_index_is_the_current_gpu_and_a_missing_gpu_is_a_clear_error(fake_gpus):
    fake_gpus(2, current=1)
    assert resolve_device("cuda") == torch.device("cuda", 1)  # indexed: torch.cuda.set_device needs one
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"trainer.device=cuda:2 but this machine has 2 GPU\(s\)"):
        resolve_device("cuda:2")
    fake_gpus(0)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_the_cli_passes_each_sweep_job_its_index(tmp_path, monkeypatch, capsys):
    """What reaches the loop: the job's index in a multirun (Hydra's hydra.job.num), none for a single run."""
    from conftest import SMOKE, cli

    from al_bench import loop

    seen = []
    monkeypatch.setattr(loop, "run_al", lambda cfg, out_dir, config_files=None, job_index=None:
                        seen.append((cfg.seed, job_index)))
    monkeypatch.chdir(tmp_path)
    code, err = cli(["-m", *SMOKE, "seed=0,1,2", "strategy=random,entropy", "~hydra.callbacks.report"], capsys)
    assert code == 0, err
    assert sorted(j for _, j in seen) == list(range(6))
    seen.clear()
    code, err = cli([*SMOKE, "seed=4"], capsys)
    assert code == 0, err
    assert seen == [(4, None)]
