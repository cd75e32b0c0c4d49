"""k-center greedy scales with the pool: the same picks as a brute-force N x N implementation,
and no intermediate tensor of N x N (or even N x D) elements."""

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.clustering import k_center_greedy, min_sq_dist
from al_bench.strategies.coreset import Coreset


def brute_force_k_center(x: torch.Tensor, centres: torch.Tensor, k: int) -> list[int]:
    """Textbook k-center greedy on the full float64 distance matrix."""
    x, centres = x.double(), centres.double()
    d_xx = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1).min(1).values if len(centres) else \
        ((x - x.mean(0)) ** 2).sum(1)
    picks = []
    for _ in range(k):
        i = int(torch.argmax(dist))
        picks.append(i)
        dist = torch.minimum(dist, d_xx[i])
        dist[i] = -1.0
    return picks


class ShapeLog(TorchDispatchMode):
    """Records the element count of every tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.sizes.append((str(func), tuple(t.shape)))
        return out


def test_same_picks_as_brute_force_with_and_without_labeled_centres():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=g) * torch.linspace(0.5, 2.0, 16)  # anisotropic, no ties
    lab = torch.randn(30, 16, generator=g)
    for centres in (lab, lab[:0]):
        fast = k_center_greedy(x, centres, 40, block=64)  # several blocks in both directions
        assert fast.tolist() == brute_force_k_center(x, centres, 40)


def test_min_sq_dist_matches_exact_distances():
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(300, 8, generator=g), torch.randn(70, 8, generator=g)
    exact = ((x.double()[:, None] - c.double()[None]) ** 2).sum(-1).min(1).values
    assert torch.allclose(min_sq_dist(x, c, block=32).double(), exact, rtol=1e-5, atol=1e-5)


def test_duplicates_are_never_picked_twice():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    picks = k_center_greedy(x, torch.zeros(1, 2), 4)
    assert sorted(picks.tolist()) == [0, 1, 2, 3] and picks[0] == 1  # ties: the earliest first


def test_no_intermediate_reaches_n_by_d_or_n_by_n():
    n, d, k, block = 3000, 64, 25, 256
    g = torch.Generator().manual_seed(2)
    x, lab = torch.randn(n, d, generator=g), torch.randn(500, d, generator=g)
    log = ShapeLog()
    with log:
        picks = k_center_greedy(x, lab, k, block=block)
    assert len(set(picks.tolist())) == k
    sizes = [s for s in log.sizes]
    largest = max(sizes, key=lambda s: int(np.prod(s[1])))
    # extra memory O(N) plus a fixed block: nothing of N x D (the input's size) or N x N elements
    assert int(np.prod(largest[1])) <= max(n, block * block, block * d), largest
    assert not any(len(s) == 2 and min(s) >= n for _, s in sizes)


def test_coreset_select_through_a_context_never_builds_an_n_by_n_matrix(monkeypatch):
    n, d = 2000, 32
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(n, d, generator=g)
    seen = []
    real_cdist = torch.cdist

    def spy_cdist(a, b, *args, **kwargs):
        seen.append((a.shape[0], b.shape[0]))
        return real_cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", spy_cdist)
    calls = []

    def predictor(indices, mc_samples=0):
        calls.append(len(indices))
        return {"embedding": emb[torch.as_tensor(indices)], "probs": torch.full((len(indices), 2), 0.5)}

    ctx = SelectionContext(model=None, pool=None, labeled=np.arange(100), rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=predictor)
    cands = np.arange(100, n)
    log = ShapeLog()
    with log:
        picks = Coreset().select(ctx, cands, 50)
    assert len(set(picks.tolist())) == 50 and set(picks.tolist()) <= set(cands.tolist())
    assert calls == [len(cands), 100]  # one prediction pass per index set
    assert all(min(s) < len(cands) for s in seen)
    assert not any(len(s) == 2 and s[0] >= len(cands) and s[1] >= len(cands) for _, s in log.sizes)
