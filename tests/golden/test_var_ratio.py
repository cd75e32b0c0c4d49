"""Golden test: var_ratio against the paper authors' script (votes) and BatchBALD-derived code (mean).

References, run on `mc_input()` below ((N, S, C) = (200, 16, 10), float64):
- Riashat/Deep-Bayesian-Active-Learning @ e4e970ca9b901d0a9e7d718ed3304b322809690f (Gal, Islam & Ghahramani),
  MC_Dropout_Keras/Dropout_VarRatio_Q10_N1000_Paper.py, its scoring lines 220-238 (scipy.stats.mode over the
  S predicted classes, 1 - Mode / S) run on mc[:, d, :].argmax(1) for d < S in place of
  model.predict_classes_stochastic, scipy 1.17.1: the 200 scores, pinned as VOTES = S * score.
- jaeohwoo/BalancedEntropy @ 5cc1a5c117f021dbb1cd1ea55b0c283e298d9916 (code from BlackHC/BatchBALD),
  src/acquisition_functions.py `AcquisitionFunction.variation_ratios.compute_scores(torch.log(mc), None, cpu)`:
  1 - max of the mean prediction, al-bench's `estimate="mean"`.
- DeepAL+ (SineZHAN/deepALplus @ 93c2884e, query_strategies/var_ratio.py) scores 1 - max p of the
  deterministic prediction: least_confidence's score (its picks equal its LeastConfidence's).
baal has no variation ratio. Measured: votes, all 200 scores identical (exact); mean, the 200 scores to 4.4e-16
and the top-20 in order. Votes tie (12 distinct values here), so the test pins scores, not picks.
"""


import numpy as np
import pytest
from golden_inputs import N, S, mc_input
from golden_inputs import mc_context as context

from al_bench.strategies.var_ratio import VarRatio, mean_variation_ratio, variation_ratio

VOTES = [0, 0, 0, 8, 0, 10, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 8, 4, 0, 0, 4, 7, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 7, 3, 10,
         10, 0, 4, 0, 1, 0, 2, 0, 0, 0, 1, 1, 0, 6, 0, 9, 0, 0, 0, 0, 2, 0, 4, 0, 4, 0, 0, 0, 0, 0, 0, 5, 0, 0, 5, 0, 0,
         12, 10, 0, 0, 0, 0, 2, 0, 6, 0, 0, 0, 0, 7, 10, 0, 0, 2, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 5, 1, 0, 0, 0, 0, 1,
         0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 2, 0, 0, 2, 0, 7, 2, 3, 0, 0, 3, 8, 4, 0, 0, 0, 3, 0, 0,
         0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 8, 0, 0, 6, 3, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 5, 0, 8, 0, 6, 0, 0, 0,
         7, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 6, 0, 0, 8, 0]  # S (1 - f_m / S) per row, the authors' script
MEAN_SCORES = [0.0676468565906, 0.49325892793, 0.207031133567, 0.564352985427, 0.262300950387, 0.660413090692,
               0.5947694194, 0.744322267292]  # BalancedEntropy variation_ratios, rows 0..7
MEAN_TOP = [171, 44, 73, 67, 7, 74, 59, 42, 114, 33, 36, 35, 10, 165, 151, 87, 5, 189, 22, 183]


def test_votes_equal_the_authors_script():
    mc = mc_input()
    assert variation_ratio(mc).tolist() == [v / S for v in VOTES]
    assert VarRatio(mc_samples=S).score({"mc_probs": mc}).tolist() == [v / S for v in VOTES]


def test_mean_estimate_equals_the_batchbald_code():
    mc = mc_input()
    assert mean_variation_ratio(mc)[:8].tolist() == pytest.approx(MEAN_SCORES, rel=1e-9)
    assert VarRatio(mc_samples=S, estimate="mean").select(context(mc), np.arange(N), 20).tolist() == MEAN_TOP
