"""Bad input through the CLI: one clear line on stderr, exit code 2, and not a byte changed in any
run directory (checksummed before and after). The cases run as concurrent subprocesses. Also: the
same run started while another process runs it is refused the same way, and in a sweep a job whose
loss turns NaN stops with FAILED while the other jobs finish."""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_al

BASE = ["dataset=synthetic", "model=small_cnn", "trainer=fast", "trainer.device=cpu", "trainer.progress=false",
        "budget=tiny", "budget.initial=32", "budget.step=32", "budget.cycles=2", "trainer.epochs=2",
        "trainer.milestones=[1]"]
KNOBS = "budget.cycles=2,budget.initial=32,budget.step=32,budget=tiny,trainer.epochs=2,trainer.milestones=[1],trainer=fast"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def al_bench() -> list[str]:
    script = Path(sys.executable).with_name("al-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "al_bench.cli"]


def checksums(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def corrupt_cases(runs: Path) -> dict[str, tuple[list[str], str]]:
    """Damaged copies of two real runs (cold and warm start) and the command that meets each:
    name -> (arguments, words the error line must hold)."""
    done, warm = runs / "done", runs / "warm"
    cases = {}

    d = runs / "truncated_metrics"  # a finished run whose metrics.jsonl lost its end
    shutil.copytree(done, d)
    text = (d / "metrics.jsonl").read_text()
    (d / "metrics.jsonl").write_text(text[: len(text.splitlines()[0]) + 30])
    cases["truncated_metrics"] = ([*BASE, f"hydra.run.dir={d}"], ["corrupt", "metrics.jsonl"])

    d = runs / "garbage_metrics"  # a damaged line followed by a good one
    shutil.copytree(done, d)
    lines = text.splitlines()
    (d / "metrics.jsonl").write_text(lines[0][:25] + "\n" + lines[1] + "\n")
    (d / "DONE").unlink()
    cases["garbage_metrics"] = ([*BASE, f"hydra.run.dir={d}"], ["corrupt", "metrics.jsonl unreadable"])

    d = runs / "garbage_checkpoint"  # warm start killed after cycle 0, then checkpoint.pt overwritten
    shutil.copytree(warm, d)
    (d / "DONE").unlink()
    (d / "metrics.jsonl").write_text((warm / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    (d / "checkpoint.pt").write_bytes(os.urandom(300))
    cases["garbage_checkpoint"] = ([*BASE, "trainer.warm_start=true", f"hydra.run.dir={d}"],
                                   ["corrupt", "checkpoint.pt"])

    d = runs / "unreadable_run_json"
    shutil.copytree(done, d)
    (d / "run.json").write_text('{"dataset": "synthetic", "knobs": {')
    cases["unreadable_run_json"] = ([*BASE, f"hydra.run.dir={d}"], ["corrupt", "run.json unreadable"])

    cases["other_config"] = ([*BASE, "trainer.epochs=3", f"hydra.run.dir={done}"],
                             ["different config", "trainer.epochs: 2 -> 3"])

    d = runs / "in_progress"  # a resumable run that another process is running right now (see outcomes)
    shutil.copytree(warm, d)
    (d / "DONE").unlink()
    (d / "metrics.jsonl").write_text((warm / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    cases["in_progress"] = ([*BASE, "trainer.warm_start=true", f"hydra.run.dir={d}"],
                            ["being run by another al-bench process"])
    return cases


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every bad command, run at the same time against one tree of run directories."""
    root = tmp_path_factory.mktemp("bad_input")
    runs = root / "runs"
    import torch

    from al_bench.rundir import RunDir

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several times faster than 2 threads on a busy 2-core machine
    try:
        run_al((BASE), runs / "done")
        run_al(([*BASE, "trainer.warm_start=true"]), runs / "warm")
    finally:
        torch.set_num_threads(threads)
    (root / "a_file").write_text("not a directory\n")
    cases = corrupt_cases(runs)
    cases.update({
        "unknown_option": (["dataset=nope"], ["Could not find 'dataset/nope'", "synthetic"]),
        "unknown_key": ([*BASE, "trainer.foo=1"], ["trainer.foo", "+trainer.foo=1"]),
        "missing_dataset_root": (["dataset=imagefolder", f"dataset.root={root}/no_such_dir", "model=small_cnn",
                                  "trainer.device=cpu", f"out_root={root}/new"], ["dataset.root", "does not exist"]),
        "unwritable_output": ([*BASE, f"out_root={root}/a_file/runs"], ["a_file", "Not a directory"]),
    })
    before = checksums(runs)
    head = al_bench()
    env = dict(os.environ, **ENV)
    env.pop("HYDRA_FULL_ERROR", None)
    t0 = time.perf_counter()
    with RunDir(runs / "in_progress").lock():  # as a running al-bench process holds it
        procs = {name: subprocess.Popen(head + args, cwd=root, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for name, (args, _) in cases.items()}
        results = {name: (*proc.communicate(timeout=240),) for name, proc in procs.items()}
        results = {name: (procs[name].returncode, out, err) for name, (out, err) in results.items()}
    print(f"{len(cases)} bad commands at once: {time.perf_counter() - t0:.1f} s wall")
    for name, (code, _, stderr) in results.items():
        print(f"  {name}: exit {code}: {stderr.strip()}")
    return root, cases, results, before, checksums(runs)


CASES = ["unknown_option", "unknown_key", "missing_dataset_root", "unwritable_output", "truncated_metrics",
         "garbage_metrics", "garbage_checkpoint", "unreadable_run_json", "other_config", "in_progress"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_damages_nothing(outcomes, case):
    root, cases, results, before, after = outcomes
    code, stdout, stderr = results[case]
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("al-bench: error: ")
    for words in cases[case][1]:
        assert words in lines[0]
    assert "Traceback" not in stdout + stderr
    assert after == before  # not a byte changed in any run directory, refused or not


def test_a_refused_run_leaves_no_directory(outcomes):
    root = outcomes[0]
    assert not (root / "new").exists() or not any((root / "new").rglob("*"))


@pytest.mark.slow
def test_failing_job_leaves_failed_and_the_sweep_goes_on(tmp_path):
    """The first job's loss becomes NaN (lr 1e30): it stops with TrainingDiverged, its run
    directory holds FAILED with the traceback, and the next job, in the same reused joblib
    worker, still finishes with DONE and a log of its own."""
    env = dict(os.environ, **ENV)
    env.pop("HYDRA_FULL_ERROR", None)
    t0 = time.perf_counter()
    sweep = subprocess.run(al_bench() + ["-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=1", *BASE,
                                         "trainer.lr=1e30,0.05", f"out_root={tmp_path}", "~hydra.callbacks.report"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    print(f"sweep with a failing job: {time.perf_counter() - t0:.1f} s wall")
    assert sweep.returncode == 1
    last = sweep.stderr.strip().splitlines()[-1]
    assert last.startswith("al-bench: error: a job of the sweep failed (TrainingDiverged: training loss is nan")
    base = tmp_path / "default" / "synthetic" / "small_cnn" / "random"
    bad = base / KNOBS.replace("trainer.milestones", "trainer.lr=1e+30,trainer.milestones") / "seed=0"
    good = base / KNOBS.replace("trainer.milestones", "trainer.lr=0.05,trainer.milestones") / "seed=0"
    failed = (bad / "FAILED").read_text()
    assert failed.startswith("Traceback (most recent call last):")
    assert "TrainingDiverged: training loss is nan" in failed and "lower trainer.lr" in failed
    assert not (bad / "DONE").exists() and not (bad / "metrics.jsonl").exists()
    assert "TrainingDiverged: training loss is nan" in (bad / "al-bench.log").read_text()
    assert (good / "DONE").exists() and not (good / "FAILED").exists()
    assert len((good / "metrics.jsonl").read_text().splitlines()) == 2
    good_log = (good / "al-bench.log").read_text()
    assert "cycle=1 n_labeled=64" in good_log and "nan" not in good_log
    assert "cycle=" not in (bad / "al-bench.log").read_text()  # no log handler leaked between the jobs
