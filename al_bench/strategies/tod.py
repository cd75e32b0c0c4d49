"""Temporal output discrepancy (Huang et al., "Semi-Supervised Active Learning with Temporal Output
Discrepancy", ICCV 2021): a sample's loss is estimated by how far the model's outputs moved between
two points of optimisation; the candidates whose outputs moved most are labeled.

The discrepancy is the authors' code's (siyuhuang/TOD@883494b, main_TOD.py `get_uncertainty`):
||softmax f(x; w) - softmax f(x; w')||^2 / 2, in eval mode, w the model after this cycle's training.
Its reference w' is a named option:
- `reference: ema` (word `tod`): the exponential moving average of the weights during training,
  the mean-teacher form of "outputs at different optimisation steps" that the paper's unsupervised
  loss compares with;
- `reference: previous_cycle` (word `cod`, the paper's cyclic output discrepancy): the model at the
  end of the previous cycle, which is what the authors' code samples with. Their model is trained
  on across cycles (al-bench: trainer.warm_start=true); with a fresh model per cycle the reference
  is the previous cycle's independently trained model. In the first cycle the authors' reference
  is an independently initialised network and they take the LOWEST discrepancies
  (`first_cycle: lowest`, the code's default for `cod`; `highest` applies one rule to every cycle).

The unsupervised consistency loss (`consistency`, on by default as in the authors' run.sh), as
main_TOD.py `train_epoch` computes it: a second linear head g on the embedding and an EMA model;
on each labeled batch x and an unlabeled batch u of the same size,
    weight * (mse(f(x), g(x)) + mse(f(u), g(u)) + mse(g(x), f_ema(x)) + mse(g(u), f_ema(u)))
on logits (mean over samples and classes), weight 0.02 (config/cifar10.py WEIGHT). The EMA follows
the authors' update_ema_variables: parameters only, decay min(1 - 1/(t + 1), 0.999) at step t = 1,
2, ..., from an independently initialised network (`ema_init: random`; `copy` starts it from the
model); it runs in train mode on x and u, so its batch-norm statistics are its own (without the
consistency loss nothing runs it and the model's statistics are copied at each step: ours). The EMA
and the head are kept across cycles exactly when the model is (trainer.warm_start).
Left out: the authors' cycle-0 unlabeled batch is always the first 128 images of the unlabeled list
(a fresh sequential iterator per step); here every step draws its own unlabeled batch.

Cost: one extra forward of the reference network over the candidates; with the consistency loss each
step also runs the model on u and the EMA on x and u (about 2.5x the plain step).

References: arXiv:2107.14153
"""

from __future__ import annotations

import copy
import logging
from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge, Le
from torch import nn

from al_bench.models.replica import fresh_replica, logits_like_predict
from al_bench.schema import PositiveInt
from al_bench.strategies.base import ScoreStrategy, SelectionContext, top_k
from al_bench.strategies.lloss import ranking_accuracy
from al_bench.training.device import autocast_dtype
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin

log = logging.getLogger(__name__)


def output_discrepancy(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """||softmax(logits) - softmax(ref_logits)||^2 / 2 per row (the authors' score)."""
    return (torch.softmax(logits.float(), 1) - torch.softmax(ref_logits.float(), 1)).pow(2).sum(1) / 2


class TemporalOutputDiscrepancyPlugin(TrainingPlugin):
    """Keeps the reference network (EMA or previous cycle's model), and with `consistency` the
    second head and the EMA teacher of the unsupervised loss."""

    def __init__(self, reference: str, consistency: bool, weight: float, ema_decay: float, ema_init: str,
                 unlabeled_batch: int | None):
        self.reference, self.consistency, self.weight = reference, consistency, float(weight)
        self.ema_decay, self.ema_init, self.unlabeled_batch = float(ema_decay), ema_init, unlabeled_batch
        self.ema: nn.Module | None = None
        self.cons_head: nn.Module | None = None
        self.previous: nn.Module | None = None
        self.ema_steps = 0
        self.model: nn.Module | None = None
        self.amp = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        self.amp = autocast_dtype(ctx.settings.precision, ctx.device)
        if self.reference == "previous_cycle":
            if ctx.cycle == 0:
                last = None  # the authors' first reference: an independently initialised network
            else:
                last = model if warm_start else self.model
                if last is None:
                    log.warning("cod: the previous cycle's model is not available (a run resumed without "
                                "trainer.warm_start); this cycle compares with a freshly initialised network")
            self.previous = (copy.deepcopy(last) if last is not None else fresh_replica(model)).requires_grad_(False)
        if self.ema is None or not warm_start:
            self.ema = self.cons_head = None
            self.ema_steps = 0
            if self.consistency or self.reference == "ema":
                init = fresh_replica(model) if self.ema_init == "random" else copy.deepcopy(model)
                self.ema = init.requires_grad_(False)
            if self.consistency:
                self.cons_head = fresh_replica(model.fc)
        self.unlabeled_batch_size = (self.unlabeled_batch or ctx.settings.batch_size) if self.consistency else 0
        self.model = model

    def modules(self) -> dict[str, nn.Module]:
        named = {"ema": self.ema, "cons_head": self.cons_head, "previous": self.previous}
        return {k: v for k, v in named.items() if v is not None}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        # the authors' second head is part of the backbone: same SGD settings and schedule
        return {"cons_head": OptimizerSpec(self.cons_head.parameters())} if self.cons_head is not None else {}

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor | None:
        if not self.consistency:
            return None
        mse = nn.functional.mse_loss
        u_out = step.forward(step.unlabeled_x)
        cons_x = self.cons_head(out.embedding.float())
        cons_u = self.cons_head(u_out.embedding.float())
        with torch.no_grad():
            ema_x = self.ema(step.x).logits.float()
            ema_u = self.ema(step.unlabeled_x).logits.float()
        residual = mse(out.logits.float(), cons_x) + mse(u_out.logits.float(), cons_u)
        return self.weight * (residual + mse(cons_x, ema_x) + mse(cons_u, ema_u))

    @torch.no_grad()
    def after_step(self, step: Step) -> None:
        if self.ema is None:
            return
        self.ema_steps += 1
        alpha = min(1.0 - 1.0 / (self.ema_steps + 1), self.ema_decay)
        for e, p in zip(self.ema.parameters(), step.model.parameters()):
            e.mul_(alpha).add_(p.detach(), alpha=1.0 - alpha)
        if not self.consistency:
            for e, b in zip(self.ema.buffers(), step.model.buffers()):
                e.copy_(b)

    def reference_net(self) -> nn.Module:
        return self.ema if self.reference == "ema" else self.previous

    def outputs(self, out, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"tod": output_discrepancy(out.logits, logits_like_predict(self.reference_net(), x, self.amp))}

    def metrics(self, preds, targets) -> dict[str, float]:
        # the paper's claim: the discrepancy orders samples like their loss (cf. lloss's measure)
        true = nn.functional.cross_entropy(preds["logits"], targets, reduction="none")
        return {"tod_rank_acc": ranking_accuracy(preds["tod"], true)}

    def describe(self, settings) -> dict:
        ref = ("the EMA of the weights" if self.reference == "ema" else
               "the previous cycle's final model " + ("(trained on: warm start)" if settings.warm_start
                                                     else "(trained from its own initialisation)"))
        return {"tod_reference": ref, "tod_consistency": self.consistency,
                "tod_unlabeled_batch": (self.unlabeled_batch or settings.batch_size) if self.consistency else 0,
                "tod_kept_across_cycles": bool(settings.warm_start)}

    def state_dict(self) -> dict:
        # the previous-cycle reference is not saved: a warm-started resume gets it as the model itself
        state = {k: m.state_dict() for k, m in self.modules().items() if k != "previous"}
        state["ema_steps"] = torch.tensor(self.ema_steps)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules().items():
            if k != "previous":
                m.load_state_dict(state[k])
        self.ema_steps = int(state["ema_steps"])


class TemporalOutputDiscrepancy(ScoreStrategy):
    """Select the candidates with the largest output discrepancy to the reference network.

    References: Huang et al., "Semi-Supervised Active Learning with Temporal Output Discrepancy",
    ICCV 2021, arXiv:2107.14153.
    """

    default_reference = "ema"
    default_first_cycle = "highest"

    def __init__(self, reference: Literal["ema", "previous_cycle"] | None = None,
                 first_cycle: Literal["highest", "lowest"] | None = None, consistency: bool = True,
                 weight: Annotated[float, Ge(0)] = 0.02, ema_decay: Annotated[float, Ge(0), Le(1)] = 0.999,
                 ema_init: Literal["random", "copy"] = "random", unlabeled_batch_size: PositiveInt | None = None):
        self.first_cycle = first_cycle or self.default_first_cycle
        self.plugin = TemporalOutputDiscrepancyPlugin(reference or self.default_reference, consistency, weight,
                                                      ema_decay, ema_init, unlabeled_batch_size)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def score(self, preds):
        return preds["tod"]

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        scores = self.score(ctx.predict(candidates))
        if ctx.cycle == 0 and self.first_cycle == "lowest":
            scores = -scores
        return candidates[top_k(scores, k, ctx.rng)]
