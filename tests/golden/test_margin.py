"""Golden test: margin against baal and DeepAL+.

References, run on `probs_input()` below ((N, C) = (200, 10), float64; no exact zeros), CPU:
- baal-org/baal @ 7da1cfbb0bf3220492fc571af4f0a1277c915cea (baal 2.1.0), baal/active/heuristics/heuristics.py
  `Margin().get_ranks(probs)` (default reduction "none"), giving (ranks, scores); the file was loaded with
  baal.utils.array_utils only (baal/__init__ needs structlog).
- SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/margin_sampling.py
  `MarginSampling(dataset, net, {}, {}).query(200)`, the net's predict_prob returning probs: picks equal baal's ranks.
Measured: al-bench's score is minus baal's (top-1 minus top-2, sorted ascending), 0.0 apart over the 200 rows;
orders identical over all 200 (no ties, smallest gap 1.1e-6).
"""


import numpy as np
import pytest
from golden_inputs import N, probs_input
from golden_inputs import probs_context as context

from al_bench.strategies.margin import Margin

BAAL_SCORES = [0.157689733474, 0.268960916727, 0.318668522731, 0.124268268525,
               0.261452692809, 0.132304627814, 0.632215334631, 0.117514241391]  # baal's gaps, rows 0..7
# baal's ranks = DeepAL+'s picks
TOP = [95, 17, 43, 101, 141, 148, 132, 134, 145, 84, 161, 85, 30, 133, 124, 45, 78, 114, 11, 26]


def test_margin_scores_equal_baal():
    assert (-Margin().score({"probs": probs_input()}))[:8].tolist() == pytest.approx(BAAL_SCORES, rel=1e-9)


def test_margin_picks_equal_baal_and_deepalplus():
    probs = probs_input()
    assert Margin().select(context(probs), np.arange(N), 20).tolist() == TOP
