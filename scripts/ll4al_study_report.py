"""Tables and the figure of the learning-loss CPU study (scripts/ll4al_cpu_study.sh).

    python scripts/ll4al_study_report.py SWEEP_DIR OUT_DIR

Reads every run under SWEEP_DIR (al_bench.report.collect), groups them by epochs per cycle, and
writes to OUT_DIR: study.csv (one row per epochs x strategy x n_labeled: test accuracy mean/std/n,
and for lloss the module's and entropy's ranking accuracy of the test losses, mean/std), study.md
(the same as Markdown tables, with the paired lloss - random difference per seed), study.png (left:
accuracy of lloss and random; right: ranking accuracy of the module and of entropy), and runs/
(each run's run.json and metrics.jsonl, so the numbers can be recomputed).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from al_bench.report.collect import load_runs  # noqa: E402


def mean_std(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    grouped = frame.groupby(["epochs", "strategy", "n_labeled"])[column]
    return pd.DataFrame({f"{column}_mean": grouped.mean(), f"{column}_std": grouped.std(ddof=1),
                         f"{column}_n": grouped.count()})


def main(sweep: str, out: str) -> None:
    runs, problems = load_runs([sweep])
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    epochs = {d: json.loads((Path(d) / "run.json").read_text())["knobs"]["trainer.epochs"] for d in set(runs.run_dir)}
    runs = runs.assign(epochs=runs.run_dir.map(epochs).astype(int), test_acc=runs.test_acc * 100)
    table = mean_std(runs, "test_acc")
    lloss = runs[runs.strategy == "lloss"]
    for column in ("lpl_rank_acc", "entropy_rank_acc"):
        table = table.join(mean_std(lloss, column).drop(columns=f"{column}_n"), how="left")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(out_dir / "study.csv")

    paired = runs.pivot_table(index=["epochs", "n_labeled", "seed"], columns="strategy", values="test_acc")
    paired = (paired["lloss"] - paired["random"]).groupby(["epochs", "n_labeled"]).agg(["mean", "std", "count"])
    lines = ["# Learning loss at CPU scale: accuracy and ranking accuracy\n"]
    for epochs, part in table.groupby(level="epochs"):
        lines += [f"## {epochs} epochs per cycle\n",
                  "| n_labeled | random acc % | lloss acc % | lloss - random (paired) | module rank acc | "
                  "entropy rank acc |", "|---:|---:|---:|---:|---:|---:|"]
        for n in sorted(part.index.get_level_values("n_labeled").unique()):
            r, ll = part.loc[(epochs, "random", n)], part.loc[(epochs, "lloss", n)]
            d = paired.loc[(epochs, n)]
            lines.append(f"| {n} | {r.test_acc_mean:.1f} ± {r.test_acc_std:.1f} | {ll.test_acc_mean:.1f} ± "
                         f"{ll.test_acc_std:.1f} | {d['mean']:+.1f} ± {d['std']:.1f} | {ll.lpl_rank_acc_mean:.3f} ± "
                         f"{ll.lpl_rank_acc_std:.3f} | {ll.entropy_rank_acc_mean:.3f} ± {ll.entropy_rank_acc_std:.3f} |")
        lines.append(f"\n(mean ± sample std over {int(part.test_acc_n.min())} seeds)\n")
    (out_dir / "study.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {16: "--", 32: "-"}
    for (epochs, strategy), part in table.reset_index().groupby(["epochs", "strategy"]):
        color = "tab:red" if strategy == "lloss" else "tab:gray"
        axes[0].errorbar(part.n_labeled, part.test_acc_mean, part.test_acc_std, ls=styles.get(epochs, ":"),
                         color=color, marker="o", capsize=3, label=f"{strategy}, {epochs} epochs")
        if strategy == "lloss":
            for column, c in (("lpl_rank_acc", "tab:red"), ("entropy_rank_acc", "tab:blue")):
                name = "loss module" if column == "lpl_rank_acc" else "entropy"
                axes[1].errorbar(part.n_labeled, part[f"{column}_mean"], part[f"{column}_std"], color=c,
                                 ls=styles.get(epochs, ":"), marker="o", capsize=3, label=f"{name}, {epochs} epochs")
    axes[0].set(xlabel="labeled images", ylabel="test accuracy (%)", title="lloss vs random")
    axes[1].set(xlabel="labeled images", ylabel="pairs ordered like the true losses",
                title="ranking accuracy on the test set (figure 5's measure)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "study.png", dpi=120)

    runs_dir = out_dir / "runs"
    for run_dir in sorted(set(runs.run_dir)):
        rel = Path(run_dir).relative_to(Path(sweep).resolve())
        (runs_dir / rel).mkdir(parents=True, exist_ok=True)
        for name in ("run.json", "metrics.jsonl"):
            shutil.copy2(Path(run_dir) / name, runs_dir / rel / name)
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1], sys.argv[2])
