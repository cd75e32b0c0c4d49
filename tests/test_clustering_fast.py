"""The fast k-means paths (reused buffers, Hamerly's bounds in Lloyd's iterations, blocked distances)
give the same numbers as the straightforward computation written out below: every distance pass over
every row, one full N x k matrix."""

import numpy as np
import torch

from al_bench.strategies.common.clustering import assign, kmeans, kmeans_pp


def full_sq_dists(x, c):
    return ((x * x).sum(1, keepdim=True) + (c * c).sum(1)[None] - 2.0 * x @ c.T).clamp_min(0.0)


def plain_kmeans_pp(x, k, rng):
    n = x.shape[0]
    idx = [int(rng.integers(n))]
    dist = full_sq_dists(x, x[idx[0]][None])[:, 0]
    for _ in range(k - 1):
        w = dist.double().numpy()
        i = int(rng.choice(n, p=w / w.sum())) if w.sum() > 0 else int(rng.integers(n))
        idx.append(i)
        dist = torch.minimum(dist, full_sq_dists(x, x[i][None])[:, 0])
    return x[idx].clone()


def plain_kmeans(x, k, rng, n_init, max_iter, tol, init=None):
    x, best = x.double(), None
    for _ in range(1 if init is not None else n_init):
        centres = init.double().clone() if init is not None else plain_kmeans_pp(x, k, rng)
        for _ in range(max_iter):
            labels = full_sq_dists(x, centres).min(dim=1).indices
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            shift = (new - centres).pow(2).sum()
            centres = new
            if shift <= tol * x.var(dim=0).sum().clamp_min(1e-30):
                break
        d, labels = full_sq_dists(x, centres).min(dim=1)
        if best is None or float(d.sum()) < best[0]:
            best = (float(d.sum()), centres, labels)
    return best[1], best[2]


def clustered(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(8, d, generator=g, dtype=torch.float64)
    return torch.relu(means[torch.randint(0, 8, (n,), generator=g)] + torch.randn(n, d, generator=g,
                                                                                   dtype=torch.float64))


def test_seeding_draws_the_same_centres():
    x = clustered(600, 16, 0)
    assert torch.equal(kmeans_pp(x, 40, np.random.default_rng(3)), plain_kmeans_pp(x, 40, np.random.default_rng(3)))


def test_lloyd_with_bounds_equals_full_passes():
    x = clustered(800, 12, 1)
    for seed in range(3):
        fast = kmeans(x, 30, np.random.default_rng(seed), n_init=2, max_iter=300, tol=1e-9)
        plain = plain_kmeans(x, 30, np.random.default_rng(seed), 2, 300, 1e-9)
        assert torch.equal(fast[1], plain[1]) and torch.equal(fast[0], plain[0])


def test_ties_duplicate_rows_and_centres():
    base = clustered(50, 3, 2)
    x = torch.cat([base, base, base[:10]])  # every row at least twice: ties between rows
    init = torch.cat([base[:6], base[:2]])  # two centres given twice: ties between centres, empty clusters
    fast = kmeans(x, 8, np.random.default_rng(0), max_iter=50, tol=0.0, init=init)
    plain = plain_kmeans(x, 8, np.random.default_rng(0), 1, 50, 0.0, init=init)
    assert torch.equal(fast[1], plain[1]) and torch.equal(fast[0], plain[0])
    assert torch.equal(assign(x, init)[0], full_sq_dists(x, init).min(dim=1).indices)  # the first of tied centres
    assert torch.equal(kmeans_pp(x, 60, np.random.default_rng(1)), plain_kmeans_pp(x, 60, np.random.default_rng(1)))


def test_blocks_of_any_size_give_the_same_labels():
    x = clustered(300, 5, 4)
    c = x[:17]
    full = assign(x, c)
    for chunk in (1, 17, 100, 1 << 22):
        part = assign(x, c, chunk_elems=chunk)
        assert torch.equal(part[0], full[0])  # a one-row block may round the distances differently (1e-14)
        assert torch.allclose(part[1], full[1], rtol=0, atol=1e-12)
    a = kmeans(x, 17, np.random.default_rng(2), n_init=2, chunk_elems=5)
    b = kmeans(x, 17, np.random.default_rng(2), n_init=2)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_nearest_member_in_row_blocks(monkeypatch):
    from al_bench.strategies.common import clustering

    x = clustered(200, 4, 5)
    x = torch.cat([x, x[:20]])  # tied members
    c, labels = kmeans(x, 12, np.random.default_rng(0))
    d_own = (x - c[labels]).pow(2).sum(1).numpy()
    lab = labels.numpy()
    plain = [min(np.flatnonzero(lab == j), key=lambda i: (d_own[i], i)) for j in range(12)]
    monkeypatch.setattr(clustering, "BLOCK", 4)  # 4 x 4 / D: rows of 4 at a time
    assert clustering.nearest_member(x, c, labels).tolist() == plain
