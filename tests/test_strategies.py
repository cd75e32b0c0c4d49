"""The core strategies on hand-made inputs whose right answer is known."""

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.clustering import k_center_greedy
from al_bench.strategies.coreset import Coreset
from al_bench.strategies.entropy import Entropy
from al_bench.strategies.least_confidence import LeastConfidence
from al_bench.strategies.margin import Margin
from al_bench.strategies.random import Random

PROBS = torch.tensor([
    [0.90, 0.05, 0.05],   # 0: confident
    [0.34, 0.33, 0.33],   # 1: flattest
    [0.50, 0.49, 0.01],   # 2: smallest top-2 gap
    [0.60, 0.20, 0.20],   # 3
    [0.45, 0.10, 0.45],   # 4: top-2 tie
])


def fake_ctx(probs=PROBS, embedding=None, labeled=np.array([], dtype=np.int64)):
    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(indices, dtype=torch.long)
        out = {"probs": probs[idx], "logits": probs[idx].log()}
        if embedding is not None:
            out["embedding"] = embedding[idx]
        return out
    return SelectionContext(model=None, pool=None, labeled=labeled, rng=np.random.default_rng(0),
                            device=torch.device("cpu"), predictor=predictor)


def test_entropy_picks_the_flattest_distributions():
    # H: 0 -> 0.394, 1 -> 1.0986, 2 -> 0.7414, 3 -> 0.950, 4 -> 0.9433
    picks = Entropy().select(fake_ctx(), np.arange(5), 3)
    assert picks.tolist() == [1, 3, 4]


def test_margin_picks_the_smallest_top2_gap():
    # gaps: 0.85, 0.01, 0.01, 0.40, 0.00
    assert sorted(Margin().select(fake_ctx(), np.arange(5), 3).tolist()) == [1, 2, 4]
    assert Margin().select(fake_ctx(), np.arange(5), 1).tolist() == [4]


def test_ties_are_broken_at_random_by_the_selections_generator_not_by_position():
    """A pool ordered class by class must not give the earlier classes every tie."""
    from al_bench.strategies.base import top_k

    scores = torch.tensor([1.0] * 6 + [0.0] * 4)  # six tied best
    firsts = [tuple(top_k(scores, 3, np.random.default_rng(s))) for s in range(200)]
    counts = np.bincount(np.concatenate(firsts), minlength=10)
    assert counts[6:].sum() == 0 and counts[:6].min() > 60  # each tied index picked ~100 times of 200
    assert top_k(scores, 3, np.random.default_rng(7)).tolist() == top_k(scores, 3, np.random.default_rng(7)).tolist()
    assert top_k(scores, 3).tolist() == [0, 1, 2]  # without a generator: by position


def test_more_picks_than_candidates_is_refused_by_every_strategy():
    from al_bench import ConfigError

    with pytest.raises(ConfigError, match="asked for 6 picks from 5 candidates"):
        Margin().select(fake_ctx(), np.arange(5), 6)


def test_least_confidence_picks_the_lowest_max_probability():
    # max p: 0.90, 0.34, 0.50, 0.60, 0.45
    assert LeastConfidence().select(fake_ctx(), np.arange(5), 2).tolist() == [1, 4]


def test_scores_only_look_at_the_candidates():
    # candidates map to pool indices: the answer is in pool indices
    assert Entropy().select(fake_ctx(), np.array([0, 2, 3]), 1).tolist() == [3]


def test_random_returns_k_distinct_candidates():
    cands = np.arange(10, 60)
    picks = Random().select(fake_ctx(), cands, 20)
    assert len(set(picks.tolist())) == 20 and set(picks.tolist()) <= set(cands.tolist())


def test_k_center_greedy_on_a_small_2d_set():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 5.0], [10.0, 1.0]])
    # labeled centre at the origin: farthest is (10,1) (d^2=101); then min distances are
    # (1,0):1, (10,0):1, (0,5):25 -> (0,5); then (1,0) and (10,0) tie at 1 -> the earlier.
    picks = k_center_greedy(points, torch.tensor([[0.0, 0.0]]), 3)
    assert picks.tolist() == [4, 3, 1]


def test_coreset_uses_the_labeled_set_as_centres():
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [-4.0, 0.0], [5.1, 5.0]])
    ctx = fake_ctx(probs=torch.full((5, 2), 0.5), embedding=emb, labeled=np.array([0]))
    # candidates 1..4: farthest from (0,0) is 4 (d^2 = 51.01); then from {0, 4}: 3 (16) beats 2 (0.01)
    assert Coreset().select(ctx, np.array([1, 2, 3, 4]), 2).tolist() == [4, 3]


@pytest.mark.parametrize("strategy", [Entropy(), Margin(), LeastConfidence(), Coreset(), Random()])
def test_every_core_strategy_returns_k_distinct_candidates(strategy):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(40, 4, generator=g), 1)
    emb = torch.randn(40, 3, generator=g)
    cands = np.arange(10, 40)
    picks = strategy.select(fake_ctx(probs, emb, labeled=np.arange(10)), cands, 7)
    assert len(picks) == 7 and len(set(picks.tolist())) == 7 and set(picks.tolist()) <= set(cands.tolist())
