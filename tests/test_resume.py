"""A run killed with SIGKILL in the middle of a cycle and rerun with the same command ends with the
same metrics and labeled sets, bit for bit on CPU, as a run that was never interrupted; a finished
run is skipped before any data is loaded; a warm-start run killed between its checkpoint and its
metrics line loses nothing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_al

# 3 cycles of 64 + 64 labels; 20 epochs make a cycle last a second or more on one CPU thread (about
# 0.6 s for cycle 0's 64 labels, 1.2 s for cycle 1's 128). Entropy selection depends on the
# trained model, so any difference in training shows in the next labeled set.
ARGS = ["dataset=synthetic", "model=small_cnn", "trainer=fast", "trainer.device=cpu", "trainer.progress=false",
        "budget=tiny", "budget.initial=64", "budget.step=64", "budget.cycles=3", "trainer.epochs=20",
        "trainer.milestones=[15]", "strategy=entropy"]
CYCLES = 3
# One thread in every process: the same float summation order in all of them.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def al_bench_command(args):
    script = Path(sys.executable).with_name("al-bench")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "al_bench.cli"]
    return head + list(args)


def start(args, log_path):
    env = dict(os.environ, **ENV)
    env.pop("HYDRA_FULL_ERROR", None)
    log = open(log_path, "w")
    return subprocess.Popen(al_bench_command(args), stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True), log


def finish(proc_log, timeout=240):
    proc, log = proc_log
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        log.close()
    return rc


def metrics_lines(run_dir: Path) -> list[str]:
    path = run_dir / "metrics.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def without_times(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_time_s")}
            for line in metrics_lines(run_dir)]


def assert_same_run(run: Path, reference: Path) -> None:
    assert (run / "DONE").exists() and not (run / "FAILED").exists()
    assert without_times(run) == without_times(reference)  # exact float equality
    assert len(without_times(run)) == CYCLES
    names = sorted(p.name for p in (reference / "labeled").glob("cycle_*.npy"))
    assert names == [f"cycle_{c:02d}.npy" for c in range(CYCLES)]
    assert sorted(p.name for p in (run / "labeled").glob("cycle_*.npy")) == names
    for name in names:
        got, want = np.load(run / "labeled" / name), np.load(reference / "labeled" / name)
        assert got.dtype == want.dtype == np.int64 and np.array_equal(got, want), name


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """Both warm-start settings at once: one uninterrupted multirun (the references) and two runs
    killed with SIGKILL during cycle 1, then rerun with their unchanged commands."""
    root = tmp_path_factory.mktemp("resume")
    t0 = time.perf_counter()
    reference = start(["-m", *ARGS, "trainer.warm_start=false,true", f"hydra.sweep.dir={root}/reference",
                       "~hydra.callbacks.report"], root / "reference.log")
    commands, victims, kills = {}, {}, {}
    for warm in ("false", "true"):
        commands[warm] = [*ARGS, f"trainer.warm_start={warm}", f"hydra.run.dir={root}/killed_{warm}"]
        victims[warm] = start(commands[warm], root / f"killed_{warm}.log")
    pending, kill_at = dict(victims), {}
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        for warm, (proc, _) in list(pending.items()):
            run_dir = root / f"killed_{warm}"
            lines = metrics_lines(run_dir)
            if warm not in kill_at and lines:
                # Cycle 0 is committed and cycle 1 (twice the labels) is training: kill it a third
                # of cycle 0's training time from now, well inside cycle 1 however fast the machine.
                kill_at[warm] = time.monotonic() + min(0.4, json.loads(lines[0])["train_time_s"] / 3)
            if warm in kill_at and time.monotonic() >= kill_at[warm]:
                os.killpg(proc.pid, signal.SIGKILL)
                kills[warm] = {"lines": len(metrics_lines(run_dir)), "done": (run_dir / "DONE").exists(),
                               "checkpoint": (run_dir / "checkpoint.pt").exists()}
                del pending[warm]
            elif proc.poll() is not None:
                pytest.fail(f"run ended before it could be killed:\n{(root / f'killed_{warm}.log').read_text()}")
        time.sleep(0.01)
    assert not pending, "no cycle finished in time"
    for warm in victims:
        assert finish(victims[warm]) == -signal.SIGKILL
    resumed = {warm: start(commands[warm], root / f"resumed_{warm}.log") for warm in commands}
    codes = {warm: finish(proc) for warm, proc in resumed.items()}
    ref_code = finish(reference)
    wall_s = time.perf_counter() - t0
    print(f"kill-and-resume, both warm-start settings: {wall_s:.1f} s wall; state at the kill: {kills}")
    return root, kills, codes, ref_code


@pytest.mark.slow
@pytest.mark.parametrize("warm", ["false", "true"])
def test_killed_run_resumes_to_the_uninterrupted_result(killed_and_resumed, warm):
    root, kills, codes, ref_code = killed_and_resumed
    assert ref_code == 0, (root / "reference.log").read_text()
    assert codes[warm] == 0, (root / f"resumed_{warm}.log").read_text()
    # The kill hit cycle 1 while it trained: cycle 0 committed, nothing of cycle 1 yet.
    assert kills[warm]["lines"] == 1 and not kills[warm]["done"]
    assert kills[warm]["checkpoint"] == (warm == "true")
    assert "resuming" in (root / f"resumed_{warm}.log").read_text()
    [reference] = (root / "reference").glob(f"synthetic/small_cnn/entropy/*trainer.warm_start={warm}*/seed=0")
    assert_same_run(root / f"killed_{warm}", reference)
    # metrics.jsonl never ends in a partial line
    assert (root / f"killed_{warm}" / "metrics.jsonl").read_bytes().endswith(b"\n")


@pytest.mark.slow
def test_done_run_is_skipped_before_loading_data(killed_and_resumed, monkeypatch):

    root = killed_and_resumed[0]
    run_dir = root / "killed_false"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    def no_data(*args, **kwargs):
        raise AssertionError("a finished run loaded its dataset")

    monkeypatch.setattr("al_bench.data.synthetic.synthetic", no_data)
    metrics = run_al(([*ARGS, "trainer.warm_start=false"]), run_dir)
    assert [m["cycle"] for m in metrics] == list(range(CYCLES))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_warm_start_killed_between_checkpoint_and_metrics_line(killed_and_resumed, tmp_path):
    """checkpoint.pt of cycle 1 is written, its metrics line is not (and a torn line is left
    behind): the rerun takes cycle 1's metrics from the checkpoint instead of retraining a model
    that already saw cycle 1, then trains cycle 2 as the uninterrupted run did."""

    root = killed_and_resumed[0]
    [reference] = (root / "reference").glob("synthetic/small_cnn/entropy/*trainer.warm_start=true*/seed=0")
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "DONE").unlink()
    lines = metrics_lines(reference)
    (run_dir / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:20])  # cycle 0 + a torn line
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["cycle"] == 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses that wrote the reference
    try:
        run_al(([*ARGS, "trainer.warm_start=true"]), run_dir)
    finally:
        torch.set_num_threads(threads)
    assert_same_run(run_dir, reference)
    # cycle 1's line is the recorded one, timings included: it was not recomputed
    assert json.loads(metrics_lines(run_dir)[1]) == json.loads(lines[1])
