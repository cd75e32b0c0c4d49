"""End-to-end runs: the run-directory contract, determinism, and bad input refused up front."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, load_cfg, read_metrics, run_al, run_cli

from al_bench import ConfigError
from al_bench.loop import initial_labeled


def test_cli_run_writes_the_full_run_directory_contract(tmp_path):
    res = run_cli(SMOKE + ["strategy=entropy", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").exists() and (run / "DONE").exists() and not (run / "FAILED").exists()
    info = json.loads((run / "run.json").read_text())
    assert (info["dataset"], info["model"], info["strategy"], info["seed"]) == ("synthetic", "small_cnn", "entropy", 0)
    assert info["knobs"]["trainer.epochs"] == 2 and info["knobs"]["budget.step"] == 50
    from al_bench.training import resolve_device

    assert {"torch", "al_bench"} <= set(info["versions"]) and info["device"] == str(resolve_device("auto"))
    assert info["derived"]["precision"] in ("fp32", "bf16") and info["derived"]["lr_schedule"] == "0.05 x1, 0.005 x1"
    metrics = read_metrics(run)
    assert [m["cycle"] for m in metrics] == [0, 1] and [m["n_labeled"] for m in metrics] == [50, 100]
    for m in metrics:
        assert {"test_acc", "test_loss", "train_time_s", "select_time_s"} <= set(m) and 0 <= m["test_acc"] <= 1
    lab0, lab1 = np.load(run / "labeled" / "cycle_00.npy"), np.load(run / "labeled" / "cycle_01.npy")
    assert lab0.dtype == np.int64 and len(lab0) == 50 and len(set(lab1)) == 100 and set(lab0) <= set(lab1)
    assert "cycle=1 n_labeled=100 test_acc=" in (run / "al-bench.log").read_text()


def test_same_seed_twice_gives_identical_metrics(tmp_path):
    cfg = load_cfg(SMOKE + ["strategy=coreset"])
    a, b = run_al(cfg, tmp_path / "a"), run_al(cfg, tmp_path / "b")
    strip = lambda ms: [{k: v for k, v in m.items() if not k.endswith("_time_s")} for m in ms]  # noqa: E731
    assert strip(a) == strip(b)
    for c in range(2):
        name = f"labeled/cycle_{c:02d}.npy"
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))


def test_initial_set_depends_only_on_dataset_and_seed(tmp_path):
    runs = {}
    for strategy in ("random", "entropy"):
        cfg = load_cfg(SMOKE + [f"strategy={strategy}", "budget.cycles=1"])
        run_al(cfg, tmp_path / strategy)
        runs[strategy] = np.load(tmp_path / strategy / "labeled" / "cycle_00.npy")
    assert np.array_equal(runs["random"], runs["entropy"])
    assert not np.array_equal(initial_labeled("synthetic", 512, 50, 0), initial_labeled("synthetic", 512, 50, 1))


def test_training_learns_the_synthetic_data(tmp_path):
    # 8x8 images: crop with 1 pixel of padding (4 would shift away half the image)
    cfg = load_cfg(SMOKE + ["trainer.epochs=10", "budget.cycles=1", "budget.initial=200", "trainer.crop_padding=1"])
    assert run_al(cfg, tmp_path)[0]["test_acc"] > 0.8  # 4 classes: chance is 0.25


@pytest.mark.parametrize("override, message", [
    (["budget.initial=600"], "pool has only 512"),
    (["budget.subset=10"], "smaller than budget.step"),
    (["trainer.device=tpu"], "trainer.device"),
])
def test_bad_budget_and_device_are_refused_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run_al((SMOKE + override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _assert_clear_error(res, run_dir, *needles):
    assert res.returncode != 0
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) <= 2, res.stderr  # one clear line (Hydra may add one hint line)
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr
    assert not Path(run_dir).exists()


@pytest.mark.parametrize("override, needle", [
    (["budget.initial=600"], "pool has only 512"),
    (["budget.subset=10"], "smaller than budget.step"),
    (["trainer.device=cuda:7"], "trainer.device=cuda:7 but"),  # no CUDA here, or fewer GPUs
    (["strategy=nonexistent"], "nonexistent"),
    (["trainer.epochz=3"], "epochz"),
])
def test_cli_bad_input_gives_one_clear_line(tmp_path, override, needle, cli_run):
    run_dir = tmp_path / "run"
    res = cli_run(SMOKE + override + [f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    _assert_clear_error(res, run_dir, needle)


def test_cli_missing_dataset_root_and_bad_image_folder(tmp_path, cli_run):
    run_dir = tmp_path / "run"
    base = ["dataset=imagefolder", "model=small_cnn", "trainer=fast", f"hydra.run.dir={run_dir}"]
    res = cli_run(base + [f"dataset.root={tmp_path / 'missing'}"], cwd=tmp_path)
    _assert_clear_error(res, run_dir, "does not exist")
    (tmp_path / "folder" / "train" / "a").mkdir(parents=True)
    res = cli_run(base + [f"dataset.root={tmp_path / 'folder'}"], cwd=tmp_path)
    _assert_clear_error(res, run_dir, "no test/ folder")


def test_cli_cifar10_absent_offline_says_how_to_use_a_copy(tmp_path, cli_run):
    run_dir = tmp_path / "run"
    res = cli_run([f"dataset.root={tmp_path / 'data'}", "dataset.download=false", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    _assert_clear_error(res, run_dir, "dataset.root", "dataset=imagefolder")
