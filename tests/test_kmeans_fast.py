"""The screened k-means++ seeding (rank-p lower bounds, exact recomputation of the rows they cannot rule
out), the float32 labelling of Lloyd's passes (float64 for the rows float32 cannot decide) and the
restart comparison on bounded sums give the same centres and labels, bit for bit, as the straightforward
computation written out below (numpy's rng.choice, every distance of every row in one N x k matrix)."""

import numpy as np
import pytest
import torch
from test_clustering_fast import full_sq_dists, plain_kmeans, plain_kmeans_pp  # the straightforward versions

from al_bench.strategies.common import clustering
from al_bench.strategies.common.clustering import _draw, kmeans, kmeans_pp


def embeddings(n, d, groups, seed):
    """Post-ReLU class-clustered rows, as penultimate embeddings are."""
    g = torch.Generator().manual_seed(seed)
    means = torch.relu(torch.randn(groups, d, generator=g, dtype=torch.float64))
    x = means[torch.randint(0, groups, (n,), generator=g)] + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return torch.relu(x).float().double()  # float32 values, as the strategies' embeddings


@pytest.fixture
def fast_from_small(monkeypatch):
    """The fast paths from small sizes on (they start at k = 32, D = 128, N = 1024 and N k D = 2^24)."""
    monkeypatch.setattr(clustering, "SEED_MIN", (2, 8, 16))
    monkeypatch.setattr(clustering, "SEED_RANK", 8)
    monkeypatch.setattr(clustering, "LLOYD_MIN_WORK", 0)


def test_draw_is_numpys_choice():
    w = np.random.default_rng(0).random(997) ** 6
    w[::5] = 0.0
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    scratch = (np.empty(len(w)), np.empty(len(w)))
    for _ in range(3000):
        i = _draw(a, torch.from_numpy(w), scratch)
        assert i == int(b.choice(len(w), p=w / w.sum()))
        w[i] *= 0.3
    assert _draw(a, torch.zeros(5, dtype=torch.float64), scratch) == int(b.integers(5))  # all zero: uniform
    assert a.random() == b.random()


@pytest.mark.parametrize("n", [1203, 1200])  # the last N % 4 rows go through another gemv kernel
def test_screened_seeding_draws_the_same_centres(fast_from_small, n):
    x = embeddings(n, 48, 12, n)
    x = torch.cat([x, x[:40]])  # duplicate rows: zero distances, ties
    for seed in range(3):
        screen = clustering._seed_screen(x, (x * x).sum(1), 150)
        assert screen is not None
        fast = kmeans_pp(x, 150, np.random.default_rng(seed), screen=screen)
        assert torch.equal(fast, plain_kmeans_pp(x, 150, np.random.default_rng(seed)))


def test_screen_rules_out_most_rows(fast_from_small):
    """The screen must do its job: late in the seeding most rows are ruled out, none wrongly."""
    x = embeddings(2000, 64, 10, 5)
    screen = clustering._seed_screen(x, (x * x).sum(1), 200)
    centres = kmeans_pp(x, 200, np.random.default_rng(0), screen=False)
    dist = full_sq_dists(x, centres[:-1]).min(dim=1).values
    screen.dist.copy_(dist)
    i = int(torch.nonzero((x == centres[-1]).all(1))[0])
    rows = screen.rows(i)
    lowered = torch.nonzero(full_sq_dists(x, x[i][None])[:, 0] < dist).squeeze(1)
    assert bool(torch.isin(lowered, rows).all()) and rows.numel() < 0.5 * len(x)


@pytest.mark.parametrize("n", [1203, 1202, 1200])
def test_lowering_equals_the_whole_pass_bit_for_bit(fast_from_small, n):
    """Rows of rank 6 (the rank-8 bound is then as tight as rounding allows), some of them a hair (or
    more) above their distance to x_i: exactly these are lowered, to the whole pass's number."""
    g = torch.Generator().manual_seed(n)
    x = (torch.randn(n, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 64, generator=g, dtype=torch.float64))
    x_sq = (x * x).sum(1)
    screen = clustering._seed_screen(x, x_sq, 50)
    for i in (0, 7, n - 1):
        whole = torch.mv(x, x[i]).mul_(-2.0).add_(x_sq + x_sq[i]).clamp_min_(0.0)
        near = torch.rand(n, generator=g) < 1 / 16  # fewer than N / 8 rows to lower: the screened path
        near[-3:] = True
        for above in (whole * 1e-7 + 1e-12, torch.rand(n, generator=g, dtype=torch.float64)):
            dist = torch.where(near, whole + above, 0.5 * whole)
            screen.dist.copy_(dist)
            want = torch.minimum(dist, whole)
            screen.lower(x, x_sq, i, dist)
            assert torch.equal(dist, want)


def assert_same_as_full_passes(x, k, seed, n_init, tol):
    """kmeans (screened seeding, float32 labels) gives the labels and centres of full float64 passes."""
    fast = kmeans(x, k, np.random.default_rng(seed), n_init=n_init, max_iter=300, tol=tol)
    plain = plain_kmeans(x, k, np.random.default_rng(seed), n_init, 300, tol)
    assert torch.equal(fast[1], plain[1]) and torch.equal(fast[0], plain[0])


def test_float32_labels_and_restarts_equal_full_passes(fast_from_small):
    x = embeddings(900, 40, 15, 1)
    for seed in range(2):
        assert_same_as_full_passes(x, 60, seed, 3, 1e-9)


def test_near_ties_go_to_float64(fast_from_small):
    """Centres 1e-9 apart: float32 cannot tell them apart, float64 can; rows given twice, so restarts
    that end in the same clustering tie exactly and the first one is kept, as with full passes."""
    base = embeddings(300, 24, 6, 2)
    init = torch.cat([base[:20], base[:20] + 1e-9])
    x = torch.cat([base, base])
    fast = kmeans(x, 40, np.random.default_rng(0), max_iter=5, tol=0.0, init=init)
    ref = plain_kmeans_init(x, init, 5)
    assert torch.equal(fast[1], ref[1]) and torch.equal(fast[0], ref[0])
    assert_same_as_full_passes(x, 12, 3, 4, 0.0)


def plain_kmeans_init(x, init, max_iter):
    centres, k = init.clone(), init.shape[0]
    for _ in range(max_iter):
        labels = full_sq_dists(x, centres).min(dim=1).indices
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        new = torch.where(counts[:, None] > 0, torch.zeros_like(centres).index_add_(0, labels, x)
                          / counts.clamp_min(1)[:, None], centres)
        shift = (new - centres).pow(2).sum()
        centres = new
        if shift <= 0.0:
            break
    return centres, full_sq_dists(x, centres).min(dim=1).indices


def test_restarts_too_close_to_call_use_the_float64_sums(fast_from_small, monkeypatch):
    """Every restart made to look tied: the float64 pass's sums must pick the same restart as full passes."""
    monkeypatch.setattr(clustering._Float32Labels, "inertia", lambda self, c, labels: (1.0, 1.0))
    x = embeddings(700, 20, 12, 3)
    for seed in range(3):
        assert_same_as_full_passes(x, 25, seed, 4, 1e-9)


def test_float32_labels_of_rows_halfway_between_two_centres(fast_from_small):
    """Rows within 1e-9 of the bisector of two centres: float32 cannot order the two, float64 can."""
    g = torch.Generator().manual_seed(0)
    c = torch.rand(8, 32, generator=g, dtype=torch.float64)
    pair = torch.randint(0, 8, (600, 2), generator=g)
    pair = pair[pair[:, 0] != pair[:, 1]]
    t = 1e-9 * torch.randn(len(pair), 1, generator=g, dtype=torch.float64)
    x = 0.5 * (c[pair[:, 0]] + c[pair[:, 1]]) + t * (c[pair[:, 1]] - c[pair[:, 0]])
    x_sq, c_sq = (x * x).sum(1), (c * c).sum(1)
    labels, d1, d2 = clustering._Float32Labels(x, x_sq, 8, 1 << 21)(c, c_sq, 1 << 21)
    full = full_sq_dists(x, c)
    assert torch.equal(labels, full.min(dim=1).indices)
    top2 = full.topk(2, dim=1, largest=False).values
    assert bool((d1 >= top2[:, 0]).all() and (d2 <= top2[:, 1]).all())  # Hamerly's bounds stay bounds


def test_kept_labels_and_half_gaps_are_safe(fast_from_small):
    """Rows of rank 6 (the screen's bound is as tight as rounding allows), each a hair nearer another
    centre than the one it had, or halfway: the screened pass must not keep the old one, nor pick by
    its own rounding where the float64 pass's decides. Half gaps from float32
    stay below the exact ones, also for centres 1e-9 apart."""
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(6, 64, generator=g, dtype=torch.float64)
    c = torch.rand(10, 6, generator=g, dtype=torch.float64) @ basis
    pair = torch.randint(0, 10, (3000, 2), generator=g)
    pair = pair[pair[:, 0] != pair[:, 1]]
    t = 1e-8 * torch.rand(len(pair), 1, generator=g, dtype=torch.float64)  # towards the second centre
    t[::3] = 0.0  # midpoints: the two distances agree to rounding, the float64 pass's own rounding decides
    x = 0.5 * (c[pair[:, 0]] + c[pair[:, 1]]) + t * (c[pair[:, 1]] - c[pair[:, 0]])
    x = torch.cat([x, c])  # the centres' own rows, far from any bisector: these keep their label
    x_sq, c_sq = (x * x).sum(1), (c * c).sum(1)
    screen = clustering._seed_screen(x, x_sq, 10)
    fast = clustering._Float32Labels(x, x_sq, 10, 1 << 21)
    own = torch.cat([pair[:, 0], torch.arange(10)])
    labels, d1, d2 = fast.keep(screen, c, c_sq, 1 << 21, None, own)
    full = full_sq_dists(x, c)
    assert torch.equal(labels, full.min(dim=1).indices)
    top2 = full.topk(2, dim=1, largest=False).values
    tol = 1e-12 * (x_sq + c_sq.max())  # the rounding of `full` itself
    assert bool((d1 >= top2[:, 0] - tol).all() and (d2 <= top2[:, 1] + tol).all())
    near = torch.cat([c, c[:3] + 1e-9])
    gaps = 0.5 * (full_sq_dists(near, near) + torch.diag(torch.full((13,), float("inf")))).min(dim=1).values.sqrt()
    fast = clustering._Float32Labels(x, x_sq, 13, 1 << 21)
    assert bool((fast.half_gap(near, (near * near).sum(1)) <= gaps).all())
