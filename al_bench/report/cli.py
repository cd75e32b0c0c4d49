"""``al-bench-report PATH... [--out DIR] [--html]``: tables and figures from run directories and sweeps.

Prints the Markdown summary tables to stdout, one warning line per problem to stderr, and where
the files are at the end. Exit status: 0 when a report was written; 2 for a usage error, a path
that does not exist, several PATHs without ``--out``, an unreadable ``--reference``, an unknown
``--relative-to`` strategy, or no run to report.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from al_bench.report.aggregate import known_runs
from al_bench.report.collect import collect, read_reference
from al_bench.report.write import write_report

PROG = "al-bench-report"
USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Collect al-bench run directories (any mix of runs and sweep trees) into "
        "runs.csv, summary tables (CSV, Markdown, LaTeX), AUBC, the pairwise penalty matrix and "
        "learning curves.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run directory or sweep tree")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output folder (default: PATH/report; required with several PATHs)")
    parser.add_argument("--reference", type=Path, metavar="FILE",
                        help="published curves to overlay, e.g. results/reference/ll4al_cifar10_fig4.csv")
    parser.add_argument("--relative-to", metavar="STRATEGY",
                        help="plot accuracy minus this strategy's mean (percentage points), e.g. random")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: one self-contained page (figures embedded, tables, settings, "
                        "failed and incomplete runs, links to the run directories) that opens without a server")
    return parser


def fail(message: str) -> int:
    """Print one error line to stderr and return the usage-error status."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reporter on ``argv`` (default: the command line); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return fail(f"no such file or directory: {', '.join(missing)}")
    if args.out is None and len(args.paths) > 1:
        return fail("several PATHs given: say where the report goes with --out DIR")
    out_dir = args.out if args.out is not None else Path(args.paths[0]) / "report"
    unwritable = _unwritable(out_dir)
    if unwritable:
        return fail(unwritable)
    reference = None
    if args.reference is not None:
        try:
            reference = read_reference(args.reference)
        except ValueError as error:
            return fail(str(error))

    collection = collect(args.paths)
    for problem in collection.problems:
        print(f"warning: {problem}", file=sys.stderr)
    known = known_runs(collection.runs)
    if known.empty:
        return fail(f"no run with a readable run.json and a finished cycle under {' '.join(args.paths)}")
    if args.relative_to is not None and args.relative_to not in set(known.strategy):
        return fail(f"--relative-to {args.relative_to}: no runs of that strategy")

    report = write_report(collection, out_dir, reference, args.relative_to,
                          html_from=list(args.paths) if args.html else None)
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(report.markdown)
    print(f"report written to {report.out_dir}:")
    for path in report.files:
        print(f"  {path}")
    return 0


def _unwritable(out_dir: Path) -> str | None:
    """Why the report cannot be written into `out_dir`, or None; creates nothing."""
    if out_dir.exists() and not out_dir.is_dir():
        return f"--out {out_dir} is a file, not a folder; give a folder for the report"
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write the report into {out_dir}: {existing} is not a writable folder"
    return None


if __name__ == "__main__":
    sys.exit(main())
