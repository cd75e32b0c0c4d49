"""Tests of the reporter on fabricated run directories whose right answers are computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from al_bench.report import aggregate, pairwise
from al_bench.report.cli import main
from al_bench.report.collect import collect, load_runs, read_reference
from al_bench.report.knobs import differing_knobs

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "ll4al_cifar10_fig4.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, name: str, strategy: str, seed: int, accs: list[float], *, dataset: str = "cifar10",
             initial: int = 100, step: int = 100, subset: int | None = 1000, knobs: dict | None = None,
             done: bool = True, failed: bool = False, run_json: bool = True) -> Path:
    """A run directory as the runner writes it; cycle c has n_labeled = initial + c * step."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    if run_json:
        all_knobs = {"dataset.name": dataset, "dataset.root": f"/data/{seed}", "strategy.name": strategy,
                     "seed": seed, "trainer.epochs": 200, "trainer.device": f"cuda:{seed}",
                     "out_root": f"/runs/{seed}", "hydra.job.num": seed, **(knobs or {})}
        (run_dir / "run.json").write_text(json.dumps({
            "dataset": dataset, "model": "resnet18", "strategy": strategy, "seed": seed,
            "budget": {"initial": initial, "step": step, "cycles": len(accs), "subset": subset},
            "knobs": all_knobs, "device": "cpu"}))
    lines = [{"cycle": c, "n_labeled": initial + c * step, "test_acc": acc, "test_loss": 1.0,
              "lpl_rank_acc": 0.7, "train_time_s": 2.0, "select_time_s": 0.5} for c, acc in enumerate(accs)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if done:
        (run_dir / "DONE").write_text("2026-01-01T00:00:00+00:00\n")
    if failed:
        (run_dir / "FAILED").write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    return run_dir


def report_of(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(annotated runs, summary, AUBC per run) of everything under ``root``."""
    collection = collect([root])
    annotated = aggregate.annotate(collection.runs, collection.knob_columns)
    return annotated, aggregate.summarize(annotated, collection.knob_columns), aggregate.aubc_per_run(annotated)


def cell(summary: pd.DataFrame, row: str, n_labeled: int) -> pd.Series:
    """The one summary line of a row at a budget."""
    found = summary[(summary.row == row) & (summary.n_labeled == n_labeled)]
    assert len(found) == 1, found
    return found.iloc[0]


# --- statistics -------------------------------------------------------------------------------

def test_mean_sample_std_and_seed_count(tmp_path):
    for seed, accs in enumerate([[0.50, 0.60], [0.52, 0.61], [0.54]]):  # seed 2 stopped after cycle 0
        make_run(tmp_path, f"random/{seed}", "random", seed, accs, done=seed < 2)
    _, summary, _ = report_of(tmp_path)
    first = cell(summary, "random", 100)
    # (50 + 52 + 54) / 3 = 52; deviations -2, 0, 2 -> sample variance 8 / (3 - 1) = 4 -> std 2.0
    # (the population std would be 1.63)
    assert first.test_acc_mean_pct == pytest.approx(52.0)
    assert first.test_acc_std_pct == pytest.approx(2.0)
    assert first.n_seeds == 3
    second = cell(summary, "random", 200)  # 60 and 61: mean 60.5, std |61 - 60| / sqrt(2)
    assert second.test_acc_mean_pct == pytest.approx(60.5)
    assert second.test_acc_std_pct == pytest.approx(1 / math.sqrt(2))
    assert second.n_seeds == 2


def test_fixed_row_order_cells_and_missing_x(tmp_path):
    for strategy in ("zeta", "lloss", "lloss_mse", "alpha", "entropy", "margin", "coreset"):
        make_run(tmp_path, strategy, strategy, 0, [0.5, 0.6])
    for seed, acc in enumerate([0.50, 0.52, 0.54]):
        make_run(tmp_path, f"random/{seed}", "random", seed, [acc, 0.6])
    make_run(tmp_path, "least_confidence", "least_confidence", 0, [0.5], done=False)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "summary.md").read_text()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert rows == ["random", "entropy", "least_confidence", "margin", "coreset", "lloss", "lloss_mse", "alpha", "zeta"]
    random_line = next(line for line in markdown.splitlines() if line.startswith("| random |"))
    assert random_line.split(" | ")[1] == "52.0 ± 2.0 (3)"
    least_line = next(line for line in markdown.splitlines() if line.startswith("| least_confidence |"))
    assert least_line.split(" | ")[1:3] == ["50.0 (1)", "X"]
    assert "ddof=1" in markdown
    latex = (tmp_path / "out" / "summary.tex").read_text()
    assert r"lloss\_mse & 50.0 (1) & 60.0 (1)" in latex and r"52.0 $\pm$ 2.0 (3)" in latex


def test_area_under_budget_curve_by_hand():
    # trapezoids: 100 * (0.5 + 0.6) / 2 + 100 * (0.6 + 0.9) / 2 = 130; divided by 300 - 100
    assert aggregate.area_under_budget_curve([100, 200, 300], [0.5, 0.6, 0.9]) == pytest.approx(0.65)
    assert aggregate.area_under_budget_curve([300, 100, 200], [0.9, 0.5, 0.6]) == pytest.approx(0.65)
    assert math.isnan(aggregate.area_under_budget_curve([100], [0.5]))


def test_aubc_uses_the_budgets_every_row_reached(tmp_path):
    make_run(tmp_path, "random/0", "random", 0, [0.5, 0.6, 0.9])
    make_run(tmp_path, "random/1", "random", 1, [0.5, 0.7, 0.9])
    make_run(tmp_path, "entropy/0", "entropy", 0, [0.5, 0.6], done=False)  # stops at 200
    _, _, per_run = report_of(tmp_path)
    aubc = per_run.set_index("run_dir")["aubc"]
    # common grid is 100..200: seed 0 -> (0.5 + 0.6) / 2, seed 1 -> (0.5 + 0.7) / 2
    assert aubc[str((tmp_path / "random/0").resolve())] == pytest.approx(0.55)
    assert aubc[str((tmp_path / "random/1").resolve())] == pytest.approx(0.60)
    per_row = aggregate.aubc_per_row(per_run).set_index("row")
    assert per_row.loc["random", "aubc_mean"] == pytest.approx(0.575)
    assert per_row.loc["random", "aubc_std"] == pytest.approx(0.05 / math.sqrt(2))
    assert per_row.loc["random", "final_test_acc_mean"] == pytest.approx(0.65)  # at 200: 0.6 and 0.7
    assert per_row.loc["random", "n_seeds"] == 2


def test_aubc_over_full_grid(tmp_path):
    make_run(tmp_path, "random/0", "random", 0, [0.5, 0.6, 0.9])
    make_run(tmp_path, "random/1", "random", 1, [0.5, 0.7, 0.9])
    _, _, per_run = report_of(tmp_path)
    per_row = aggregate.aubc_per_row(per_run).set_index("row")
    # seed 0: 0.65 (see above); seed 1: (100 * 0.6 + 100 * 0.8) / 200 = 0.70
    assert per_row.loc["random", "aubc_mean"] == pytest.approx(0.675)
    assert per_row.loc["random", "aubc_std"] == pytest.approx(0.05 / math.sqrt(2))


# --- pairwise penalty matrix ------------------------------------------------------------------

def test_beats_edge_cases():
    assert pairwise.beats([0.5, 0.6], [0.5, 0.6]) is False  # identical: a tie, not a win
    assert pairwise.beats([0.6, 0.7], [0.5, 0.6]) is True  # equal non-zero differences: t is infinite
    assert pairwise.beats([0.5, 0.6], [0.6, 0.7]) is False
    assert pairwise.beats([0.6, 0.7], [0.5, float("nan")]) is None  # one pair left: not evaluated
    assert pairwise.beats([0.60, 0.70, 0.81], [0.50, 0.60, 0.70]) is True  # t = 0.1033 / (0.0058 / sqrt(3)) = 31


BASE = [0.50, 0.60, 0.70, 0.80]  # random's accuracy for seeds 0..3 at every budget
LLOSS_MINUS_RANDOM = {
    100: [0.0, 0.0, 0.0, 0.0],  # equal: no winner
    # mean 0.01, sd sqrt((0 + 2e-3**2 * 2 + 0) / 3) = 0.001633, t = 0.01 / (0.001633 / 2) = 12.2 > 3.182
    # (t_0.975 with 3 df): lloss wins. Unpaired, 1 point against a 13-point spread would not be.
    200: [0.010, 0.012, 0.008, 0.010],
    # mean 0.0025, sd 0.02217, t = 0.23: no winner
    300: [0.03, -0.02, 0.01, -0.01],
    # mean -0.04, sd 0.008165, t = -9.8: random wins
    400: [-0.04, -0.05, -0.03, -0.04],
}


def penalty_sweep(root: Path) -> None:
    """random and lloss on 4 seeds, entropy on 2 seeds for 2 budgets, gt_loss on one seed."""
    for seed in range(4):
        make_run(root, f"random/{seed}", "random", seed, [BASE[seed]] * 4)
        make_run(root, f"lloss/{seed}", "lloss", seed,
                 [BASE[seed] + LLOSS_MINUS_RANDOM[n][seed] for n in (100, 200, 300, 400)])
    # entropy - random: 100 -> [0.1, 0.1] (no variance, non-zero: entropy wins);
    # 200 -> [-0.01, -0.03]: mean -0.02, sd 0.01414, t = -2.0, |t| < 12.71 (1 df): no winner
    make_run(root, "entropy/0", "entropy", 0, [0.60, 0.49], done=False)
    make_run(root, "entropy/1", "entropy", 1, [0.70, 0.57], done=False)
    make_run(root, "gt_loss/0", "gt_loss", 0, [0.9, 0.9, 0.9, 0.9])


def test_penalty_matrix_by_hand(tmp_path):
    penalty_sweep(tmp_path)
    annotated, _, _ = report_of(tmp_path)
    rows = list(dict.fromkeys(annotated.row))
    assert rows == ["random", "entropy", "lloss", "gt_loss"]
    pairs = pairwise.penalty_matrix(annotated, rows).set_index(["row", "column"])
    assert pairs.loc[("lloss", "random"), ["wins", "n_budgets"]].tolist() == [1, 4]
    assert pairs.loc[("lloss", "random"), "penalty"] == pytest.approx(0.25)
    assert pairs.loc[("random", "lloss"), "penalty"] == pytest.approx(0.25)
    assert pairs.loc[("entropy", "random"), ["wins", "n_budgets"]].tolist() == [1, 2]
    assert pairs.loc[("entropy", "random"), "penalty"] == pytest.approx(0.5)
    assert pairs.loc[("random", "entropy"), "penalty"] == 0.0
    # entropy - lloss at 100: [0.1, 0.1] -> entropy wins; at 200: [-0.020, -0.042]: mean -0.031,
    # sd 0.01556, t = -2.8, |t| < 12.71: no winner
    assert pairs.loc[("entropy", "lloss"), "penalty"] == pytest.approx(0.5)
    assert pairs.loc[("lloss", "entropy"), "penalty"] == 0.0
    assert pairs.loc[("gt_loss", "random"), "n_budgets"] == 0  # one seed: nothing to test
    assert math.isnan(pairs.loc[("gt_loss", "random"), "penalty"])
    matrix = pairwise.as_matrix(pairs.reset_index(), rows)
    assert math.isnan(matrix.loc["random", "random"])
    # column random: lloss 0.25, entropy 0.5, gt_loss not evaluated
    assert pairwise.column_mean(matrix)["random"] == pytest.approx(0.375)


def test_pairwise_csv_and_heatmap(tmp_path):
    penalty_sweep(tmp_path / "sweep")
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    pairs = pd.read_csv(tmp_path / "out" / "pairwise.csv")
    assert set(pairs.dataset) == {"cifar10"}
    lloss_random = pairs[(pairs.row == "lloss") & (pairs.column == "random")].iloc[0]
    assert lloss_random.penalty == pytest.approx(0.25) and lloss_random.n_budgets == 4
    assert (tmp_path / "out" / "pairwise.png").read_bytes().startswith(PNG_MAGIC)


# --- grouping ---------------------------------------------------------------------------------

def test_differing_knobs_rules():
    cell = {s: ("cifar10", "resnet18", s) for s in ("random", "lloss", "coreset")}
    runs = [
        (cell["random"], {"seed": 0, "dataset.root": "/a", "trainer.device": "cuda:0", "trainer.progress": True,
                          "hydra.job.num": 0, "out_root": "x", "dataset.cache_dir": "/c", "trainer.epochs": 200}),
        (cell["random"], {"seed": 1, "dataset.root": "/b", "trainer.device": "cpu", "trainer.progress": False,
                          "hydra.job.num": 1, "out_root": "y", "dataset.cache_dir": "/d", "trainer.epochs": 200}),
        (cell["lloss"], {"strategy.margin": 1.0, "strategy._target_": "L", "trainer.epochs": 200}),
        (cell["lloss"], {"strategy.margin": 0.5, "strategy._target_": "L", "trainer.epochs": 200}),
        (cell["coreset"], {"strategy.coreset_only": 3, "strategy._target_": "C", "trainer.epochs": 200}),
        (cell["coreset"], {"trainer.epochs": 200}),  # a strategy knob missing from a run never splits
    ]
    assert differing_knobs(runs) == ["strategy.margin"]
    runs.append((cell["random"], {"trainer.epochs": 100}))
    assert differing_knobs(runs) == ["strategy.margin", "trainer.epochs"]
    # only the top-level seed is a trial: the synthetic data's own seed is a setting
    synth = ("synthetic", "small_cnn", "random")
    data_seeds = [(synth, {"seed": s, "dataset.seed": d}) for s in (0, 1) for d in (0, 5)]
    assert differing_knobs(data_seeds) == ["dataset.seed"]


def test_strategy_knob_splits_only_its_strategy(tmp_path):
    for seed in range(2):
        make_run(tmp_path, f"random/{seed}", "random", seed, [0.5, 0.6])
        make_run(tmp_path, f"coreset/{seed}", "coreset", seed, [0.5, 0.6], knobs={"strategy.feature": "penultimate"})
        for margin in (1.0, 0.5):
            make_run(tmp_path, f"lloss{margin}/{seed}", "lloss", seed, [0.5, 0.7], knobs={"strategy.margin": margin})
    runs, problems = load_runs([tmp_path])
    assert runs.attrs["knob_columns"] == ["strategy.margin"]
    assert "strategy.margin" in runs.columns and "trainer.device" not in runs.columns
    _, summary, _ = report_of(tmp_path)
    at_100 = summary[summary.n_labeled == 100]
    assert at_100.row.tolist() == ["random", "coreset", "lloss (margin=0.5)", "lloss (margin=1.0)"]
    assert at_100.n_seeds.tolist() == [2, 2, 2, 2]
    assert problems == []


def test_trainer_knob_splits_rows(tmp_path):
    for seed in range(2):
        for warm in (False, True):
            make_run(tmp_path, f"{warm}/{seed}", "random", seed, [0.5 + 0.1 * warm], knobs={"trainer.warm_start": warm})
    _, summary, _ = report_of(tmp_path)
    assert summary.row.tolist() == ["random (trainer.warm_start=false)", "random (trainer.warm_start=true)"]
    assert summary.test_acc_mean_pct.tolist() == pytest.approx([50.0, 60.0])


def test_datasets_and_budgets_never_averaged(tmp_path):
    make_run(tmp_path, "a", "random", 0, [0.5, 0.6])
    make_run(tmp_path, "b", "random", 1, [0.7, 0.8], dataset="cifar100")
    make_run(tmp_path, "c", "random", 2, [0.3, 0.4], initial=200)
    make_run(tmp_path, "d", "random", 3, [0.9, 0.9], subset=500)
    _, summary, _ = report_of(tmp_path)
    assert summary.setting.nunique() == 4
    assert summary.n_seeds.eq(1).all()
    assert sorted(summary[summary.n_labeled == 100].test_acc_mean_pct) == pytest.approx([50.0, 70.0, 90.0])
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert (out / "summary.md").read_text().count("\n## ") + 1 == 4
    curves = sorted(p.name for p in out.glob("curves_*.png"))
    assert len(curves) == 4 and "curves_cifar100_resnet18_init100_step100_sub1000.png" in curves
    assert len(list(out.glob("curves_*.pdf"))) == 4


def test_whole_pool_subset_is_its_own_setting(tmp_path):
    make_run(tmp_path, "a", "random", 0, [0.5])
    make_run(tmp_path, "b", "random", 1, [0.7], subset=None)  # subset: null = the whole unlabeled pool
    _, summary, _ = report_of(tmp_path)
    assert summary.setting.tolist() == ["cifar10 / resnet18 / 100 initial + 100 per cycle, subset 1000",
                                        "cifar10 / resnet18 / 100 initial + 100 per cycle, whole pool"]
    assert summary.test_acc_mean_pct.tolist() == pytest.approx([50.0, 70.0])


# --- messy sweeps -----------------------------------------------------------------------------

def test_duplicate_seed_is_reported_and_paired_by_its_mean(tmp_path):
    for seed in range(3):
        make_run(tmp_path, f"random/{seed}", "random", seed, [0.5 + 0.1 * seed])
        make_run(tmp_path, f"lloss/{seed}", "lloss", seed, [0.5 + 0.1 * seed + 0.02])
    make_run(tmp_path, "copy/random/0", "random", 0, [0.54])  # seed 0 again: mean (0.50 + 0.54) / 2
    annotated, summary, _ = report_of(tmp_path)
    assert cell(summary, "random", 100).n_seeds == 4
    assert any("seed 0 of random" in p and "2 times" in p for p in aggregate.seed_problems(annotated))
    # lloss - random by seed: 0.52 - 0.52 = 0, 0.02, 0.02: mean 0.0133, sd 0.01155, t = 2.0 < 4.303
    pairs = pairwise.penalty_matrix(annotated, ["random", "lloss"]).set_index(["row", "column"])
    assert pairs.loc[("lloss", "random"), ["wins", "n_budgets"]].tolist() == [0, 1]



def test_incomplete_failed_and_corrupt_runs(tmp_path):
    incomplete = make_run(tmp_path, "incomplete", "random", 0, [0.5, 0.6], done=False)
    failed = make_run(tmp_path, "failed", "random", 1, [0.5], done=False, failed=True)
    resumed = make_run(tmp_path, "resumed", "random", 2, [0.5, 0.7], failed=True)  # DONE after a FAILED
    corrupt = make_run(tmp_path, "corrupt", "random", 3, [0.5])
    lines = [json.dumps({"cycle": 0, "n_labeled": 100, "test_acc": 0.5}), '{"cycle": 1, "n_lab',
             json.dumps({"cycle": 1, "n_labeled": 200, "test_acc": 61.0}),  # percent, not a fraction
             json.dumps({"cycle": 2, "n_labeled": 300, "test_acc": 0.8}), ""]
    (corrupt / "metrics.jsonl").write_text("\n".join(lines))
    no_json = make_run(tmp_path, "no_json", "random", 4, [0.1, 0.2], run_json=False)

    runs, problems = load_runs([tmp_path])
    status = runs.groupby("run_dir").status.first()
    assert status[str(incomplete.resolve())] == "incomplete"
    assert status[str(resumed.resolve())] == "done"
    assert str(failed.resolve()) not in status.index
    assert runs[runs.run_dir == str(corrupt.resolve())].cycle.tolist() == [0, 2]
    assert runs.lpl_rank_acc.notna().any()  # extra metrics are carried

    text = "\n".join(problems)
    assert f"{incomplete.resolve()}: no DONE marker" in text
    assert f"{failed.resolve()}: FAILED (RuntimeError: CUDA out of memory); left out" in text
    assert f"{corrupt.resolve() / 'metrics.jsonl'}:2: not valid JSON" in text
    assert f"{corrupt.resolve() / 'metrics.jsonl'}:3: test_acc=61.0 is not a fraction" in text
    assert f"{no_json.resolve()}: run.json missing" in text

    unknown = runs[runs.run_dir == str(no_json.resolve())]
    assert unknown.dataset.tolist() == ["?", "?"] and unknown.strategy.tolist() == ["?", "?"]
    _, summary, _ = report_of(tmp_path)
    at_100 = cell(summary, "random", 100)  # incomplete, resumed, corrupt: not failed, not unknown
    assert at_100.n_seeds == 3 and at_100.test_acc_mean_pct == pytest.approx(50.0)
    at_200 = cell(summary, "random", 200)  # incomplete 0.6 and resumed 0.7; corrupt's line was skipped
    assert at_200.n_seeds == 2 and at_200.test_acc_mean_pct == pytest.approx(65.0)


def test_runs_csv_columns(tmp_path):
    make_run(tmp_path, "a", "lloss", 0, [0.5], knobs={"strategy.margin": 1.0})
    make_run(tmp_path, "b", "lloss", 1, [0.6], knobs={"strategy.margin": 0.5}, done=False)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert list(runs.columns) == [
        "run_dir", "dataset", "model", "strategy", "seed", "budget_initial", "budget_step", "budget_subset",
        "strategy.margin", "cycle", "n_labeled", "test_acc", "test_loss", "lpl_rank_acc",
        "train_time_s", "select_time_s", "status"]
    assert runs.status.tolist() == ["done", "incomplete"]


# --- command line -----------------------------------------------------------------------------

def test_cli_writes_every_file(tmp_path, capsys):
    penalty_sweep(tmp_path / "sweep")
    assert main([str(tmp_path / "sweep")]) == 0
    out = tmp_path / "sweep" / "report"
    for name in ("runs.csv", "summary.csv", "summary.md", "summary.tex", "aubc.csv", "pairwise.csv"):
        assert (out / name).stat().st_size > 0, name
    for name in ("curves.png", "pairwise.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name
    assert (out / "curves.pdf").read_bytes().startswith(b"%PDF")
    captured = capsys.readouterr()
    assert "| random |" in captured.out and str(out) in captured.out
    assert "warning:" in captured.err and "entropy/0: no DONE marker" in captured.err
    summary = pd.read_csv(out / "summary.csv")
    assert {"test_acc_mean_pct", "test_acc_std_pct", "n_seeds"} <= set(summary.columns)
    aubc = pd.read_csv(out / "aubc.csv")
    assert set(aubc.kind) == {"run", "mean"}


def test_cli_reference_and_relative(tmp_path):
    penalty_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    argv = [str(tmp_path / "sweep"), "--out", str(out), "--reference", str(REFERENCE), "--relative-to", "random"]
    assert main(argv) == 0
    assert (out / "curves.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "curves.pdf").read_bytes().startswith(b"%PDF")


def test_reference_file_is_the_published_figure():
    assert REFERENCE.read_text().startswith("# Yoo & Kweon")
    reference = read_reference(REFERENCE)
    assert list(reference.columns) == ["random", "entropy", "coreset", "lloss_mse", "lloss"]
    assert list(reference.index) == list(range(1000, 10001, 1000))
    assert reference.loc[10000, "lloss"] == pytest.approx(91.01)


@pytest.mark.parametrize("case", ["missing", "empty", "only_failed", "no_out", "bad_reference", "bad_relative"])
def test_cli_exit_code_two(tmp_path, capsys, case):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if case in ("no_out", "bad_reference", "bad_relative"):
        make_run(sweep, "a", "random", 0, [0.5])
    if case == "only_failed":
        make_run(sweep, "a", "random", 0, [0.5], done=False, failed=True)
    (tmp_path / "bad.csv").write_text("# nothing\nbudget,random\n1,2\n")
    argv = {
        "missing": [str(tmp_path / "nope")],
        "empty": [str(sweep)],
        "only_failed": [str(sweep)],
        "no_out": [str(sweep), str(sweep / "a")],
        "bad_reference": [str(sweep), "--reference", str(tmp_path / "bad.csv")],
        "bad_relative": [str(sweep), "--relative-to", "coreset"],
    }[case]
    assert main(argv) == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("al-bench-report: error")]
    assert len(error_lines) == 1
    assert not (sweep / "report").exists()


def test_cli_help_is_not_an_error(capsys):
    assert main(["--help"]) == 0
    assert "--reference" in capsys.readouterr().out
