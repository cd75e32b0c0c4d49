"""Supervised Contrastive Active Learning with the feature-reconstruction-error query, SCAL-FRE
(Krishnan et al., "Robust Contrastive Active Learning with Feature-guided Query Strategies", 2021).

The classifier is trained with a supervised contrastive loss beside cross-entropy
(al_bench.strategies.common.supcon.SupConPlugin, as in scal_featsim). A PCA is fitted on the
labeled set's features (the backbone's embedding); the k candidates with the highest feature
reconstruction error, ||(f - m) - W^T W (f - m)||_2 (the distance from f to the labeled features'
principal subspace; the FRE of the same group's Ndiour, Ahuja & Tickoo, arXiv:2012.04250), are
selected. The subspace keeps the fewest components that explain `explained_variance` = 0.95 of the
labeled features' variance, or exactly `n_components`.

Not checked against the authors' code: none was found (see scal_featsim), and the paper's body was
not reachable here. Readings that are ours, each a config value: the PCA fitted on the labeled
features only (not per class), 95 % explained variance, the training loss as in scal_featsim.

Cost: one prediction pass over labeled + candidates; an SVD of the L x D labeled features
(O(L D min(L, D))); O(N D q) for the errors, memory O(N D).

References: arXiv:2109.06873 (SCAL), arXiv:2004.11362 (SupCon), arXiv:2012.04250 (FRE).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from al_bench.schema import NonNegativeFloat, OpenFraction, PositiveFloat, PositiveInt
from al_bench.strategies.base import Strategy, top_k
from al_bench.strategies.common.supcon import (
    SupConPlugin,
    labeled_and_candidate_features,
    pca_basis,
    reconstruction_error,
)
from al_bench.training.plugin import TrainingPlugin


class ScalFre(Strategy):
    """The candidates farthest from the principal subspace of the labeled set's features.

    References: Krishnan et al., arXiv:2109.06873; Khosla et al., arXiv:2004.11362.
    """

    def __init__(self, temperature: PositiveFloat = 0.07, base_temperature: PositiveFloat | None = None,
                 head: Literal["mlp", "linear"] = "mlp", feat_dim: PositiveInt = 128,
                 supcon_weight: NonNegativeFloat = 1.0, detach_classifier: bool = False,
                 n_components: PositiveInt | None = None, explained_variance: OpenFraction = 0.95):
        self.plugin = SupConPlugin(temperature, base_temperature, head, feat_dim, supcon_weight, detach_classifier)
        self.n_components, self.explained_variance = n_components, float(explained_variance)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        labeled, cand = labeled_and_candidate_features(ctx, candidates)
        mean, components = pca_basis(labeled, self.n_components, self.explained_variance)
        return candidates[top_k(reconstruction_error(cand, mean, components), k, ctx.rng)]
