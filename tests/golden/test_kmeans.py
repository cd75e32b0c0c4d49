"""k-means sampling against the usual baseline code, with the centres fixed so that k-means++
randomness is out of the comparison.

Reference: SineZHAN/deepALplus@93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20 (DeepAL+),
query_strategies/kmeans_sampling.py, KMeansSampling.query(n), the same body as
ej0cl6/deep-active-learning@eea3d2c703b83ce412f7dd6f518c017713d15ced. Run with scikit-learn 1.9.1 on
`embeddings()` below (float32, 200 x 4, all of them unlabeled), its `get_embeddings` returning them, with
the module's KMeans replaced: (1) k = 30, by fixed centres `centres(30)` (fit does nothing; predict =
nearest centre), which pins the picking rule: 7 of its 30 picks are not the candidate nearest the centre
overall; (2) k = 15, by sklearn KMeans with its other defaults (max_iter 300, tol 1e-4) but
init=`centres(15)`, n_init=1, which pins our Lloyd iterations as well (9 iterations, no cluster of
fewer than 5 members, so no tie between members). al-bench gives the same ordered picks in both.
"""

import numpy as np
import torch

from al_bench.strategies.common.clustering import assign, kmeans, nearest_distinct, nearest_member

FIXED_CENTRES = [0, 138, 196, 3, 35, 89, 6, 66, 8, 2, 38, 30, 12, 13, 14, 15, 186, 116, 18, 81, 20, 21, 9, 23, 24, 5,
                 26, 155, 28, 29]
LLOYD = [167, 1, 182, 95, 79, 188, 136, 114, 184, 82, 121, 15, 31, 107, 85]


def embeddings():
    torch.manual_seed(3)
    return torch.randn(200, 4)


def centres(k):
    x = embeddings()
    return (0.75 * x[:k] + 0.25 * x[k:2 * k]).double()  # float32 arithmetic, as in the reference run


def test_each_clusters_nearest_member_as_deepal_plus():
    x, c = embeddings().double(), centres(30)
    labels, _ = assign(x, c)
    assert nearest_member(x, c, labels).tolist() == FIXED_CENTRES


def test_the_nearest_candidate_overall_is_another_rule():
    x, c = embeddings().double(), centres(30)
    assert sum(a != b for a, b in zip(nearest_distinct(x, c).tolist(), FIXED_CENTRES)) >= 5


def test_lloyd_from_fixed_seeds_as_sklearn():
    x = embeddings().double()
    c, labels = kmeans(x, 15, np.random.default_rng(0), max_iter=300, tol=1e-4 / x.shape[1], init=centres(15))
    assert nearest_member(x, c, labels).tolist() == LLOYD


def test_an_empty_cluster_takes_the_nearest_free_candidate():
    x = torch.tensor([[0.0], [1.0], [10.0]], dtype=torch.float64)
    c = torch.tensor([[0.2], [0.4], [9.0]], dtype=torch.float64)  # nothing is nearest to centre 1
    labels, _ = assign(x, c)
    assert nearest_member(x, c, labels).tolist() == [0, 1, 2]


def test_one_chunk_and_many_give_the_same_clustering():
    x = embeddings().double()
    one = kmeans(x, 15, np.random.default_rng(5), n_init=2)
    many = kmeans(x, 15, np.random.default_rng(5), n_init=2, chunk_elems=7)
    assert torch.equal(one[1], many[1]) and torch.allclose(one[0], many[0], rtol=0, atol=1e-12)
    assert torch.equal(assign(x, one[0])[0], assign(x, one[0], chunk_elems=1)[0])
