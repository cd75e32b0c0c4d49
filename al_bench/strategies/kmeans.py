"""k-means sampling: cluster the candidates' penultimate embeddings into k clusters and take, in each
cluster, the member nearest its centre (a diversity baseline, e.g. in Ash et al. 2020,
arXiv:1906.03671, and Zhdanov 2019, arXiv:1901.05954).

Follows the usual baseline code, DeepAL+ (SineZHAN/deepALplus, query_strategies/kmeans_sampling.py,
KMeansSampling.query; the same as ej0cl6/deep-active-learning): sklearn KMeans(n_clusters=k) with the
defaults of the scikit-learn 1.0.2 its environment pins (10 k-means++ restarts, 300 Lloyd iterations,
tol 1e-4 of the mean feature variance), then per cluster its member nearest the centre, clusters in
centre order. tests/golden/test_kmeans.py pins its picks. Ours: the k-means itself (Lloyd's algorithm
from plain k-means++ seeds, Arthur & Vassilvitskii 2007) runs in torch on the selection device and is
shared by typiclust, probcover and alfamix; an empty cluster keeps its centre (sklearn relocates it)
and, having no member, takes the nearest candidate not picked yet (DeepAL+ would fail there).

Cost: time O(n_init (k N D + iterations N k D)): the seeding is k sequential passes over the
embeddings, each Lloyd iteration a blocked N x k x D product on the rows whose centre may have changed.
On CPU (common/clustering.py) the seeding screens rows with a rank-64 float32 bound (k passes over
N x 65 instead of N x D; exact float64 only for the ~3 % of rows it cannot rule out) and Lloyd's
passes label in float32 (float64 for the ~1-8 % of rows float32 cannot decide): the same centres and
labels (tests/test_kmeans_fast.py), each restart on one torch thread, the restarts side by side on
torch's threads (each from the draws its predecessors leave; compared in restart order: the same
result, tests/test_kmeans_parallel.py). At N = 10k, D = 512, k = 1,000 (bench, loaded 2-core VM):
~12.4 s of CPU for the 10 restarts (74.3 s before the screening), ~1.3 s a restart, about 0.5 s of it
seeding; on 2 threads each thread's share is ~6.2 s. Memory O(N D + k D) plus a (2M-element)
distance block and ~50 MB of blocks per extra thread.

References: arXiv:1901.05954, arXiv:1906.03671
"""

from __future__ import annotations

import numpy as np

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import kmeans, nearest_member


class Kmeans(Strategy):
    """k clusters over the candidates' embeddings, each cluster's member nearest its centre."""

    def __init__(self, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4):
        if int(n_init) < 1 or int(max_iter) < 1 or float(tol) < 0:
            raise ConfigError(f"strategy.n_init and strategy.max_iter must be >= 1 and tol >= 0, "
                              f"got {n_init}, {max_iter}, {tol}")
        self.n_init, self.max_iter, self.tol = int(n_init), int(max_iter), float(tol)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].double()
        # sklearn's tol is relative to the mean feature variance, kmeans()'s to their sum
        centres, labels = kmeans(emb, k, ctx.rng, self.n_init, self.max_iter, self.tol / emb.shape[1])
        return candidates[nearest_member(emb, centres, labels)]
