"""Learning loss for active learning (Yoo & Kweon, CVPR 2019, arXiv:1905.03677).

A loss-prediction module on the backbone's stage outputs learns to predict each image's target
loss jointly with the backbone; selection takes the candidates with the HIGHEST predicted loss.
Every choice on which public reproductions differ is a field here or in the trainer config,
with the paper's value as default (docs/learning_loss.md and conf/strategy/lloss.yaml). The
detach point is a fraction of training (`detach_at`, paper: 120 of 200 epochs = 0.6), so shorter
schedules detach at the same point of training; `detach_epoch` names an epoch instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from torch import nn

from al_bench import ConfigError
from al_bench.models.lossnet import LossPredictionModule
from al_bench.strategies.base import ScoreStrategy
from al_bench.strategies.common.uncertainty import entropy
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin


def make_pairs(n: int, pairing: str, odd_batch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch of n into n // 2 pairs (i, j).

    "halves": (i, i + n/2), the first half against the second; "mirror": (i, n - 1 - i), as the
    public re-implementation does (batch against its reverse). With odd n the middle ("mirror")
    or last ("halves") sample is left out of the ranking loss ("drop_last"), or it is an error
    ("error", the public code asserts an even batch).
    """
    if n % 2 and odd_batch == "error":
        raise ValueError(f"odd batch of {n} for the pairwise ranking loss (strategy.odd_batch=error)")
    half = n // 2
    i = torch.arange(half)
    if pairing == "halves":
        return i, i + half
    return i, n - 1 - i


def ranking_loss(pred: torch.Tensor, true: torch.Tensor, margin: float = 1.0, pairing: str = "halves",
                 odd_batch: str = "drop_last") -> torch.Tensor:
    """The loss-prediction loss of the paper's eq. 2-3, averaged over the B/2 pairs:
    max(0, -A(l_i, l_j) (lhat_i - lhat_j) + xi), A = +1 if l_i > l_j else -1 (ties: -1).
    The true losses are constants (detached). A batch of one sample has no pair: its loss is 0
    (still attached to `pred`, so a backward pass works)."""
    i, j = make_pairs(pred.shape[0], pairing, odd_batch)
    if len(i) == 0:
        return pred.sum() * 0.0
    i, j = i.to(pred.device), j.to(pred.device)
    true = true.detach()
    sign = torch.where(true[i] > true[j], 1.0, -1.0)
    return torch.clamp(-sign * (pred[i] - pred[j]) + margin, min=0).mean()


def mse_loss(pred: torch.Tensor, true: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """Mean squared error of the predicted losses (the paper's "learn loss mse" ablation). With
    `clip` = delta, errors beyond delta count linearly (2 x Huber): the same loss and gradient as
    MSE for |error| <= delta, a per-sample gradient bounded by 2 delta beyond. Plain MSE (None)
    diverges on small models at lr 0.05-0.1: on the quickstart the module alone (detached from
    epoch 0) blows up to inf, and at lr 0.1 its unbounded gradient also breaks the backbone."""
    if clip is None:
        return nn.functional.mse_loss(pred, true)
    return 2.0 * nn.functional.huber_loss(pred, true, delta=clip)


def ranking_accuracy(score: torch.Tensor, true: torch.Tensor) -> float:
    """The paper's figure-5 measure: over all pairs whose true losses differ, the fraction whose
    scores are ordered like the true losses (tied scores count one half).

    Exact, in O(n log n) by a Kendall-style count (Knight 1966): with n0 = n(n-1)/2 pairs, n1 tied in
    `true`, n2 tied in `score`, n3 tied in both, and D the discordant pairs (the strict inversions
    of the scores once sorted by (true, score)), the pairs counted are n0 - n1, of which
    n2 - n3 have tied scores and n0 - n1 - n2 + n3 - D are concordant.
    """
    t = np.unique(true.detach().double().flatten().cpu().numpy(), return_inverse=True)[1].reshape(-1)
    s = np.unique(score.detach().double().flatten().cpu().numpy(), return_inverse=True)[1].reshape(-1)
    if t.size != s.size:
        raise ValueError(f"ranking_accuracy: {s.size} scores for {t.size} losses")
    n0 = t.size * (t.size - 1) // 2
    n1, n2, n3 = _tied_pairs(t), _tied_pairs(s), _tied_pairs(t.astype(np.int64) * t.size + s)
    total = n0 - n1
    if total == 0:
        return float("nan")
    discordant = _inversions(s[np.lexsort((s, t))])
    concordant = n0 - n1 - n2 + n3 - discordant
    return (concordant + 0.5 * (n2 - n3)) / total


def _tied_pairs(values: np.ndarray) -> int:
    counts = np.unique(values, return_counts=True)[1].astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _inversions(a: np.ndarray) -> int:
    """Pairs i < j with a[i] > a[j], for integer ranks 0 <= a < n: bottom-up merge sort, each level
    vectorised (a right-half element's inversions = the left-half elements of its block above it)."""
    a = a.astype(np.int64)
    n = a.size
    base = n + 1
    idx = np.arange(n)
    inversions, width = 0, 1
    while width < n:
        block = idx // (2 * width)
        keys = block * base + a  # sorted within each half from the previous level
        right = (idx // width) % 2 == 1
        left_keys = keys[~right]  # globally sorted: blocks in order, each half sorted
        r_block, r_keys = block[right], keys[right]
        block_end = np.searchsorted(left_keys, (r_block + 1) * base, side="left")
        not_above = np.searchsorted(left_keys, r_keys, side="right")
        inversions += int((block_end - not_above).sum())
        a = np.sort(keys) - block * base
        width *= 2
    return inversions


class LossPredictionPlugin(TrainingPlugin):
    """Adds the loss-prediction module to training: target loss + lambda * loss-prediction loss;
    from the detach epoch on (rule "ge"; "gt": after it) the module sees detached stage outputs, so
    its gradient no longer reaches the backbone while it keeps learning."""

    def __init__(self, loss: str, margin: float, weight: float, detach_at: float, detach_epoch: int | None,
                 detach_rule: str, pairing: str, odd_batch: str, feature_dim: int, optimizer: dict | None,
                 scheduler: bool, keep_module: bool | None, mse_clip: float | None = None):
        self.kind, self.margin, self.weight = loss, float(margin), float(weight)
        self.detach_at, self.detach_epoch, self.detach_rule = float(detach_at), detach_epoch, detach_rule
        self.pairing, self.odd_batch, self.feature_dim = pairing, odd_batch, int(feature_dim)
        self.optimizer = dict(optimizer) if optimizer else None
        self.scheduler, self.keep_module = scheduler, keep_module
        self.mse_clip = mse_clip
        self.module: LossPredictionModule | None = None
        self.first_detached = detach_epoch  # set from the trainer's epochs in setup()

    def joint_epochs(self, epochs: int) -> int:
        """The 0-based epoch named by the detach point: `detach_epoch`, else round(detach_at x epochs)."""
        return int(self.detach_epoch) if self.detach_epoch is not None else int(round(self.detach_at * epochs))

    def detached(self, epoch: int) -> bool:
        """True when the module's gradient must not reach the backbone in 0-based `epoch`."""
        return epoch >= self.first_detached if self.detach_rule == "ge" else epoch > self.first_detached

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        self.first_detached = self.joint_epochs(ctx.settings.epochs)
        keep = warm_start if self.keep_module is None else self.keep_module
        if self.module is None or not keep:
            self.module = LossPredictionModule(model.stage_channels, self.feature_dim).to(ctx.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"lossnet": self.module} if self.module is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"lossnet": OptimizerSpec(self.module.parameters(), spec=self.optimizer, scheduled=self.scheduler)}

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor:
        stages = [s.detach() for s in out.stages] if self.detached(step.epoch) else out.stages
        pred = self.module(stages).float()
        if self.kind == "mse":
            lpl = mse_loss(pred, target_loss.detach(), self.mse_clip)
        else:
            lpl = ranking_loss(pred, target_loss, self.margin, self.pairing, self.odd_batch)
        return self.weight * lpl

    def outputs(self, out, x=None) -> dict[str, torch.Tensor]:
        return {"pred_loss": self.module(out.stages)}

    def metrics(self, preds, targets) -> dict[str, float]:
        true = nn.functional.cross_entropy(preds["logits"], targets, reduction="none")
        return {"lpl_rank_acc": ranking_accuracy(preds["pred_loss"], true),
                "entropy_rank_acc": ranking_accuracy(entropy(preds["probs"]), true)}

    def describe(self, settings) -> dict:
        at = self.joint_epochs(settings.epochs)
        first = at if self.detach_rule == "ge" else at + 1
        return {"lloss_joint_epochs": min(first, settings.epochs),
                "lloss_detach": f"module gradient into the backbone stops from 0-based epoch {first} on"
                                + (" (never: training ends first)" if first >= settings.epochs else "")}


class LearningLoss(ScoreStrategy):
    """Select the k candidates with the highest predicted loss.

    References: Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019, arXiv:1905.03677.
    """

    loss_kind = "ranking"

    def __init__(self, margin: Annotated[float, Ge(0)] = 1.0, weight: Annotated[float, Ge(0)] = 1.0,
                 detach_at: Annotated[float, Ge(0), Le(1)] = 0.6,
                 detach_epoch: Annotated[int, Ge(0)] | None = None,
                 detach_rule: Literal["ge", "gt"] = "ge", pairing: Literal["halves", "mirror"] = "halves",
                 odd_batch: Literal["drop_last", "error"] = "drop_last", feature_dim: Annotated[int, Ge(1)] = 128,
                 optimizer: dict | None = None, scheduler: bool = True, keep_module: bool | None = None,
                 loss: Literal["ranking", "mse"] | None = None, mse_clip: Annotated[float, Gt(0)] | None = None):
        if optimizer is not None and (optimizer.get("name", "sgd") not in ("sgd", "adam") or "lr" in optimizer
                                      and not float(optimizer["lr"]) > 0):
            raise ConfigError(f"strategy.optimizer must be null or {{name: sgd|adam, lr: >0, ...}}; got {optimizer}")
        self.plugin = LossPredictionPlugin(loss or self.loss_kind, margin, weight, detach_at, detach_epoch,
                                           detach_rule, pairing, odd_batch, feature_dim, optimizer, scheduler,
                                           keep_module, mse_clip)

    @classmethod
    def check_settings(cls, params: dict, settings) -> None:
        epoch = params.get("detach_epoch")
        if epoch is not None and epoch > settings.epochs:
            raise ConfigError(f"strategy.detach_epoch={epoch} lies past trainer.epochs={settings.epochs}: the module "
                              f"would never detach; lower it or use strategy.detach_at (a fraction of training)")

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def score(self, preds):
        return preds["pred_loss"]
