"""ASAL (Mayer & Timofte, WACV 2020, arXiv:1808.06671) on hand-made inputs whose right answer is
known.

No public code of the authors was found (searched GitHub for ASAL, the title, arXiv:1808.06671 and
Christoph Mayer's accounts ChristophMayer and 2006pmach; a third-party toolbox lists ASAL without
a code link), so nothing is pinned; the two rules are checked where the answer is known:
maximum-entropy generation (a linear generator and classifier: the entropy's maximum log C is
reached where all logits are equal) and sample matching (planted nearest images, block
invariance, distinct picks when several synthetic samples share a nearest image).
"""

import math

import numpy as np
import pytest
import torch
from test_gaal import LinearClassifier, LinearG, boundary_pool, gaal_ctx, identity_classifier, planted_strategy

from al_bench.strategies.asal import Asal
from al_bench.strategies.common.gan_query import neg_entropy, synthesize
from al_bench.strategies.common.retrieval import match_distinct, nearest


def test_entropy_ascent_on_z_reaches_equal_class_probabilities():
    g = torch.Generator().manual_seed(8)
    gen = LinearG(torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64),
                  (6, 1, 1))
    clf = LinearClassifier(0.5 * torch.randn(3, 6, generator=g, dtype=torch.float64),
                           torch.randn(3, generator=g, dtype=torch.float64))
    z0 = 0.5 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    start = -neg_entropy(clf(gen(z0)).logits)
    z, obj = synthesize(gen, identity_classifier(clf, 6), z0, neg_entropy, steps=300, lr=0.05, optimizer="adam",
                        z_penalty=0.0)
    assert start.max().item() < math.log(3) - 0.05  # every start was off the maximum
    assert torch.allclose(-obj, torch.full_like(obj, math.log(3)), atol=1e-6)
    logits = clf(gen(z)).logits
    assert torch.allclose(logits, logits.mean(1, keepdim=True).expand_as(logits), atol=2e-3)


def random_base(n=50, d=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_nearest_returns_the_planted_image_and_does_not_depend_on_the_block():
    base = random_base()
    planted = [17, 42, 3]
    queries = base[planted] + 1e-3  # each query sits next to its planted base row
    d, i = nearest(queries, base, r=4, block=2048)
    assert i[:, 0].tolist() == planted
    brute = ((queries[:, None] - base[None]) ** 2).sum(2)
    assert torch.equal(i, torch.argsort(brute, 1)[:, :4])
    assert torch.allclose(d, torch.sort(brute, 1).values[:, :4], rtol=1e-6)  # float32 keys
    for block in (1, 3, 7, 49, 50):
        d_b, i_b = nearest(queries, base, r=4, block=block)
        assert torch.equal(i_b, i) and torch.allclose(d_b, d, rtol=0, atol=1e-12)


def test_equal_distances_go_to_the_lower_index_in_every_block_split():
    base = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [3.0, 3.0]])
    for block in (1, 2, 3, 5):
        _, i = nearest(torch.zeros(1, 2), base, r=5, block=block)
        assert i[0].tolist() == [0, 1, 2, 3, 4]


def test_matching_is_distinct_and_earlier_queries_win():
    base = random_base()
    # queries 0..2 all sit on base row 5; query 3 on row 9
    queries = torch.stack([base[5], base[5] + 1e-4, base[5] - 1e-4, base[9]])
    picks = match_distinct(queries, base, block=16, r=1)
    second, third = nearest(base[5:6], base, r=3)[1][0, 1:].tolist()
    assert picks.tolist() == [5, second, third, 9]
    assert len(set(picks.tolist())) == 4
    # as many queries as rows, all on one row: every row once, nearest first
    picks = match_distinct(base[[5] * 50], base, block=7, r=2)
    assert sorted(picks.tolist()) == list(range(50))
    assert picks.tolist() == nearest(base[5:6], base, r=50)[1][0].tolist()
    with pytest.raises(ValueError):
        match_distinct(base[:3], base[:2])


@pytest.mark.parametrize("seed,features", [(0, "pixels"), (1, "pixels"), (0, "classifier")])
def test_asal_selects_the_real_image_nearest_its_maximum_entropy_sample(seed, features):
    pool, cands = boundary_pool(), np.arange(5)
    # two classes: the entropy is maximal on the boundary, at pixel (128, 153) on the generator's line;
    # the hand-made classifier's embedding is its input, so both feature spaces give the same answer
    strategy = planted_strategy(Asal, z_lr=0.05, z_steps=150, features=features)
    assert strategy.select(gaal_ctx(pool, seed), cands, 1).tolist() == [2]
    assert strategy.select(gaal_ctx(pool, seed), cands, 2).tolist() == [2, 0]
