"""Golden test: least_confidence against baal and DeepAL+.

References, run on `probs_input()` below ((N, C) = (200, 10), float64; no exact zeros), CPU:
- baal-org/baal @ 7da1cfbb0bf3220492fc571af4f0a1277c915cea (baal 2.1.0), baal/active/heuristics/heuristics.py
  `Certainty().get_ranks(probs)` (default reduction "none"), giving (ranks, scores); the file was loaded with
  baal.utils.array_utils only (baal/__init__ needs structlog).
- SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/least_confidence.py
  `LeastConfidence(dataset, net, {}, {}).query(200)`, the net's predict_prob returning probs: picks equal baal's ranks.
Measured: al-bench's score is 1 minus baal's (max p, sorted ascending), 5.6e-17 apart; orders identical over all
200 (no ties, smallest gap 2.2e-5). DeepAL+'s VarRatio (query_strategies/var_ratio.py) gives the same picks.
"""


import numpy as np
import pytest
from golden_inputs import N, probs_input
from golden_inputs import probs_context as context

from al_bench.strategies.least_confidence import LeastConfidence

BAAL_SCORES = [0.35562019869, 0.479856025439, 0.462862435063, 0.352599986153,
               0.578951534608, 0.385185264304, 0.711437990986, 0.352038558236]  # baal's max p, rows 0..7
# baal's ranks = DeepAL+'s picks
TOP = [107, 185, 177, 80, 98, 134, 169, 59, 145, 144, 132, 8, 141, 85, 133, 45, 123, 101, 182, 30]


def test_least_confidence_scores_equal_baal():
    assert (1 - LeastConfidence().score({"probs": probs_input()}))[:8].tolist() == pytest.approx(BAAL_SCORES, rel=1e-9)


def test_least_confidence_picks_equal_baal_and_deepalplus():
    probs = probs_input()
    assert LeastConfidence().select(context(probs), np.arange(N), 20).tolist() == TOP
