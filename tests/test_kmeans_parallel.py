"""k-means restarts run side by side (clustering._restarts, `workers` threads) give the centres and labels of
the restarts run one after another, bit for bit, and leave the generator where the sequential loop leaves
it: each restart starts from the draws its predecessors leave, also when a seeding draws differently from
the prediction (a step whose weights all vanish draws rng.integers instead of one uniform)."""

import numpy as np
import pytest
import torch
from test_clustering_fast import clustered, plain_kmeans  # the straightforward version
from test_kmeans_fast import embeddings

from al_bench.strategies.common import clustering
from al_bench.strategies.common.clustering import kmeans


@pytest.fixture
def fast_from_small(monkeypatch):
    """The screened seeding and float32 labelling from small sizes on, as in test_kmeans_fast."""
    monkeypatch.setattr(clustering, "SEED_MIN", (2, 8, 16))
    monkeypatch.setattr(clustering, "SEED_RANK", 8)
    monkeypatch.setattr(clustering, "LLOYD_MIN_WORK", 0)


def counting_restarts(monkeypatch):
    calls = []
    restart = clustering._restart

    def counted(*args, **kwargs):
        calls.append(1)
        return restart(*args, **kwargs)

    monkeypatch.setattr(clustering, "_restart", counted)
    return calls


def same(a, b):
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_restarts_equal_the_sequential_ones(fast_from_small, monkeypatch, workers):
    x = embeddings(700, 32, 12, 7)
    calls = counting_restarts(monkeypatch)
    for seed in range(2):
        rngs = [np.random.default_rng(seed) for _ in range(3)]
        par = kmeans(x, 40, rngs[0], n_init=5, max_iter=300, tol=1e-9, workers=workers)
        seq = kmeans(x, 40, rngs[1], n_init=5, max_iter=300, tol=1e-9, workers=1)
        plain = plain_kmeans(x, 40, rngs[2], 5, 300, 1e-9)
        assert same(par, seq) and same(par, plain)
        assert rngs[0].random() == rngs[1].random() == rngs[2].random()  # the generator left as the loop leaves it
    assert len(calls) == 2 * (5 + 5)  # every prediction held: no restart run twice


def test_restarts_compared_in_restart_order(fast_from_small, monkeypatch):
    """Every restart made to look tied (as test_kmeans_fast does): the float64 sums decide, strictly, so
    among restarts with equal sums the first one in restart order wins, whichever thread ends first."""
    monkeypatch.setattr(clustering._Float32Labels, "inertia", lambda self, c, labels: (1.0, 1.0))
    x = embeddings(500, 16, 10, 3)
    for seed in range(2):
        a = kmeans(x, 20, np.random.default_rng(seed), n_init=6, max_iter=300, tol=1e-9, workers=2)
        b = plain_kmeans(x, 20, np.random.default_rng(seed), 6, 300, 1e-9)
        assert same(a, b)


def test_a_seeding_that_draws_otherwise_sends_its_successors_back(monkeypatch):
    """Five distinct rows and k = 7: after five centres every weight is zero and the seeding draws
    rng.integers, not the predicted uniform; the later restarts run again from the actual state."""
    base = clustered(5, 3, 1)
    x = torch.cat([base] * 4)
    calls = counting_restarts(monkeypatch)
    rngs = [np.random.default_rng(4) for _ in range(3)]
    par = kmeans(x, 7, rngs[0], n_init=4, max_iter=50, tol=0.0, workers=2)
    assert len(calls) > 4  # the predictions failed, restarts were run again
    seq = kmeans(x, 7, rngs[1], n_init=4, max_iter=50, tol=0.0, workers=1)
    plain = plain_kmeans(x, 7, rngs[2], 4, 50, 0.0)
    assert same(par, seq) and same(par, plain)
    assert rngs[0].random() == rngs[1].random() == rngs[2].random()


def test_float64_path_and_the_default_worker_count(monkeypatch):
    """Below the fast paths' sizes (plain float64 passes), and workers taken from torch's thread count."""
    x = clustered(400, 6, 3)
    calls = counting_restarts(monkeypatch)
    want = plain_kmeans(x, 15, np.random.default_rng(5), 4, 300, 1e-9)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = kmeans(x, 15, np.random.default_rng(5), n_init=4, max_iter=300, tol=1e-9)
        assert torch.get_num_threads() == 2  # restored after
    finally:
        torch.set_num_threads(threads)
    assert same(got, want) and len(calls) == 4
