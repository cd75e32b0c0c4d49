"""ProbCover's greedy with out-degrees decremented as points get covered picks what recounting every
ball's uncovered points at each pick (the straightforward rule, written out below) picks, ties and
the uniform tail included; the graph from blocks of any size is the same."""

import numpy as np
import torch

from al_bench.strategies.probcover import ball_edges, probcover_select


def recount_greedy(x, is_labeled, k, delta, rng):
    n = x.shape[0]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    ball = d < delta * delta
    ball |= torch.eye(n, dtype=torch.bool)
    covered = ball[torch.as_tensor(is_labeled)].any(0)
    pickable = ~torch.as_tensor(is_labeled)
    picks = []
    for _ in range(k):
        degree = (ball & ~covered[None, :]).sum(1)
        degree[~pickable] = -1
        i = int(torch.argmax(degree))
        if int(degree[i]) <= 0:
            rest = torch.nonzero(pickable).squeeze(1).numpy()
            return picks + rng.choice(rest, size=k - len(picks), replace=False).tolist()
        picks.append(i)
        pickable[i] = False
        covered |= ball[i]
    return picks


def points(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, 6, generator=g, dtype=torch.float64), dim=1)
    return torch.cat([x, x[: n // 4]])  # duplicates: tied degrees


def test_decremented_degrees_pick_as_recounting():
    x = points(120, 0)
    is_labeled = np.zeros(len(x), dtype=bool)
    is_labeled[::13] = True
    for delta in (0.3, 0.6, 1.2):  # from sparse balls to everything covered after a few picks (uniform tail)
        fast = probcover_select(x, is_labeled, 40, delta, np.random.default_rng(1)).tolist()
        assert fast == recount_greedy(x, is_labeled, 40, delta, np.random.default_rng(1))


def test_blocks_of_any_size_give_the_same_edges():
    x = points(90, 1)
    full = ball_edges(x, 0.7, chunk=len(x))
    for chunk in (None, 1, 7):
        part = ball_edges(x, 0.7, chunk=chunk)
        assert torch.equal(part[0], full[0]) and torch.equal(part[1], full[1])
