"""Bad input never runs: the CLI called in-process on each bad input a new user might type must
exit with code 2 and one line on stderr that names the key (or file) and what is accepted, print
no traceback, and leave no new or changed file behind. One parametrised test per category."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import cli

SMOKE = ["experiment=smoke"]


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under root, with a checksum of each file's bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def refused(args, tmp_path, monkeypatch, capsys, *needles, workdir=None):
    """Run `al-bench ARGS` in tmp_path/work and check the refusal."""
    work = workdir or tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    args = ["-m", *[a for a in args if a != "-m"]] if "-m" in args else args  # Hydra's flags come first
    code, err = cli(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("al-bench: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert tree(tmp_path) == before, "refused input left files behind"
    return lines[0]


TYPES = [
    (["seed=1.5"], ["seed=1.5", "integer"]),
    (["trainer.warm_start=no"], ["trainer.warm_start='no'", "true or false"]),
    (["budget.initial=abc"], ["budget.initial='abc'", "integer"]),
    (["budget.cycles=2.5"], ["budget.cycles=2.5", "integer"]),
    (["trainer.milestones=5"], ["trainer.milestones=5", "a list"]),
    (["trainer.lr=nan"], ["trainer.lr=nan", "finite number"]),
    (["trainer.lr=fast"], ["trainer.lr='fast'", "finite number"]),
    (["model.dropout=[0.5]"], ["model.dropout", "finite number"]),
    (["-m", "seed=0,1.5"], ["seed=1.5", "integer"]),  # a sweep is checked job by job before it starts
]


@pytest.mark.parametrize("args, needles", TYPES, ids=[" ".join(a) for a, _ in TYPES])
def test_wrong_types_are_refused(args, needles, tmp_path, monkeypatch, capsys):
    refused(SMOKE + [f"out_root={tmp_path}/runs", *args], tmp_path, monkeypatch, capsys, *needles)


RANGES = [
    (["trainer.epochs=0"], ["trainer.epochs=0", ">= 1"]),
    (["trainer.epochs=-1"], ["trainer.epochs=-1", ">= 1"]),
    (["seed=-1"], ["seed=-1", ">= 0"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", ">= 1"]),
    (["trainer.eval_batch_size=0"], ["trainer.eval_batch_size=0", ">= 1"]),
    (["trainer.lr=-0.1"], ["trainer.lr=-0.1", "> 0"]),
    (["trainer.threads=-1"], ["trainer.threads=-1", ">= 1"]),
    (["trainer.crop_padding=-1"], ["trainer.crop_padding=-1", ">= 0"]),
    (["trainer.momentum=1.0"], ["trainer.momentum=1.0", "< 1"]),
    (["model.width=0"], ["model.width=0", ">= 1"]),
    (["model.dropout=1.5"], ["model.dropout=1.5", "< 1"]),
    (["budget.step=0"], ["budget.step=0", ">= 1"]),
    (["budget.subset=10"], ["budget.subset=10", "budget.step=50"]),  # across fields
    (["budget.initial=600"], ["pool has only 512"]),  # budget vs the dataset
    (["trainer.milestones=[5]"], ["trainer.milestones=[5]", "trainer.epochs=2"]),  # across fields
    (["strategy=lloss", "strategy.detach_epoch=5"], ["strategy.detach_epoch=5", "trainer.epochs=2"]),  # across groups
    (["strategy=lloss", "strategy.detach_at=1.5"], ["strategy.detach_at=1.5", "<= 1"]),
    (["strategy=bald"], ["model.dropout"]),  # an MC-dropout strategy on a model without dropout
    (["dataset.n_train=0"], ["dataset.n_train=0", ">= 1"]),
]


@pytest.mark.parametrize("args, needles", RANGES, ids=[" ".join(a) for a, _ in RANGES])
def test_values_out_of_range_are_refused(args, needles, tmp_path, monkeypatch, capsys):
    refused(SMOKE + [f"out_root={tmp_path}/runs", *args], tmp_path, monkeypatch, capsys, *needles)


ENUMS = [
    (["trainer.precision=fp8"], ["trainer.precision='fp8'", "auto, fp32, bf16, fp16"]),
    (["trainer.sched_step=foo"], ["trainer.sched_step='foo'", "epoch_end, epoch_start"]),
    (["trainer.device=tpu"], ["trainer.device='tpu'", "cuda:N"]),
    (["trainer.channels_last=maybe"], ["trainer.channels_last='maybe'", "auto"]),
    (["trainer.compile=fast"], ["trainer.compile='fast'", "reduce-overhead"]),
    (["strategy=lloss", "strategy.pairing=diagonal"], ["strategy.pairing='diagonal'", "halves, mirror"]),
    (["dataset.channels=2"], ["dataset.channels=2", "one of 1, 3"]),
    (["strategy=nope"], ["strategy/nope", "random"]),
    (["-m", "strategy=random,nope"], ["strategy/nope"]),
]


@pytest.mark.parametrize("args, needles", ENUMS, ids=[" ".join(a) for a, _ in ENUMS])
def test_values_outside_an_enumeration_are_refused(args, needles, tmp_path, monkeypatch, capsys):
    refused(SMOKE + [f"out_root={tmp_path}/runs", *args], tmp_path, monkeypatch, capsys, *needles)


UNKNOWN = [
    (["+strategy.detach_epoc=7"], ["strategy.detach_epoc=7", "strategy=random"]),
    (["strategy=lloss", "+strategy.detach_epoc=7"], ["strategy.detach_epoc=7", "detach_epoch"]),
    (["+trainer.foo=1"], ["trainer.foo=1", "epochs"]),
    (["trainer.epochz=3"], ["trainer.epochz"]),
    (["+foo=1"], ["foo=1", "top-level"]),
    (["-m", "strategy=random,lloss", "+strategy.detach_epoc=5"], ["strategy.detach_epoc=5"]),
]


@pytest.mark.parametrize("args, needles", UNKNOWN, ids=[" ".join(a) for a, _ in UNKNOWN])
def test_unknown_keys_are_refused(args, needles, tmp_path, monkeypatch, capsys):
    refused(SMOKE + [f"out_root={tmp_path}/runs", *args], tmp_path, monkeypatch, capsys, *needles)


def test_a_presets_option_for_another_strategy_is_not_an_unknown_key(tmp_path, monkeypatch, capsys):
    """experiment=ll4al_reference_impl sets lloss's detach_rule: with strategy=random it runs (the
    option is dropped and recorded), it is not refused."""
    import json

    monkeypatch.chdir(tmp_path)
    code, _ = cli(["experiment=ll4al_reference_impl", "strategy=random", "dataset=synthetic", "model=small_cnn",
                   "budget=tiny", "budget.cycles=1", "trainer.epochs=1", "trainer.milestones=[]",
                   "trainer.progress=false", f"hydra.run.dir={tmp_path}/run"], capsys)
    assert code == 0
    ignored = json.loads((tmp_path / "run" / "run.json").read_text())["derived"]["ignored_options"]
    assert ignored == {"strategy.detach_rule": "gt", "strategy.pairing": "mirror", "strategy.odd_batch": "error"}


def test_paths_are_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("not a folder\n")
    cases = [
        (["out_root="], ["out_root is empty"]),
        (["name="], ["name is empty"]),
        ([f"out_root={tmp_path}/a_file/runs"], ["a_file", "Not a directory"]),
        (["dataset=imagefolder"], ["dataset.root is required"]),
        (["dataset=imagefolder", f"dataset.root={tmp_path}/no_such_dir"], ["dataset.root=", "does not exist"]),
        (["dataset=cifar10", f"dataset.root={tmp_path}/nowhere", "dataset.download=false"],
         ["dataset.root", "dataset=imagefolder"]),
    ]
    for args, needles in cases:
        out = [] if any(a.startswith("out_root=") for a in args) else [f"out_root={tmp_path}/runs"]
        refused(SMOKE + out + args, tmp_path, monkeypatch, capsys, *needles)


def image_folder(root: Path, bad: dict[str, bytes] | None = None, empty_class: bool = False) -> Path:
    """A 2-class 8x8 PNG folder (+ an empty class folder, + bad files as {relative path: bytes})."""
    import numpy as np
    from PIL import Image

    for split, n in (("train", 6), ("test", 2)):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(root / split / cls / f"{i}.png")
    if empty_class:
        (root / "train" / "c").mkdir()
    for rel, data in (bad or {}).items():
        (root / rel).write_bytes(data)
    return root


def jpeg_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


IMAGES = {
    "zero_byte": ({"train/a/bad.png": b""}, False, ["train/a/bad.png", "remove or replace"]),
    "not_an_image": ({"train/b/bad.jpg": b"this is text, not a JPEG"}, False, ["train/b/bad.jpg", "remove or replace"]),
    "truncated": ({"test/a/cut.jpg": jpeg_bytes()[:300]}, False, ["test/a/cut.jpg", "remove or replace"]),
    "empty_class": ({}, True, ["train/c holds no images", "dataset.allow_empty_classes=true"]),
}


@pytest.mark.parametrize("case", IMAGES)
def test_bad_image_folders_are_refused_naming_the_file(case, tmp_path, monkeypatch, capsys):
    bad, empty, needles = IMAGES[case]
    root = image_folder(tmp_path / "data", bad, empty)
    refused(["dataset=imagefolder", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/cache", "model=small_cnn",
             "budget=tiny", "budget.initial=2", "budget.step=2", "budget.cycles=2", "trainer=fast",
             "trainer.epochs=1", "trainer.milestones=[]", f"out_root={tmp_path}/runs"],
            tmp_path, monkeypatch, capsys, *needles)


def test_an_empty_class_folder_is_accepted_when_asked(tmp_path, monkeypatch, capsys):
    from al_bench.data.imagefolder import imagefolder

    pool = imagefolder(str(image_folder(tmp_path / "data", empty_class=True)), cache_dir=str(tmp_path / "cache"),
                       allow_empty_classes=True)
    assert pool.num_classes == 3 and set(pool.train_y.tolist()) == {0, 1}


REFERENCE_OK = "# source\nn_labeled,random,lloss\n1000,51.0,51.3\n2000,61.9,65.1\n"
REPORT = {
    "ragged_row": ("n_labeled,random,lloss\n1000,51.0\n2000,61.9,65.1\n", None, ["2 fields", "has 3"]),
    "extra_field": ("n_labeled,random\n1000,51.0,3\n", None, ["3 fields", "has 2"]),
    "not_numbers": ("n_labeled,random\n1000,abc\n", None, ["not a number"]),
    "fraction_not_percent": ("n_labeled,random\n1000,51\n2000,250\n", None, ["percentages"]),
    "no_header": ("1000,51.0\n", None, ["header n_labeled"]),
    "out_is_a_file": (REFERENCE_OK, "file", ["is a file"]),
    "out_under_a_file": (REFERENCE_OK, "under_file", ["not a writable folder"]),
}


@pytest.mark.parametrize("case", REPORT)
def test_bad_reporter_inputs_are_refused(case, tmp_path, capsys):
    from al_bench.report.cli import main as report

    text, out_kind, needles = REPORT[case]
    runs = tmp_path / "runs" / "r"
    runs.mkdir(parents=True)
    (runs / "metrics.jsonl").write_text('{"cycle": 0, "n_labeled": 10, "test_acc": 0.5}\n')
    (runs / "run.json").write_text('{"dataset": "d", "model": "m", "strategy": "random", "seed": 0, '
                                   '"budget": {"initial": 10, "step": 10, "cycles": 1, "subset": null}}')
    (tmp_path / "ref.csv").write_text(text)
    out = tmp_path / "report"
    if out_kind == "file":
        out.write_text("x")
    elif out_kind == "under_file":  # (a read-only folder would not stop root, who runs CI)
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "report"
    before = tree(tmp_path)
    code = report([str(tmp_path / "runs"), "--reference", str(tmp_path / "ref.csv"), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert tree(tmp_path) == before


def test_a_finished_run_with_a_missing_middle_cycle_is_reported(tmp_path, capsys):
    from al_bench.report.collect import collect

    run = tmp_path / "r"
    run.mkdir()
    (run / "DONE").write_text("")
    (run / "metrics.jsonl").write_text("".join(f'{{"cycle": {c}, "n_labeled": {10 * (c + 1)}, "test_acc": 0.5}}\n'
                                               for c in (0, 1, 3)))
    problems = collect([tmp_path]).problems
    assert any("cycle(s) 2 missing" in p for p in problems), problems
