"""Core-set (k-center greedy) against the usual baseline code, on fixed embeddings.

Reference: SineZHAN/deepALplus@93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20 (DeepAL+),
query_strategies/kcenter_greedy.py, KCenterGreedy.query(n), the same body as
ej0cl6/deep-active-learning@eea3d2c703b83ce412f7dd6f518c017713d15ced. Run on `embeddings()` below
(float32, 300 x 16) as the whole pool, rows 0..19 labeled. query(n) returns the picked set sorted by
index, so the order below comes from n = 1, 2, ..., 25 (each set adds one point to the previous).
al-bench's Coreset.select (candidates = rows 20..299) gives the same 25 picks in the same order.
"""

import numpy as np
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.clustering import k_center_greedy
from al_bench.strategies.coreset import Coreset

AUTHORS = [241, 156, 219, 115, 178, 32, 261, 119, 147, 34, 86, 33, 245, 75, 136, 218, 74, 165, 134, 221, 173, 68, 30,
           101, 155]


def embeddings():
    torch.manual_seed(2)
    return torch.randn(300, 16) * torch.linspace(0.5, 2.0, 16)


def test_same_ordered_picks_as_deepal_plus():
    emb = embeddings()

    def predictor(indices, mc_samples=0):
        return {"embedding": emb[torch.as_tensor(np.asarray(indices))]}

    ctx = SelectionContext(model=None, pool=None, labeled=np.arange(20), rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=predictor)
    assert Coreset().select(ctx, np.arange(20, 300), 25).tolist() == AUTHORS


def test_one_block_and_many_give_the_same_picks():
    emb = embeddings()
    one = k_center_greedy(emb[20:], emb[:20], 25, block=4096)
    many = k_center_greedy(emb[20:], emb[:20], 25, block=3)
    assert one.tolist() == many.tolist() == [i - 20 for i in AUTHORS]
