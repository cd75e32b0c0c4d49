"""Oracle diagnostic: rank candidates by their TRUE loss, computed with their labels.

Not an active-learning strategy (it reads labels of unlabeled images): an upper reference for
what a perfect loss predictor would select (cf. Yoo & Kweon 2019, arXiv:1905.03677).
"""

from __future__ import annotations

import logging

from torch import nn

from al_bench.strategies.base import Strategy, top_k

log = logging.getLogger(__name__)


class GroundTruthLoss(Strategy):
    """ORACLE: the k candidates with the highest cross-entropy under their true labels."""

    def select(self, ctx, candidates, k):
        log.warning("strategy gt_loss is an ORACLE diagnostic: it reads the candidates' labels")
        preds = ctx.predict(candidates)
        labels = ctx.pool.train_y[candidates]
        true_loss = nn.functional.cross_entropy(preds["logits"], labels.to(preds["logits"].device), reduction="none")
        return candidates[top_k(true_loss, k, ctx.rng)]
