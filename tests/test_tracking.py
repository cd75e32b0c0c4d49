"""Experiment trackers (logger=...): config validation, a missing extra, and real runs whose logs
are read back with each tracker's own reader (csv, TensorBoard's EventAccumulator, MLflow's
client, W&B's offline run file)."""

import csv
import glob
import importlib.util
import json
import math
import os
import struct
from pathlib import Path

import pytest
from conftest import SMOKE, load_cfg, make_cfg, read_metrics, run_al

from al_bench import ConfigError
from al_bench.cli import knob_dir
from al_bench.training.settings import lr_at_epoch

CONF = Path(__file__).resolve().parents[1] / "conf"
# learning loss: the plugin's epoch means (epoch logs) and lpl_rank_acc (a strategy's cycle metric)
LLOSS = [*SMOKE, "strategy=lloss"]


def scalar_metrics(run_dir):
    """Per cycle, the metrics.jsonl numbers a tracker logs (lists and the cycle index left out)."""
    return [{k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "cycle"}
            for m in read_metrics(run_dir)]


def test_every_logger_option_loads_and_none_is_the_default():
    assert sorted(p.stem for p in (CONF / "logger").glob("*.yaml")) == ["csv", "mlflow", "none", "tensorboard", "wandb"]
    assert make_cfg().logger.name == "none"
    for option in ("none", "csv"):
        cfg = load_cfg([*SMOKE, f"logger={option}"])
        assert cfg.logger.name == option
        assert not any(k.startswith("logger") for k in cfg.knobs)  # a tracker is no knob: resume and report ignore it
        assert cfg.record["logger"]["name"] == option  # but run.json's config records it


def test_logger_options_are_checked_like_every_group():
    with pytest.raises(ConfigError, match=r"logger.flush_secs=0 is not accepted: expected an integer >= 1"):
        load_cfg([*SMOKE, "logger=tensorboard", "logger.flush_secs=0"])
    with pytest.raises(ConfigError, match=r"logger.mode='cloud' is not accepted: expected one of offline, online"):
        load_cfg([*SMOKE, "logger=wandb", "logger.mode=cloud"])
    with pytest.raises(ConfigError, match=r"unknown option logger.folder='x' for logger=none; it takes no options"):
        load_cfg([*SMOKE, "+logger.folder=x"])


def test_a_logger_never_names_a_directory_level():
    from omegaconf import OmegaConf

    excluded = list(OmegaConf.load(CONF / "config.yaml").hydra.job.config.override_dirname.exclude_keys)
    assert knob_dir(["logger=wandb", "logger.mode=online", "trainer.epochs=3"], excluded) == "trainer.epochs=3/"
    # `dataset` is excluded but `dataset.seed` stays a knob: only keys ending in `.*` exclude a subtree
    assert knob_dir(["dataset.seed=3"], ["dataset", "logger.*"]) == "dataset.seed=3/"


@pytest.mark.parametrize("option,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_extra_is_a_one_line_config_error_before_anything_is_written(option, module, monkeypatch, tmp_path,
                                                                               cli_run):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(ConfigError) as info:
        load_cfg([*SMOKE, f"logger={option}"])
    assert str(info.value) == (f"logger={option} needs the {module} package, which is not installed; install it with: "
                               f"pip install \"al-bench[{option}]\" (or choose another logger=...)")
    result = cli_run([*SMOKE, f"logger={option}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 2
    assert f'pip install "al-bench[{option}]"' in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_csv_logger_logs_config_epochs_and_cycles(tmp_path):
    cfg = load_cfg([*LLOSS, "logger=csv"])
    run_al(cfg, tmp_path)
    folder = tmp_path / "tracking"
    epochs = list(csv.DictReader((folder / "epochs.csv").open()))
    cycles = list(csv.DictReader((folder / "cycles.csv").open()))
    t = cfg.trainer
    for cycle in range(cfg.budget.cycles):
        for epoch in range(t.epochs):
            rows = {r["name"]: float(r["value"]) for r in epochs if (int(r["cycle"]), int(r["epoch"])) == (cycle, epoch)}
            assert rows["lr"] == lr_at_epoch(epoch, t.lr, t.milestones, t.gamma, t.sched_step)
            assert {"train_loss", "lr"} < set(rows)  # and the loss-prediction plugin's epoch means
        last = {r["name"]: float(r["value"]) for r in epochs if (int(r["cycle"]), int(r["epoch"])) == (cycle, t.epochs - 1)}
        logged = {r["name"]: float(r["value"]) for r in cycles if int(r["cycle"]) == cycle}
        expected = scalar_metrics(tmp_path)[cycle]
        assert logged == pytest.approx(expected, rel=0, abs=0)  # every metrics.jsonl number, exactly (repr round trip)
        assert "lpl_rank_acc" in logged and logged["n_labeled"] == cfg.budget.n_labeled(cycle)
        assert last["train_loss"] == expected["train_loss"]
    config = json.loads((folder / "config.json").read_text())
    assert config == json.loads((tmp_path / "run.json").read_text())["config"]


def test_tensorboard_logs_read_back_with_tensorboards_reader_and_change_nothing(tmp_path):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_cfg([*LLOSS, "logger=tensorboard"])
    run_al(cfg, tmp_path / "tb")
    run_al([*LLOSS, "logger=none"], tmp_path / "plain")
    strip = lambda ms: [{k: v for k, v in m.items() if not k.endswith("time_s")} for m in ms]
    assert strip(read_metrics(tmp_path / "tb")) == strip(read_metrics(tmp_path / "plain"))  # bit for bit

    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    t, cycles = cfg.trainer, cfg.budget.cycles
    lr = events.Scalars("epoch/lr")
    assert [e.step for e in lr] == list(range(cycles * t.epochs))
    assert [e.value for e in lr] == pytest.approx(
        [lr_at_epoch(s % t.epochs, t.lr, t.milestones, t.gamma, t.sched_step) for s in range(cycles * t.epochs)], rel=1e-6)
    assert len(events.Scalars("epoch/train_loss")) == cycles * t.epochs
    expected = scalar_metrics(tmp_path / "tb")
    for key in ("test_acc", "test_loss", "n_labeled", "train_time_s", "select_time_s", "lpl_rank_acc"):
        got = events.Scalars(f"cycle/{key}")
        assert [e.step for e in got] == list(range(cycles))
        assert [e.value for e in got] == pytest.approx([m[key] for m in expected], rel=1e-6)  # float32 in the file
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in tags["tensors"]}
    assert texts["run_dir/text_summary"] == str(tmp_path / "tb")
    assert '"strategy": {' in texts["config/text_summary"]


def test_mlflow_logs_into_a_local_store(tmp_path):
    pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
    pytest.importorskip("sqlalchemy", reason="the [mlflow] extra (sqlalchemy for the local SQLite store) is not installed")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_cfg([*SMOKE, "logger=mlflow", f"logger.tracking_uri={uri}"])
    run_al(cfg, tmp_path / "run")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == str(tmp_path / "run") and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["trainer.epochs"] == str(cfg.trainer.epochs) and run.data.params["strategy.name"] == "random"
    expected = scalar_metrics(tmp_path / "run")
    acc = client.get_metric_history(run.info.run_id, "cycle/test_acc")
    assert sorted((m.step, m.value) for m in acc) == [(c, m["test_acc"]) for c, m in enumerate(expected)]
    n = client.get_metric_history(run.info.run_id, "cycle/n_labeled")
    assert sorted((m.step, m.value) for m in n) == [(c, m["n_labeled"]) for c, m in enumerate(expected)]
    assert len(client.get_metric_history(run.info.run_id, "epoch/lr")) == cfg.budget.cycles * cfg.trainer.epochs


def wandb_records(path):
    """The protobuf records of a W&B run file (a LevelDB-style log: 7-byte header, 32 KiB blocks of
    chunks with a 7-byte header: crc32c, length, type full/first/middle/last); W&B's SDK ships no reader."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunks, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


@pytest.mark.skipif(not os.environ.get("AL_BENCH_TEST_WANDB"),
                    reason="wandb's offline run file differs from run to run (0.31: a record is sometimes missing, so "
                           "this read-back failed about 1 time in 8 here); set AL_BENCH_TEST_WANDB=1 to run it")
def test_wandb_is_offline_by_default_and_logs_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the [wandb] extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_cfg([*SMOKE, "logger=wandb"])
    assert cfg.logger.params["mode"] == "offline"
    run_al(cfg, tmp_path)
    files = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1  # offline: written here for a later `wandb sync`, nothing sent
    history, config, names = [], {}, set()
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({i.key: json.loads(i.value_json) for i in items})
            names |= {record.run.display_name} if kind == "run" and record.run.display_name else set()
    # The run record carries the run's name in most runs; in about 1 of 8 (wandb 0.31, offline)
    # no record of the file holds a display name at all, so only a name that is there is checked.
    assert names <= {str(tmp_path)}
    history.sort(key=lambda h: h["_step"])
    assert config["trainer"]["epochs"] == cfg.trainer.epochs and config["logger"]["mode"] == "offline"
    per_cycle = [h for h in history if "cycle/cycle" in h]
    expected = scalar_metrics(tmp_path)
    assert [h["cycle/cycle"] for h in per_cycle] == list(range(cfg.budget.cycles))
    assert [h["cycle/test_acc"] for h in per_cycle] == [m["test_acc"] for m in expected]
    assert [h["cycle/n_labeled"] for h in per_cycle] == [m["n_labeled"] for m in expected]
    lrs = [h["epoch/lr"] for h in history if "epoch/lr" in h]
    assert len(lrs) == cfg.budget.cycles * cfg.trainer.epochs and all(math.isfinite(v) for v in lrs)
