"""The pairwise penalty matrix of Ash et al. (BADGE), for the rows of one setting.

References: Ash, Zhang, Krishnamurthy, Langford, Agarwal, "Deep Batch Active Learning by Diverse,
Uncertain Gradient Lower Bounds", ICLR 2020, arXiv:1906.03671, section 5 "Pairwise comparisons".

The paper runs each algorithm several times per setting and, at every labeling round l, compares
algorithms i and j with a two-sided paired t-test on their test errors over the repetitions
(t = sqrt(n) * mean(d) / std(d), d = per-repetition difference, std with n - 1, significance at
0.05). "i beats j at round l" adds 1/L to entry P[i, j], where L is the number of rounds, so every
setting adds at most 1 to an entry; the bottom row of their figure is the column-wise mean (how
often an algorithm is beaten: lower is better).

Here, for the rows i != j of one setting:

- a budget (n_labeled) is evaluated for (i, j) when at least two seeds have an accuracy there for
  both; runs are paired by seed (a seed run twice in one row counts with its mean accuracy);
- at an evaluated budget, i beats j when ``scipy.stats.ttest_rel`` on the paired accuracies gives
  p < alpha (two-sided, alpha = 0.05) and the mean difference favours i. Differences that are all
  equal (zero variance, t infinite) count as a win when they are non-zero and as a tie when zero;
- ``P[i, j] = wins(i, j) / L(i, j)`` with ``L(i, j)`` the number of budgets evaluated for the pair,
  so ``P[i, j]`` lies in [0, 1] and ``P[i, j] + P[j, i] <= 1``; NaN when no budget could be
  evaluated and on the diagonal;
- the column mean averages ``P[i, j]`` over the rows i != j that have a value.

The paper also drops the late rounds where every algorithm has saturated; that cut-off is not
applied here (the benchmarks reproduced run fixed paper schedules), so every common budget counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05


def seed_accuracy(setting: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per row of one setting: accuracy with one line per seed and one column per n_labeled."""
    runs = setting.dropna(subset=["seed"])
    return {
        row: part.pivot_table(index="seed", columns="n_labeled", values="test_acc", aggfunc="mean")
        for row, part in runs.groupby("row", sort=False)
    }


def beats(acc_i: Sequence[float], acc_j: Sequence[float], alpha: float = ALPHA) -> bool | None:
    """Whether i is significantly more accurate than j in a paired two-sided t-test.

    ``acc_i[k]`` and ``acc_j[k]`` belong to the same seed; pairs with a missing value are dropped.
    None when fewer than two pairs remain (the budget is not evaluated).
    """
    a, b = np.asarray(acc_i, dtype=float), np.asarray(acc_j, dtype=float)
    paired = ~(np.isnan(a) | np.isnan(b))
    a, b = a[paired], b[paired]
    if len(a) < 2:
        return None
    # Accuracies are ratios of counts; rounding removes float noise so that equal differences
    # are recognised as the zero-variance case instead of a huge, noise-driven t.
    diff = np.round(a - b, 12)
    if np.all(diff == diff[0]):
        return bool(diff[0] > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b)
    return bool(result.pvalue < alpha and np.mean(diff) > 0)


def penalty_matrix(setting: pd.DataFrame, rows: Sequence[str], alpha: float = ALPHA) -> pd.DataFrame:
    """One line per ordered pair (row, column) of distinct rows: wins, budgets evaluated, penalty.

    ``penalty`` is P[row, column] as described in the module docstring.
    """
    acc = seed_accuracy(setting)
    lines = []
    for i in rows:
        for j in rows:
            if i == j:
                continue
            wins, evaluated = 0, 0
            if i in acc and j in acc:
                seeds = acc[i].index.intersection(acc[j].index)
                budgets = acc[i].columns.intersection(acc[j].columns)
                for budget in budgets:
                    outcome = beats(acc[i].loc[seeds, budget], acc[j].loc[seeds, budget], alpha)
                    if outcome is not None:
                        evaluated += 1
                        wins += outcome
            penalty = wins / evaluated if evaluated else math.nan
            lines.append({"row": i, "column": j, "wins": wins, "n_budgets": evaluated, "penalty": penalty})
    return pd.DataFrame(lines, columns=["row", "column", "wins", "n_budgets", "penalty"])


def as_matrix(pairs: pd.DataFrame, rows: Sequence[str]) -> pd.DataFrame:
    """The penalty lines of one setting as a square matrix (rows beat columns), diagonal NaN."""
    matrix = pairs.pivot(index="row", columns="column", values="penalty") if len(pairs) else pd.DataFrame()
    return matrix.reindex(index=list(rows), columns=list(rows)).astype(float)


def column_mean(matrix: pd.DataFrame) -> pd.Series:
    """How often each column is beaten on average (lower is better), NaN entries skipped."""
    return matrix.mean(axis=0, skipna=True)
