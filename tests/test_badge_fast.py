"""BADGE's factorised k-means++ (no C x D gradient embedding, buffers reused between picks) draws the
same picks as k-means++ over the explicit gradient embeddings g = (p - onehot(argmax p)) (x) e."""

import numpy as np
import torch

from al_bench.strategies.badge import factorised_sq_dist, grad_factors, kmeans_pp_gradients


def explicit_pp(probs, emb, k, rng):
    a = grad_factors(probs)
    g = (a[:, :, None] * emb.double()[:, None, :]).flatten(1)  # (N, C D)
    n = g.shape[0]
    i = int(torch.argmax((g * g).sum(1)))
    picks, dist = [i], ((g - g[i]) ** 2).sum(1)
    for _ in range(k - 1):
        w = dist.numpy()
        i = int(rng.choice(n, p=w / w.sum()))
        picks.append(i)
        dist = torch.minimum(dist, ((g - g[i]) ** 2).sum(1))
    return picks


def inputs(n, c, d, seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2.0 * torch.randn(n, c, generator=g, dtype=torch.float64), dim=1)
    emb = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64))
    return probs, emb


def test_same_picks_as_explicit_gradient_embeddings():
    for seed in range(3):
        probs, emb = inputs(300, 10, 32, seed)
        fast = kmeans_pp_gradients(probs, emb, 60, np.random.default_rng(seed)).tolist()
        assert fast == explicit_pp(probs, emb, 60, np.random.default_rng(seed))


def test_duplicates_and_buffer_reuse():
    probs, emb = inputs(40, 4, 6, 7)
    probs, emb = torch.cat([probs, probs]), torch.cat([emb, emb])  # every gradient twice: tied distances
    fast = kmeans_pp_gradients(probs, emb, 30, np.random.default_rng(1)).tolist()
    assert fast == explicit_pp(probs, emb, 30, np.random.default_rng(1))
    a = grad_factors(probs)
    buf = torch.full((80,), 123.0, dtype=torch.float64)
    assert torch.equal(factorised_sq_dist(a, emb, 5, out=buf), factorised_sq_dist(a, emb, 5))
