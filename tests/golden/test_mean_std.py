"""Golden test: mean_std against DeepAL+ (and the BatchBALD-derived code of BalancedEntropy).

References, run on `mc_input()` below ((N, S, C) = (200, 16, 10), float64), torch 2.14.1, CPU:
- SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20, query_strategies/mean_std.py
  `MeanSTD(dataset, net, {}, {}, n_drop=16).query(200)`, the net's predict_prob_dropout_split returning mc as
  [n_drop, N, C] (np.std over the samples, population form; mean over classes): picks TOP.
- jaeohwoo/BalancedEntropy @ 5cc1a5c117f021dbb1cd1ea55b0c283e298d9916 (code from BlackHC/BatchBALD),
  src/acquisition_functions.py `AcquisitionFunction.mean_stddev.compute_scores(torch.log(mc), None, cpu)`:
  torch.std, unbiased, so sqrt(S / (S - 1)) times al-bench's score; the same order.
Measured: al-bench's order equals DeepAL+'s over all 200 candidates (no ties, smallest gap 8.2e-9); its scores
times sqrt(16/15) equal BalancedEntropy's to 5.6e-17. baal's `Variance` (mean of the variances) is another
quantity: 18 of its top-20 are in al-bench's, in another order; not an option here.
"""

import math

import numpy as np
import pytest
from golden_inputs import N, S, mc_input
from golden_inputs import mc_context as context

from al_bench.strategies.mean_std import MeanStd, mean_std

TOP = [73, 171, 87, 36, 138, 177, 3, 16, 179, 58, 35, 124, 102, 114, 11, 81, 159, 134, 156, 51]  # DeepAL+
UNBIASED = [0.00477019333462, 0.00292169898652, 0.000484663008409, 0.14692479513, 0.0018683797484,
            0.0823991729669, 0.0018090920932, 0.00129898178973]  # BalancedEntropy mean_stddev, rows 0..7


def test_mean_std_picks_equal_deepalplus():
    mc = mc_input()
    assert MeanStd(mc_samples=S).select(context(mc), np.arange(N), 20).tolist() == TOP


def test_mean_std_is_the_population_form_of_the_batchbald_score():
    score = mean_std(mc_input())
    assert (score[:8] * math.sqrt(S / (S - 1))).tolist() == pytest.approx(UNBIASED, rel=1e-9)
