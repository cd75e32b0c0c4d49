"""Cost-Effective Active Learning, CEAL (Wang, Zhang, Li, Zhang & Lin, IEEE TCSVT 2017).

Each cycle the most uncertain candidates go to the oracle (entropy by default; least confidence or margin,
the paper's other two criteria), and the unlabeled images the model is sure of, entropy below a threshold
delta, are added to the next cycle's training set with their predicted class as label. They are chosen
afresh every cycle and never join the labeled set: the plugin hands them to the trainer, which keeps them in
its private copy of the labels (al_bench.training.fit); run.json's labeled files and n_labeled never see them.
The threshold decays with the cycle t (the first pseudo-labelled training is t = 1): delta_t = delta - dr t
(the paper's, `decay: linear`), or delta_t = delta_{t-1} - dr t as DeepAL+ updates it (`decay: cumulative`).
Defaults are the paper's: delta = 0.005 (CACD; 0.05 for Caltech-256), dr = 0.00033.

The confident set comes from the model that made the selection: the plugin predicts the unlabeled pool at
the end of each cycle's training and, at the next cycle's start, keeps the rows still unlabeled (the new
picks drop out), as DeepAL+ does after labeling the picks. With trainer.warm_start=true (the paper fine-tunes
one network) that model is also the one being trained; a run resumed without warm start has no such
predictions for its first cycle and trains it on the labeled set alone (logged).

No authors' code is public; checked against DeepAL+ (SineZHAN/deepALplus, query_strategies/ceal.py) in
tests/golden/test_ceal.py.

References: arXiv:1701.03551.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from al_bench.schema import NonNegativeFloat
from al_bench.strategies.base import ScoreStrategy
from al_bench.strategies.common.uncertainty import entropy
from al_bench.strategies.entropy import Entropy
from al_bench.strategies.least_confidence import LeastConfidence
from al_bench.strategies.margin import Margin
from al_bench.training.plugin import TrainContext, TrainingPlugin

log = logging.getLogger(__name__)

CRITERIA = {"entropy": Entropy, "least_confidence": LeastConfidence, "margin": Margin}


def threshold(delta: float, decay_rate: float, cycle: int, decay: str = "linear") -> float:
    """delta_t: delta - dr t ("linear"), or delta - dr (1 + ... + t) ("cumulative", DeepAL+)."""
    steps = cycle if decay == "linear" else cycle * (cycle + 1) / 2
    return delta - decay_rate * steps


def confident(probs: torch.Tensor, limit: float) -> tuple[np.ndarray, torch.Tensor]:
    """(mask of rows whose entropy is below `limit`, every row's predicted class)."""
    return (entropy(probs) < limit).cpu().numpy(), probs.argmax(dim=1)


class PseudoLabelPlugin(TrainingPlugin):
    """Trains on the labeled set plus the confident unlabeled images with their predicted classes."""

    def __init__(self, delta: float, decay_rate: float, decay: str):
        self.delta, self.decay_rate, self.decay = float(delta), float(decay_rate), decay
        self.seen: tuple[np.ndarray, torch.Tensor] | None = None  # (pool indices, probs) at the last training's end
        self.warm_start = False
        self.last: dict[str, float] = {}

    def setup(self, model, ctx: TrainContext, warm_start: bool) -> None:
        self.warm_start = warm_start

    def remember(self, indices: np.ndarray, probs: torch.Tensor) -> None:
        self.seen = (np.asarray(indices), probs.detach().float())

    def training_set(self, ctx: TrainContext):
        self.last = {}
        if ctx.cycle == 0:
            return None
        if self.seen is None:
            if not self.warm_start:
                log.warning("ceal: no predictions of the previous cycle's model (a resumed run without "
                            "trainer.warm_start): cycle %d trains without pseudo-labels", ctx.cycle)
                return None
            self.remember(ctx.unlabeled, ctx.predict(ctx.unlabeled)["probs"])
        rows, probs = self.seen
        still = np.isin(rows, ctx.unlabeled)
        limit = threshold(self.delta, self.decay_rate, ctx.cycle, self.decay)
        sure, label = confident(probs[torch.as_tensor(still, device=probs.device)], limit)
        added = rows[still][sure]
        true = ctx.pool.train_y[torch.as_tensor(added, device=ctx.device)]
        given = label[torch.as_tensor(sure, device=label.device)].to(ctx.device)
        self.last = {"ceal_delta": limit, "ceal_pseudo": float(len(added))}
        if len(added):  # a diagnostic only: how often the pseudo-labels are right
            self.last["ceal_pseudo_acc"] = float((given == true).float().mean())
        labeled = torch.as_tensor(ctx.labeled, device=ctx.device)
        return np.concatenate([ctx.labeled, added]), torch.cat([ctx.pool.train_y[labeled], given])

    def after_epoch(self, epoch: int, ctx: TrainContext) -> None:
        if epoch == ctx.settings.epochs - 1:
            self.remember(ctx.unlabeled, ctx.predict(ctx.unlabeled)["probs"])

    def metrics(self, preds, targets) -> dict[str, float]:
        return dict(self.last)

    def describe(self, settings) -> dict:
        return {"ceal_threshold": f"entropy < {self.delta} - {self.decay_rate} x "
                                  + ("t" if self.decay == "linear" else "t (t + 1) / 2") + " at cycle t >= 1"}


class CEAL(ScoreStrategy):
    """Select the most uncertain candidates by `criterion`; train on confident pseudo-labels too.

    References: Wang et al., "Cost-Effective Active Learning for Deep Image Classification",
    IEEE TCSVT 2017, arXiv:1701.03551.
    """

    def __init__(self, criterion: Literal["entropy", "least_confidence", "margin"] = "entropy",
                 delta: NonNegativeFloat = 0.005, decay_rate: NonNegativeFloat = 0.00033,
                 decay: Literal["linear", "cumulative"] = "linear"):
        self.criterion = CRITERIA[criterion]()
        self.plugin = PseudoLabelPlugin(delta, decay_rate, decay)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def score(self, preds):
        return self.criterion.score(preds)
