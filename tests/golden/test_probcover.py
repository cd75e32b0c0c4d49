"""ProbCover against the authors' code, on fixed embeddings and a fixed delta.

Reference: avihu111/TypiClust@4097a71c348f60492ab22be0c4c9da224e637af6, deep-al/pycls/al/prob_cover.py,
ProbCover(cfg, lSet, uSet, budgetSize, delta).select_samples(), run on CPU (Tensor.cuda as the identity).
Input: `embeddings()` below (500 rows, a multiple of their 500-row graph batch, so no row is skipped)
saved as float32 .npy and read by their load_features (which L2-normalises); lSet = rows 0..L-1, uSet
= the rest; delta = 0.4495, which no pair distance comes within 1.4e-4 of. Two cases: (L, k) = (50, 20)
and (0, 25); both stop before everything is covered. al-bench gives the same ordered picks.
"""

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.probcover import Probcover, probcover_select, radius_from_purity

DELTA = 0.4495
AUTHORS = {
    (50, 20): [481, 157, 465, 100, 171, 87, 214, 102, 144, 302, 71, 215, 263, 61, 88, 106, 109, 132, 143, 237],
    (0, 25): [232, 81, 204, 244, 236, 39, 301, 31, 313, 107, 481, 2, 26, 76, 171, 179, 335, 410, 465, 61, 118,
              143, 343, 23, 71],
}


def embeddings():
    torch.manual_seed(1)
    return torch.randn(500, 5) * torch.linspace(0.4, 1.6, 5)


def context(emb, n_labeled):
    emb = emb.double()

    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"embedding": emb[idx], "probs": torch.full((len(idx), 2), 0.5)}

    return SelectionContext(model=None, pool=None, labeled=np.arange(n_labeled), rng=np.random.default_rng(0),
                            device=torch.device("cpu"), predictor=predictor)


@pytest.mark.parametrize("n_labeled,k", list(AUTHORS))
def test_same_ordered_picks_as_the_authors_code(n_labeled, k):
    x = embeddings()
    picks = Probcover(delta=DELTA).select(context(x, n_labeled), np.arange(n_labeled, len(x)), k)
    assert picks.tolist() == AUTHORS[(n_labeled, k)]


def test_one_chunk_and_many_give_the_same_graph_and_picks():
    x = torch.nn.functional.normalize(embeddings().double(), dim=1)
    is_labeled = np.arange(500) < 50
    one = probcover_select(x, is_labeled, 20, DELTA, np.random.default_rng(0), chunk=4096)
    many = probcover_select(x, is_labeled, 20, DELTA, np.random.default_rng(0), chunk=7)
    assert one.tolist() == many.tolist() == AUTHORS[(50, 20)]
    pseudo = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    assert radius_from_purity(x, pseudo, 0.9, chunk=4096) == radius_from_purity(x, pseudo, 0.9, chunk=7)
