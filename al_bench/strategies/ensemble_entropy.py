"""Deep ensembles for active learning (Beluch, Genewein, Nürnberger & Köhler, "The power of ensembles
for active learning in image classification", CVPR 2018): M networks of one architecture, trained
from different random initialisations on the labeled set each cycle; the scores use the members'
softmax outputs p_m (N, M, C) in place of MC-dropout samples. This module holds the ensemble's
training plugin and its entropy score H(mean_m p_m) (word `ensemble_entropy`);
`ensemble_bald` (H(mean_m p_m) - mean_m H(p_m)) and `ensemble_var_ratio` (1 - f_modal / M, the
members' votes) reuse bald() and variation_ratio() on the member probabilities.

The loop's model is member 0; the plugin owns the other M - 1 (`members`, paper: M = 5), each a fresh
network of the model's architecture (new weights from the cycle's seeded generator) with its own
optimiser of the backbone's settings and schedule, kept across cycles exactly when the model is
(trainer.warm_start). They are trained in the plugin's `update()` next to the model, step for step:
`batches: independent` (default) gives each member its own seeded order and augmentation of the
labeled set, as separately trained networks get; `shared` trains them on the model's batches
(diversity from the initialisation only). The model's own training is that of a plain run.

Evaluation (`evaluate`): `ensemble` (default) makes the cycle's test_acc / test_loss the averaged
prediction's, by giving the prediction pass `logits` = log mean_m p_m (it replaces the model's
logits there: predict() merges the plugin's outputs last); `member` leaves them member 0's. Either
way metrics.jsonl gets ensemble_test_acc, member_test_acc and members_mean_test_acc. Which of the
two the paper reports was not checked (its text was not at hand): `ensemble` is our reading.

No authors' code: the paper links none and none was found (tests/golden/test_ensemble_reference.py
pins hand-checked values instead).

Cost: M x the training time and memory of one model (M - 1 extra networks and optimiser states),
M forwards per candidate at selection; scores O(N M C).

References: Beluch et al., CVPR 2018 (openaccess.thecvf.com, no arXiv version); deep ensembles:
Lakshminarayanan et al. 2017, arXiv:1612.01474.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge
from torch import nn

from al_bench.models.replica import fresh_replica, logits_like_predict
from al_bench.strategies.base import ScoreStrategy
from al_bench.strategies.common.uncertainty import entropy
from al_bench.training.device import autocast_dtype, use_channels_last
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin


def accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    return float((probs.argmax(1) == targets).double().mean())


class EnsemblePlugin(TrainingPlugin):
    """Trains M - 1 extra members beside the model; adds their probabilities to the prediction pass."""

    def __init__(self, members: int, batches: str, evaluate: str):
        self.n_members, self.batches, self.evaluate = int(members), batches, evaluate
        self.nets: list[nn.Module] | None = None
        self.amp = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        settings, device = ctx.settings, ctx.device
        self.amp = autocast_dtype(settings.precision, device)
        channels_last = use_channels_last(settings.channels_last, device)
        # the members' data streams: seeded from the cycle's seeded global generator (never from the
        # trainer's, so the model trains exactly as in a plain run), before any initialisation draws,
        # so a resumed warm-started run that builds its members anew draws the same seeds
        seeds = torch.randint(2**62, (self.n_members - 1,)).tolist()
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        if self.nets is None or not warm_start:
            self.nets = [fresh_replica(model) for _ in range(self.n_members - 1)]
        if channels_last:
            self.nets = [net.to(memory_format=torch.channels_last) for net in self.nets]
        self.pool, self.settings = ctx.pool, settings
        self.rows = torch.as_tensor(np.asarray(ctx.labeled), device=device)
        self.makers = [ctx.batch_maker(g) for g in self.generators]
        self.orders, self.epoch, self.pos = None, -1, 0

    def modules(self) -> dict[str, nn.Module]:
        return {f"member{m}": net for m, net in enumerate(self.nets or [], 1)}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {name: OptimizerSpec(net.parameters()) for name, net in self.modules().items()}

    def member_batch(self, m: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.orders[m][self.pos:self.pos + size]
        return self.makers[m](rows), self.pool.train_y[rows]

    def update(self, step: Step) -> torch.Tensor:
        size = step.x.shape[0]
        if self.batches == "independent" and step.epoch != self.epoch:
            n = self.rows.numel()
            self.orders = [self.rows[torch.randperm(n, device=self.rows.device, generator=g)]
                           for g in self.generators]
            self.epoch, self.pos = step.epoch, 0
        ce = nn.functional.cross_entropy
        with step.autocast():
            target_loss = ce(step.forward(step.x).logits.float(), step.y, reduction="none")
            member_losses = []
            for m, net in enumerate(self.nets):
                xb, yb = self.member_batch(m, size) if self.batches == "independent" else (step.x, step.y)
                member_losses.append(ce(net(xb).logits.float(), yb))
            members = torch.stack(member_losses).sum()
        self.pos += size
        # the networks share no parameter: one backward of the sum gives each its own loss's gradient
        step.apply(target_loss.mean() + members)
        step.logs["member_loss"] = members.detach() / len(self.nets)
        return target_loss.detach()

    def outputs(self, out, x: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = [torch.softmax(out.logits.float(), 1)]
        probs += [torch.softmax(logits_like_predict(net, x, self.amp), 1) for net in self.nets]
        member_probs = torch.stack(probs, 1)
        extra = {"member_probs": member_probs}
        if self.evaluate == "ensemble":
            extra["logits"] = torch.log(member_probs.mean(1).clamp_min(torch.finfo(torch.float32).tiny))
        return extra

    def metrics(self, preds, targets) -> dict[str, float]:
        mp = preds["member_probs"]
        return {"ensemble_test_acc": accuracy(mp.mean(1), targets), "member_test_acc": accuracy(mp[:, 0], targets),
                "members_mean_test_acc": float(np.mean([accuracy(mp[:, m], targets) for m in range(mp.shape[1])]))}

    def describe(self, settings) -> dict:
        evaluated = ("the ensemble's averaged prediction" if self.evaluate == "ensemble"
                     else "member 0 (the loop's model)")
        return {"ensemble_members": self.n_members, "ensemble_batches": self.batches,
                "ensemble_evaluate": f"test_acc/test_loss are {evaluated}",
                "ensemble_kept_across_cycles": bool(settings.warm_start)}


class EnsembleScore(ScoreStrategy):
    """A score over the ensemble members' probabilities `member_probs` (N, M, C)."""

    def __init__(self, members: Annotated[int, Ge(2)] = 5, batches: Literal["independent", "shared"] = "independent",
                 evaluate: Literal["ensemble", "member"] = "ensemble"):
        self.plugin = EnsemblePlugin(members, batches, evaluate)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin


def ensemble_entropy(member_probs: torch.Tensor) -> torch.Tensor:
    """H(mean_m p_m) in nats for member_probs (N, M, C)."""
    return entropy(member_probs.double().mean(dim=1))


class EnsembleEntropy(EnsembleScore):
    """The candidates whose averaged ensemble prediction is flattest.

    References: Beluch et al., "The power of ensembles for active learning in image classification",
    CVPR 2018.
    """

    def score(self, preds):
        return ensemble_entropy(preds["member_probs"])
