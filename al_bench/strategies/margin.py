"""Margin sampling (Scheffer, Decomain & Wrobel 2001; Settles 2009): the smallest gap between the two
most probable classes first.

Checked against baal (baal-org/baal, heuristics.Margin, the gap sorted ascending) and DeepAL+
(SineZHAN/deepALplus, MarginSampling) in tests/golden/test_margin.py.
"""

from __future__ import annotations

from al_bench.strategies.base import ScoreStrategy


class Margin(ScoreStrategy):
    """The candidates with the smallest gap between the two most probable classes:
    score = -(p_top1 - p_top2)."""

    def score(self, preds):
        top2 = preds["probs"].double().topk(2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])
