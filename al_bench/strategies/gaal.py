"""Generative Adversarial Active Learning, GAAL (Zhu & Bento, 2017).

Query synthesis: a DCGAN is trained once on the pool (labeled and unlabeled images); each query is
G(z) for a latent z found by minimising the classifier's squared distance to its decision
boundary, min_z (W^T G(z) + b)^2 for the paper's linear SVM, from a random start, by gradient
steps. Here the classifier is the benchmark's network: the squared gap between its two largest
logits (`margin_sq`), which for two classes and a linear head is the paper's objective exactly.
k latent codes are optimised, one per query.

A benchmark cannot ask a person to label a synthetic image, so each synthetic query is answered
by its nearest real candidate (unlabeled, in the cycle's candidate subset) in the feature space
`features` (default: the GAN discriminator's last hidden layer, Euclidean distance), the choice
ASAL (arXiv:1808.06671) makes; queries are matched most uncertain first, each to the nearest
candidate no earlier query took, so the k picks are distinct. This is not in the GAAL paper
(whose oracle labels G(z) itself) and is forced by al-bench.

No public code of the authors is known (searched GitHub for the title, the arXiv id and the
authors' accounts, e.g. jj-zhu; the only implementation found, billzhaox/PyTorch-GAAL, is a
third-party re-implementation for a linear SVM on MNIST 5-vs-7). Choices not fixed by what we
could read of the paper, all options: `z_optimizer` / `z_lr` / `z_steps` (default plain gradient
descent, ours), `z_penalty` (lambda ||z||^2 keeping z in the prior's bulk; default 0, the
objective as stated), the GAN's length `gan_epochs` (25: the default of the PyTorch DCGAN example).
The DCGAN layout and training are in al_bench.models.gan; the GAN is trained by a training plugin
(al_bench.strategies.common.gan_query says why).

References: arXiv:1702.07956.
"""

from __future__ import annotations

from typing import Literal

from al_bench.schema import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from al_bench.strategies.common.gan_query import BLOCK, Features, GanQuery


class Gaal(GanQuery):
    """Synthesise k queries on the classifier's decision boundary; label their nearest candidates.

    References: Zhu & Bento, "Generative Adversarial Active Learning", arXiv:1702.07956.
    """

    objective = "margin"

    def __init__(self, z_dim: PositiveInt = 100, gan_width: PositiveInt = 64, gan_epochs: PositiveFloat = 25.0,
                 gan_batch_size: PositiveInt = 64, gan_lr: PositiveFloat = 2e-4, gan_beta1: Fraction = 0.5,
                 z_steps: NonNegativeInt = 100, z_lr: PositiveFloat = 0.01,
                 z_optimizer: Literal["sgd", "adam"] = "sgd", z_penalty: NonNegativeFloat = 0.0,
                 features: Features = "discriminator", feature_batch_size: PositiveInt = 512,
                 block: PositiveInt = BLOCK, cache_features: bool = True):
        super().__init__(z_dim, gan_width, gan_epochs, gan_batch_size, gan_lr, gan_beta1, z_steps, z_lr,
                         z_optimizer, z_penalty, features, feature_batch_size, block, cache_features)
