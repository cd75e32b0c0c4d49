"""TypiClust against the authors' code, with the clustering fixed so k-means randomness is out of it.

Reference: avihu111/TypiClust@4097a71c348f60492ab22be0c4c9da224e637af6, deep-al/pycls/al/typiclust.py,
TypiClust(cfg, lSet, uSet, budgetSize).select_samples(), run on CPU (faiss-cpu 1.15.1, its flat L2 index
in place of index_cpu_to_all_gpus, pandas 3.1.1). Input: `embeddings()` below saved as float32 .npy and
read by their load_features (which L2-normalises); lSet = rows 0..L-1, uSet = the rest; their kmeans()
replaced by `cluster_labels()` (nearest of the first L + k normalised rows). Settings: their constants
MIN_CLUSTER_SIZE 5, MAX_NUM_CLUSTERS 500, K_NN 20. Two cases: (L, k) = (20, 30), 38 of 50 clusters
kept; (10, 60), 32 of 70 kept, so the picks wrap round the cluster order. al-bench gives the same
ordered picks. With the paper's typicality (mean plain distance) 2 and 8 picks change.
"""

import numpy as np
import pytest
import torch

import al_bench.strategies.typiclust as typ
from al_bench.strategies.base import SelectionContext

AUTHORS = {
    (20, 30): [117, 333, 38, 78, 49, 246, 258, 374, 47, 61, 334, 35, 115, 255, 20, 21, 274, 24, 310, 250, 43, 45,
               82, 269, 71, 183, 80, 190, 93, 162],
    (10, 60): [73, 358, 333, 49, 13, 25, 246, 12, 35, 11, 330, 141, 20, 21, 112, 34, 250, 337, 96, 66, 286, 146,
               24, 27, 40, 45, 206, 67, 183, 93, 228, 244, 26, 390, 296, 318, 190, 78, 28, 83, 224, 102, 283, 53,
               211, 242, 33, 171, 37, 142, 52, 86, 393, 249, 214, 167, 267, 201, 71, 299],
}


def embeddings():
    torch.manual_seed(0)
    return torch.randn(400, 6) * torch.linspace(0.5, 1.5, 6)


def cluster_labels(x, n_clusters):
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    return (xn @ xn[:n_clusters].T).argmax(1)


def context(emb, n_labeled):
    emb = emb.double()

    def predictor(indices, mc_samples=0):
        return {"embedding": emb[torch.as_tensor(np.asarray(indices))]}

    return SelectionContext(model=None, pool=None, labeled=np.arange(n_labeled), rng=np.random.default_rng(0),
                            device=torch.device("cpu"), predictor=predictor)


def select(monkeypatch, n_labeled, k, **kw):
    """Typiclust.select on the raw embeddings, its k-means replaced by the fixed labels."""
    x = embeddings()
    calls = []

    def fixed_kmeans(xn, n_clusters, rng):
        calls.append(n_clusters)
        return None, cluster_labels(x, n_clusters)

    monkeypatch.setattr(typ, "kmeans", fixed_kmeans)
    picks = typ.Typiclust(**kw).select(context(x, n_labeled), np.arange(n_labeled, len(x)), k)
    assert calls == [n_labeled + k]
    return picks.tolist()


@pytest.mark.parametrize("n_labeled,k", list(AUTHORS))
def test_same_ordered_picks_as_the_authors_code(monkeypatch, n_labeled, k):
    assert select(monkeypatch, n_labeled, k) == AUTHORS[(n_labeled, k)]


@pytest.mark.parametrize("n_labeled,k", list(AUTHORS))
def test_the_papers_typicality_does_not_reproduce_the_code(monkeypatch, n_labeled, k):
    """Mean plain (not squared) distance: the pin must be able to tell the two apart."""
    assert select(monkeypatch, n_labeled, k, distance="euclidean") != AUTHORS[(n_labeled, k)]


def test_small_clusters_are_dropped_and_exhausted_ones_skipped():
    """Sizes 6, 5, 2 (one labeled point in the first): only the 6-cluster passes size > 5; once its
    5 unlabeled points are taken (where the authors' code would fail) the dropped clusters take turns,
    the larger first."""
    x = torch.arange(13, dtype=torch.float64)[:, None] ** 1.1
    labels = np.array([0] * 6 + [1] * 5 + [2] * 2)
    is_labeled = np.zeros(13, dtype=bool)
    is_labeled[0] = True
    picks = typ.typiclust_pick(x, labels, is_labeled, 8)
    assert sorted(picks[:5].tolist()) == [1, 2, 3, 4, 5]
    assert picks[5] in range(6, 11) and picks[6] in (11, 12) and picks[7] in range(6, 11)
