"""Golden test: entropy against baal and DeepAL+.

References, run on `probs_input()` below ((N, C) = (200, 10), float64; no exact zeros), CPU:
- baal-org/baal @ 7da1cfbb0bf3220492fc571af4f0a1277c915cea (baal 2.1.0), baal/active/heuristics/heuristics.py
  `Entropy().get_ranks(probs)` (default reduction "none"), giving (ranks, scores); the file was loaded with
  baal.utils.array_utils only (baal/__init__ needs structlog).
- SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/entropy_sampling.py
  `EntropySampling(dataset, net, {}, {}).query(200)`, the net's predict_prob returning probs: picks equal baal's ranks.
Measured: al-bench's entropy equals baal's 200 scores (scipy.stats.entropy, nats) to 4.4e-16; orders
identical over all 200 (no ties, smallest gap 4.4e-5).
"""


import numpy as np
import pytest
from golden_inputs import N, probs_input
from golden_inputs import probs_context as context

from al_bench.strategies.common.uncertainty import entropy
from al_bench.strategies.entropy import Entropy

BAAL_SCORES = [1.73467617946, 1.61531940337, 1.66357227562, 1.54980555363,
               1.10789576487, 1.58027328366, 1.14819744468, 1.54117379555]  # baal's scores (nats), rows 0..7
# baal's ranks = DeepAL+'s picks
TOP = [144, 107, 146, 152, 8, 192, 37, 185, 138, 98, 104, 129, 119, 177, 134, 169, 34, 80, 154, 123]


def test_entropy_scores_equal_baal():
    assert entropy(probs_input())[:8].tolist() == pytest.approx(BAAL_SCORES, rel=1e-9)


def test_entropy_picks_equal_baal_and_deepalplus():
    probs = probs_input()
    assert Entropy().select(context(probs), np.arange(N), 20).tolist() == TOP
