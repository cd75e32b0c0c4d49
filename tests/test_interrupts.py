"""Interrupted runs and sweeps leave nothing behind: Ctrl-C and SIGTERM end a run with one line
saying it can be resumed, the workers of a killed parallel sweep die with it, temporary files of
a killed write are removed by the next run, and a full disk is named as such. Real processes
where the signal is the point; in-process otherwise."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMOKE, run_al

LONG = ["experiment=smoke", "trainer.epochs=250", "trainer.milestones=[200]", "budget.cycles=2"]
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def al_bench(args, cwd):
    script = Path(sys.executable).with_name("al-bench")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "al_bench.cli"]
    env = dict(os.environ, **ENV)
    env.pop("HYDRA_FULL_ERROR", None)
    # SIGINT as at a terminal: a process started in the background by a non-interactive shell (a CI script's
    # `cmd &`) inherits SIGINT ignored, and Python then keeps ignoring it, so Ctrl-C would never arrive
    return subprocess.Popen(head + list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, timeout=60.0, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_says_in_one_line_that_it_resumes(sig, tmp_path):
    run_dir = tmp_path / "run"
    proc = al_bench([*LONG, f"hydra.run.dir={run_dir}"], tmp_path)
    assert wait_for(lambda: (run_dir / "labeled" / "cycle_00.npy").exists())
    time.sleep(0.5)  # inside cycle 0's training
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert proc.returncode == 130, err
    assert lines == [f"al-bench: interrupted; finished cycles are kept: rerun the same command to resume ({run_dir})"]
    assert "Traceback" not in err
    assert not (run_dir / "FAILED").exists() and not (run_dir / "DONE").exists()


@pytest.mark.slow
def test_a_killed_parallel_sweep_takes_its_workers_with_it_and_reruns_cleanly(tmp_path):
    args = ["-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", *LONG, "seed=0,1",
            f"out_root={tmp_path}/runs"]
    proc = al_bench(args, tmp_path)
    runs = tmp_path / "runs" / "smoke" / "synthetic" / "small_cnn" / "random"
    assert wait_for(lambda: len(list(runs.glob("*/seed=*/labeled/cycle_00.npy"))) == 2)
    workers = [p for p in children_of(proc.pid) if "LokyProcess" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert wait_for(lambda: not any(alive(p) for p in workers), timeout=15), "joblib workers outlived their sweep"
    # the rerun finds no run "being run by another al-bench process" and finishes both
    rerun = al_bench(args, tmp_path)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert len(list(runs.glob("*/seed=*/DONE"))) == 2


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path):
    run_dir = tmp_path / "run"
    run_al(SMOKE + ["budget.cycles=1"], run_dir)
    (run_dir / "DONE").unlink()  # as if killed before the end
    leftovers = [run_dir / ".metrics.jsonl.abc123.tmp", run_dir / "labeled" / ".cycle_01.npy.x7.tmp",
                 run_dir / ".checkpoint.pt.q1.tmp"]
    for path in leftovers:
        path.write_bytes(b"\0" * 1000)
    run_al(SMOKE + ["budget.cycles=1"], run_dir)
    assert (run_dir / "DONE").exists()
    assert not any(p.exists() for p in leftovers)
    assert not list(run_dir.rglob("*.tmp"))


def test_a_full_disk_is_named_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import torch

    from al_bench import io

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(io.np, "save", no_space)
        with pytest.raises(io.DiskFull, match="no space left on the device holding .* while writing x.npy; "
                                              "free some space, then rerun the same command to resume"):
            io.atomic_save_npy(tmp_path / "x.npy", [1, 2])
    # torch.save reports a failed write as its own RuntimeError: counted as a full disk when the
    # device has (almost) no space left, and not otherwise
    def torch_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 439872 vs 439760")

    monkeypatch.setattr(torch, "save", torch_fails)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: type("U", (), {"free": 4096})())
    with pytest.raises(io.DiskFull, match="while writing checkpoint.pt"):
        io.atomic_torch_save(tmp_path / "checkpoint.pt", {"a": 1})
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: type("U", (), {"free": 2**40})())
    with pytest.raises(RuntimeError, match="unexpected pos") as err:
        io.atomic_torch_save(tmp_path / "checkpoint.pt", {"a": 1})
    assert not isinstance(err.value, io.DiskFull)
    assert list(tmp_path.iterdir()) == []  # no file and no temporary left


def test_a_full_disk_ends_the_cli_with_one_line(tmp_path, monkeypatch, capsys):
    from conftest import cli

    from al_bench import io

    def no_space(path, array):
        raise io._disk_full_error(Path(path))

    monkeypatch.setattr("al_bench.rundir.atomic_save_npy", no_space)
    monkeypatch.chdir(tmp_path)
    code, err = cli([*SMOKE, f"hydra.run.dir={tmp_path}/run"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("al-bench: error: no space left on the device holding") and "resume" in lines[0]
