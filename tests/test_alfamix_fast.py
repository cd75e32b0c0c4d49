"""ALFA-Mix's learned alpha search without autograd (LinearAlphaSearch: row blocks, reused buffers) gives
the flips and the final alpha of the autograd + torch.optim.Adam search (learned_flips: the autograd path
al-bench keeps for other heads, written as the authors' loop), bit for bit; the reused-array start draws
equal rng.normal's; candidate_set is the same with either search."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench.strategies import alfamix
from al_bench.strategies.alfamix import Alfamix, LinearAlphaSearch, candidate_set, class_anchors, learned_flips


def inputs(n, d, c, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    emb = torch.relu(torch.randn(n, d, generator=g))
    head = torch.nn.Linear(d, c, bias=bias)
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, d, generator=g))
        if bias:
            head.bias.copy_(0.1 * torch.randn(c, generator=g))
    anchors = torch.relu(torch.randn(c, d, generator=g))
    return emb, head, anchors, g


@pytest.mark.parametrize("n,block,bias", [(2600, 1024, True), (1000, 256, False), (77, 1024, True)])
def test_search_equals_autograd_and_adam_bit_for_bit(monkeypatch, n, block, bias):
    monkeypatch.setattr(LinearAlphaSearch, "BLOCK", block)
    emb, head, anchors, g = inputs(n, 64, 5, n, bias)
    pred = head(emb).argmax(1)
    search = LinearAlphaSearch(head, emb, pred)
    for eps in (0.03125, 0.25):
        for anchor in anchors[:2]:
            start = (eps * torch.rand(n, 64, generator=g, dtype=torch.float64)).clamp_(1e-8, eps)
            with torch.enable_grad():
                want_alpha = torch.empty(n, 64)
                want = learned_flips(head, emb, anchor, pred, start.float(), eps, 5, 0.1, 0.01, want_alpha)
            alpha = torch.empty(n, 64)
            got = search.flips(anchor, start, eps, 5, 0.1, 0.01, final_alpha=alpha)  # float64 start: rounded as .float()
            assert torch.equal(got, want) and torch.equal(alpha, want_alpha)
            assert 0 < int(want.sum()) < n or eps < 0.1  # some rows flip, not all


def test_start_draws_are_rng_normal():
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    strategy = Alfamix()
    for eps in (0.03125, 0.0625, 0.09375):
        got = strategy.alpha_init(SimpleNamespace(rng=a), eps, (300, 17))
        want = torch.as_tensor(b.normal(eps / 2, eps / 2, size=(300, 17))).clamp_(1e-8, eps)
        assert torch.equal(got, want)
    assert a.random() == b.random()


class Wrapped(torch.nn.Module):
    """The same linear head behind another module type: candidate_set takes the autograd search."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, z):
        return self.head(z)


def test_candidate_set_is_the_same_with_either_search():
    emb, head, _, g = inputs(600, 32, 4, 3)
    lab = torch.relu(torch.randn(20, 32, generator=g))
    anchors = class_anchors(lab, torch.arange(20) % 4, 4)
    probs = torch.softmax(head(emb), 1).detach()
    u = torch.rand(600, 32, generator=g)

    def init(eps, shape):
        return (eps * u.double()).clamp(1e-8, eps)

    for k in (20, 60):
        fast = candidate_set(head, emb, probs, anchors, k, "learned", 0.03125, init)
        slow = candidate_set(Wrapped(head), emb, probs, anchors, k, "learned", 0.03125, init)
        assert torch.equal(fast[0], slow[0]) and fast[1] == slow[1] and int(fast[0].sum()) > k


def test_the_search_is_used_for_a_linear_head(monkeypatch):
    calls = []
    monkeypatch.setattr(alfamix, "learned_flips", lambda *a, **kw: calls.append(1))
    emb, head, anchors, _ = inputs(50, 8, 3, 0)
    candidate_set(head, emb, torch.softmax(head(emb), 1).detach(), anchors, 5, "learned", 0.5,
                  lambda eps, shape: torch.full(shape, eps / 2))
    assert calls == []
