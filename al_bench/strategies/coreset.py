"""Core-set by k-center greedy (Sener & Savarese, "Active Learning for Convolutional Neural
Networks: A Core-Set Approach", ICLR 2018, arXiv:1708.00489), on penultimate features.

Time O(N k D) for k picks among N candidates (plus O(N L D) once for L labeled centres); extra
memory O(N) plus a fixed block: one running min-distance vector over the candidates and their
squared norms. A pick updates the vector with one matrix-vector product,
||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, so no N x N matrix and no N x D temporary is ever built;
the initial distances to the labeled centres go block by block (`block` x `block` at most).
tests/test_coreset_scale.py checks the picks against a brute-force N x N implementation and that
no intermediate tensor reaches N x D or N x N elements; scripts/bench_select.py times 10k-50k pools.

Agrees with the usual baseline code, DeepAL+ (SineZHAN/deepALplus, query_strategies/kcenter_greedy.py,
KCenterGreedy.query, the same as ej0cl6/deep-active-learning): tests/golden/test_coreset.py pins its
ordered picks. Ours: with no labeled centres the first pick is the point farthest from the mean (their
code needs at least one labeled point).

References: arXiv:1708.00489
"""

from __future__ import annotations

import numpy as np

from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import k_center_greedy


class Coreset(Strategy):
    """k-center greedy over the candidates, with the labeled set as the initial centres."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].float()
        lab = ctx.predict(ctx.labeled)["embedding"].float()
        return candidates[k_center_greedy(emb, lab, k)]
