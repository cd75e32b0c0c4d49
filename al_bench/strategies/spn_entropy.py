"""Uncertainty sampling with a sum-product network over the CNN's features (Khosravani & Zilles,
"Using Sum-Product Networks to Assess Uncertainty in Deep Active Learning", TMLR 2024,
arXiv:2206.09798): each cycle an SPN is learned on the labeled set's (embedding, label) pairs, and its
conditional p(y | x) at each candidate's embedding replaces the softmax in a standard acquisition
function; this word takes the entropy H(p(y | x)) (nats, highest first), `spn_var_ratio` the
variation ratio. The SPN, its learning and its conditional: al_bench.strategies.common.spn
(SPFlow's LearnSPN; optional extra `al-bench[spn]`).

Both scores are ranked by their logarithm, computed from log p(y | x): the same order, without
underflow. Class log-likelihoods more than ~745 nats apart (a candidate far from the labeled rows, or
tight Gaussian leaves) make p(y | x) exactly one-hot in float64, and H or 1 - max p exactly 0, which
would leave those candidates' order to the random tie-break. (Quickstart, cycle 0, 4 labeled rows a
class: H > 1e-6 for 746 of the 1,307 candidates.)

Not implemented: the SPN-derived weights that an earlier version of the paper multiplies into the
acquisition functions (its abstract on scite; the published abstract no longer mentions them); the
paper's text beyond the abstract was not at hand, so its SPN settings (leaf type, feature layer and
dimension, LearnSPN thresholds) could not be read: the defaults below are SPFlow's LearnSPN defaults
and our `pca_dims`, each a named option.

No authors' code: none is linked from the paper's arXiv/OpenReview pages and none was found on
GitHub; tests/golden/test_spn.py checks the SPN's conditional against a brute-force computation and
the selection on hand-made features whose answer is known.

Cost: PCA O(L D^2 + D^3), LearnSPN O(d^2) RDC tests per split, evaluation O(N x SPN size): ~1.3 s of
CPU (5 s wall on a loaded 2-core machine) at L = 1,000, N = 10,000, D = 512, C = 10 (scripts/
bench_select.py); memory O(N (D + C)) plus BLOCK rows of SPN activations (peak +143 MB there).

References: arXiv:2206.09798; LearnSPN: Gens & Domingos, ICML 2013; SPFlow: Molina et al. 2019,
arXiv:1901.03704.
"""

from __future__ import annotations

from typing import Annotated

import torch
from annotated_types import Ge

from al_bench import ConfigError
from al_bench.schema import OpenFraction, PositiveInt
from al_bench.strategies.base import SelectionContext, Strategy, top_k
from al_bench.strategies.common.spn import log_entropy, require_spflow, spn_log_probs


class SpnScore(Strategy):
    """Scores candidates by a function of the SPN's class conditional, from log p(y | x) (N, C)."""

    def __init__(self, pca_dims: PositiveInt | None = 10, min_instances_slice: Annotated[int, Ge(2)] = 100,
                 rdc_threshold: OpenFraction = 0.3):
        require_spflow()
        self.pca_dims = pca_dims
        self.min_instances_slice = min_instances_slice
        self.rdc_threshold = rdc_threshold

    def score(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(N,) higher = more informative; a monotone (log) transform of the acquisition function."""
        raise NotImplementedError

    def log_probs(self, ctx: SelectionContext, candidates) -> torch.Tensor:
        """log p(y | x) at the candidates, from an SPN learned on the labeled rows' embeddings."""
        if len(ctx.labeled) == 0:
            raise ConfigError(f"{type(self).__name__} learns its SPN on the labeled set, which is empty "
                              f"(budget.initial must be >= 1)")
        rows, is_lab = ctx.with_labeled(candidates)
        emb = ctx.predict(rows)["embedding"]
        mask = torch.as_tensor(is_lab, device=emb.device)
        y = ctx.pool.train_y[torch.as_tensor(ctx.labeled, device=ctx.pool.train_y.device)]
        return spn_log_probs(emb[mask], y, emb[~mask], ctx.pool.num_classes, ctx.rng, self.pca_dims,
                             self.min_instances_slice, self.rdc_threshold)

    def select(self, ctx: SelectionContext, candidates, k):
        return candidates[top_k(self.score(self.log_probs(ctx, candidates)), k, ctx.rng)]


class SpnEntropy(SpnScore):
    """The candidates whose SPN class conditional is flattest: score log H(p(y | x))."""

    def score(self, log_probs):
        return log_entropy(log_probs)
