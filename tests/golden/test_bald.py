"""Golden test: bald against baal, DeepAL+ and the paper authors' script.

References, all run on `mc_input()` below ((N, S, C) = (200, 16, 10), float64), torch 2.14.1, CPU:
- baal-org/baal @ 7da1cfbb0bf3220492fc571af4f0a1277c915cea (baal 2.1.0), baal/active/heuristics/heuristics.py
  `BALD().get_ranks(x)` with x = mc transposed to [n_sample, n_classes, n_iterations] (default reduction "none");
  gives (ranks, scores). The file was loaded with baal.utils.array_utils only (baal/__init__ needs structlog).
- SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/
  bayesian_active_learning_disagreement_dropout.py `BALDDropout(dataset, net, {}, {}, n_drop=16).query(200)`,
  the net's predict_prob_dropout_split returning mc as [n_drop, N, C]: its picks equal baal's ranks.
- Riashat/Deep-Bayesian-Active-Learning @ e4e970ca9b901d0a9e7d718ed3304b322809690f (Gal, Islam & Ghahramani),
  MC_Dropout_Keras/Dropout_Bald_Q10_N1000_Paper.py, its scoring lines 226-258 run on mc[:, d, :] for d < S in
  place of model.predict_stochastic: log2, so its scores are ours / log 2; the same order.
Measured: al-bench bald equals baal's 200 scores to 6.7e-16 and the authors' (times log 2) to 7.2e-16;
orders identical over all 200 (no ties: the smallest gap between scores is 7.6e-8).
"""

import math

import numpy as np
import pytest
from golden_inputs import N, S, mc_input
from golden_inputs import mc_context as context

from al_bench.strategies.bald import Bald, bald

BAAL_SCORES = [0.00498119450092, 0.000485038562647, 2.01279233034e-05, 0.901904405802, 0.000238017763011,
               0.317072925276, 0.000154253154361, 8.29465730463e-05]  # rows 0..7, nats
AUTHORS_BITS = [0.00718634460417, 0.000699762728971, 2.90384551331e-05, 1.30117301361, 0.000343387046339,
                0.457439536895, 0.000222540260838, 0.000119666609592]  # rows 0..7, Riashat script, log2
TOP = [73, 87, 171, 3, 138, 177, 36, 16, 179, 58, 124, 35, 102, 11, 114, 134, 81, 159, 156, 51]  # baal = DeepAL+


def test_bald_scores_equal_baal_and_the_authors_script():
    score = bald(mc_input())
    assert score[:8].tolist() == pytest.approx(BAAL_SCORES, rel=1e-9)
    assert (score[:8] / math.log(2)).tolist() == pytest.approx(AUTHORS_BITS, rel=1e-9)


def test_bald_picks_equal_baal_and_deepalplus():
    mc = mc_input()
    assert Bald(mc_samples=S).select(context(mc), np.arange(N), 20).tolist() == TOP
