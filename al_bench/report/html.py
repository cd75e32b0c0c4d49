"""report.html: the whole report as one self-contained page that opens from disk, without a server.

Figures are embedded as base64 PNG, tables are HTML, styles are inline; the only links are relative
ones to the run directories (and their files), so the page keeps working when the sweep folder is
copied elsewhere. Sections: what was reported, the sweep's settings (values shared by every run,
knobs that differ), per setting the accuracy table with AUBC, every figure, the runs (status,
cycles, link), failed and incomplete runs, and every problem met while reading.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from al_bench.report import tables
from al_bench.report.collect import find_run_dirs, read_failure, read_run
from al_bench.report.knobs import canonical, format_knob, is_ignored_knob

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text, th.text { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.failed { color: #a00; } .incomplete { color: #a60; } .caption { font-size: 0.85em; color: #444; max-width: 60em; }
code { font-size: 0.9em; }
"""


def esc(value: object) -> str:
    """`value` as HTML text."""
    return html.escape(str(value), quote=True)


def link(run_dir: Path, out_dir: Path) -> str:
    """A relative link to a run directory, from the report folder."""
    target = os.path.relpath(Path(run_dir).resolve(), Path(out_dir).resolve())
    return f'<a href="{quote(target.replace(os.sep, "/"))}/">{esc(target)}</a>'


def grid_table(grid: pd.DataFrame) -> str:
    """A tables.cell_grid (rows = strategies, columns = budgets, AUBC) as an HTML table."""
    head = "".join(f"<th>{esc(c)}</th>" for c in ["strategy", *grid.columns])
    body = "".join("<tr><td>" + esc(label) + "</td>" + "".join(f"<td>{esc(v)}</td>" for v in cells) + "</tr>"
                   for label, cells in grid.iterrows())
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def rows_table(header: list[str], rows: Iterable[list[str]], cls: str) -> str:
    """An HTML table of already escaped cells."""
    head = "".join(f'<th class="text">{esc(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td class="text">{cell}</td>' for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def shared_and_differing(runs) -> tuple[dict, list[str]]:
    """The knobs every run with knobs agrees on (value), and those that take several values."""
    values: dict[str, set] = {}
    originals: dict[str, object] = {}
    with_knobs = [run for run in runs if run.knobs]
    for run in with_knobs:
        for key, value in run.knobs.items():
            if key.startswith("hydra."):
                continue
            values.setdefault(key, set()).add(canonical(value))
            originals.setdefault(key, value)
    shared = {k: originals[k] for k, v in sorted(values.items())
              if len(v) == 1 and sum(k in run.knobs for run in with_knobs) == len(with_knobs)}
    differing = sorted(k for k, v in values.items() if len(v) > 1 and not is_ignored_knob(k))
    return shared, differing


def figure_html(path: Path) -> str:
    """One PNG, embedded."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(path.name)}">'
            f"<figcaption>{esc(path.name)} (the PDF beside it in the report folder)</figcaption></figure>")


def render(paths: Iterable[str | os.PathLike], out_dir: Path, summary: pd.DataFrame, aubc: pd.DataFrame,
           figures: list[Path], problems: list[str]) -> str:
    """The page's HTML text."""
    out_dir = Path(out_dir)
    runs = [read_run(d)[0] for d in find_run_dirs(paths)]
    shared, differing = shared_and_differing(runs)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>al-bench report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>al-bench report</h1>",
             f"<p>Generated {esc(datetime.now(timezone.utc).isoformat(timespec='seconds'))} from "
             + ", ".join(f"<code>{esc(Path(p).resolve())}</code>" for p in paths)
             + f"; {len(runs)} run director{'y' if len(runs) == 1 else 'ies'}.</p>"]

    parts.append('<h2 id="settings">Settings</h2>')
    titles = list(dict.fromkeys(summary.setting)) if not summary.empty else []
    parts.append("<p>Settings (runs of different settings are never averaged or compared):</p><ul>"
                 + "".join(f"<li>{esc(t)}</li>" for t in titles) + "</ul>")
    parts.append("<p>Knobs that differ between runs: "
                 + (", ".join(f"<code>{esc(k)}</code>" for k in differing) or "none") + "</p>")
    parts.append("<details open><summary>Values shared by every run</summary>"
                 + rows_table(["knob", "value"], ([f"<code>{esc(k)}</code>", esc(format_knob(v))]
                                                  for k, v in shared.items()), "shared") + "</details>")

    parts.append('<h2 id="tables">Test accuracy</h2>')
    for title, part, part_aubc in tables.settings(summary, aubc):
        caption = tables.CAPTION.format(grid=tables.grid_text(part_aubc))
        parts.append(f"<h3>{esc(title)}</h3><p class=\"caption\">{esc(caption)}</p>"
                     + grid_table(tables.cell_grid(part, part_aubc, "±")))

    parts.append('<h2 id="figures">Figures</h2>')
    parts += [figure_html(p) for p in figures if p.suffix == ".png"]

    parts.append('<h2 id="runs">Runs</h2>')
    run_rows = []
    for run in runs:
        last = run.cycles[-1] if run.cycles else None
        run_rows.append([f'<span class="{esc(run.status)}">{esc(run.status)}</span>', esc(run.identity["strategy"]),
                         esc(run.identity["seed"]), esc(len(run.cycles)),
                         esc(last["n_labeled"] if last else "-"),
                         esc(f"{100 * last['test_acc']:.1f}" if last else "-"), link(run.run_dir, out_dir)])
    parts.append(rows_table(["status", "strategy", "seed", "cycles", "last n_labeled", "last accuracy (%)",
                             "run directory"], run_rows, "runs"))

    failed = [run for run in runs if run.status == "failed"]
    parts.append(f'<h2 id="failed">Failed runs ({len(failed)})</h2>')
    parts.append(rows_table(["run directory", "error (last line of FAILED)"],
                            ([link(r.run_dir, out_dir), f"<code>{esc(read_failure(r.run_dir))}</code>"]
                             for r in failed), "failed-runs") if failed else "<p>None.</p>")
    incomplete = [run for run in runs if run.status == "incomplete"]
    parts.append(f'<h2 id="incomplete">Incomplete runs ({len(incomplete)})</h2>')
    parts.append(rows_table(["run directory", "finished cycles"],
                            ([link(r.run_dir, out_dir), esc(len(r.cycles))] for r in incomplete),
                            "incomplete-runs") if incomplete else "<p>None.</p>")
    parts.append(f'<h2 id="problems">Problems ({len(problems)})</h2>')
    parts.append("<ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>" if problems else "<p>None.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
