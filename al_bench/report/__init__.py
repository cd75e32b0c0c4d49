"""Read-only reporter: turns run directories into tables and figures.

Modules, in the order data flows through them:

- ``collect``   finds run directories, reads ``run.json`` / ``metrics.jsonl`` / ``DONE`` /
                ``FAILED`` into one tidy table (one row per run and finished cycle);
- ``knobs``     decides which resolved config values differ between runs (and so split groups);
- ``aggregate`` labels table rows, means and sample stds per budget, area under the budget curve;
- ``pairwise``  the pairwise penalty matrix of Ash et al. (BADGE, arXiv:1906.03671);
- ``tables``    Markdown and LaTeX tables; ``figures`` learning curves and the penalty heatmap;
- ``write``     writes every report file into one folder; ``cli`` is ``al-bench-report``.

Nothing here imports torch or hydra, and nothing writes into a run directory.
"""
