"""Supervised Contrastive Active Learning with the feature-similarity query, SCAL-FeatSim
(Krishnan, Ahuja, Sinha, Subedar, Tickoo & Iyer, "Robust Contrastive Active Learning with
Feature-guided Query Strategies", 2021).

The classifier is trained with a supervised contrastive loss beside cross-entropy
(al_bench.strategies.common.supcon.SupConPlugin, the loss as in HobbitLong/SupContrast); the k
candidates whose features are LEAST similar to the labeled set are selected: score =
-max_j cos(f(x), f(x_j)) over the labeled x_j (`similarity: max`, similarity to the nearest labeled
image; `mean`: the mean cosine over the labeled set), f the backbone's embedding (the input of its
classifier, the representation SupCon trains; the projection head is for training only).

Not checked against the authors' code: none was found (searched GitHub through the code, docs and
pages indexes for "featuresim", "SCAL", the title and the authors' names), and the paper's body was
not reachable here, only its abstract. Readings that are ours, each a config value: the loss as
cross-entropy + SupCon (weight 1), SupCon's temperature 0.07 (the SupContrast code's default),
max cosine similarity to the labeled set. The SupCon loss is pinned against SupContrast's code.

Cost: one prediction pass over labeled + candidates; O(N L D) time in blocks of 2048 candidates,
memory O(N D + 2048 L).

References: arXiv:2109.06873 (SCAL), arXiv:2004.11362 (SupCon).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from al_bench.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from al_bench.strategies.base import Strategy, top_k
from al_bench.strategies.common.supcon import SupConPlugin, feature_similarity, labeled_and_candidate_features
from al_bench.training.plugin import TrainingPlugin


class ScalFeatSim(Strategy):
    """The candidates least similar, in the contrastively trained feature space, to the labeled set.

    References: Krishnan et al., arXiv:2109.06873; Khosla et al., arXiv:2004.11362.
    """

    def __init__(self, temperature: PositiveFloat = 0.07, base_temperature: PositiveFloat | None = None,
                 head: Literal["mlp", "linear"] = "mlp", feat_dim: PositiveInt = 128,
                 supcon_weight: NonNegativeFloat = 1.0, detach_classifier: bool = False,
                 similarity: Literal["max", "mean"] = "max"):
        self.plugin = SupConPlugin(temperature, base_temperature, head, feat_dim, supcon_weight, detach_classifier)
        self.similarity = similarity

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        labeled, cand = labeled_and_candidate_features(ctx, candidates)
        return candidates[top_k(-feature_similarity(cand, labeled, self.similarity), k, ctx.rng)]
