"""Golden test: BADGE equals the authors' code on fixed probabilities and embeddings.

Reference: JordanAsh/badge @ a2d18acd372cf0f61d9e75bfb0c879c107fbf9f6 (HEAD), query_strategies/badge_sampling.py,
BadgeSampling.query (factorised distances, "speedup proposed by Zhang et al."), called on a stub Strategy whose
get_embedding returns `golden_input()`'s embeddings and probabilities for the 12 candidates, none labeled; and
the first commit 6beb219736349fb19286faad6689cfba76b0dce3 (the paper's code): Strategy.get_grad_embedding on a
stub net returning (log p, embedding), then init_centers on that explicit embedding. Both gave the same picks.

Randomness: the authors draw each centre after the first with scipy.stats.rv_discrete(values=(arange(N), D^2 /
sum D^2)).rvs(size=1), which reads the global numpy RandomState. For this test every rv_discrete they build was
given seed=np.random.default_rng(s), one Generator shared by all draws; its uniform(size=1) yields the same
doubles as Generator.random(), which al-bench's rng.choice(n, p=...) reads once per draw, and both turn the
uniform u into the first index whose cumulative probability reaches u. So with ctx.rng = default_rng(s) the
picks must be identical in order: pinned for s = 0, 1, 2 and k = 6 and 12 (all candidates). The first centre
(largest gradient norm) takes no draw.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext

# ||g_i||^2 of the authors' explicit gradient embedding (6beb219 get_grad_embedding, float32 there)
AUTHORS_SQ_NORMS = [0.865086396377751, 0.004646593563856521, 1.057839455203089, 0.5153995800185661,
                    0.12185134881179144, 0.6997588184800625, 1.186417301093435, 0.6634616455941924,
                    0.5077462688376424, 0.9732748656730679, 0.8083653281215099, 0.08336752113330008]
# (seed, k) -> the authors' picks in order
AUTHORS_PICKS = {
    (0, 6): [6, 8, 2, 0, 1, 10],
    (0, 12): [6, 8, 2, 0, 1, 10, 9, 5, 7, 3, 11, 4],
    (1, 6): [6, 5, 11, 2, 10, 3],
    (1, 12): [6, 5, 11, 2, 10, 3, 7, 9, 4, 0, 1, 8],
    (2, 6): [6, 2, 4, 10, 0, 8],
    (2, 12): [6, 2, 4, 10, 0, 8, 9, 3, 1, 5, 7, 11],
}


def make_ctx(probs: torch.Tensor, emb: torch.Tensor, seed: int) -> SelectionContext:
    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"probs": probs[idx], "logits": torch.log(probs[idx]), "embedding": emb[idx]}

    return SelectionContext(model=None, pool=None, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=predictor)


def golden_input() -> tuple[torch.Tensor, torch.Tensor]:
    """12 candidates, C = 3 classes, D = 4 embedding dimensions (float64)."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2.0 * torch.randn(12, 3, generator=g, dtype=torch.float64), 1)
    emb = torch.randn(12, 4, generator=g, dtype=torch.float64)
    return probs, emb


def test_gradient_embedding_norms_equal_the_authors():
    from al_bench.strategies.badge import grad_factors

    probs, emb = golden_input()
    a = grad_factors(probs)
    explicit = torch.stack([torch.kron(a[i], emb[i]) for i in range(12)])  # the C x D embedding, built here only
    assert np.allclose(explicit.pow(2).sum(1).numpy(), AUTHORS_SQ_NORMS, rtol=1e-6)


@pytest.mark.parametrize("seed,k", sorted(AUTHORS_PICKS))
def test_picks_equal_the_authors_given_the_same_uniform_draws(seed, k):
    from al_bench.strategies.badge import Badge

    probs, emb = golden_input()
    ctx = make_ctx(probs, emb, seed)  # ctx.rng = np.random.default_rng(seed)
    assert Badge().select(ctx, np.arange(12), k).tolist() == AUTHORS_PICKS[(seed, k)]


def test_picks_map_back_to_pool_indices():
    from al_bench.strategies.badge import Badge

    probs, emb = golden_input()
    pool_probs = torch.cat([torch.full((5, 3), 1 / 3, dtype=torch.float64), probs])  # 5 other pool rows first
    pool_emb = torch.cat([torch.zeros(5, 4, dtype=torch.float64), emb])
    ctx = make_ctx(pool_probs, pool_emb, seed=0)
    picks = Badge().select(ctx, np.arange(5, 17), 6)
    assert (picks - 5).tolist() == AUTHORS_PICKS[(0, 6)]
