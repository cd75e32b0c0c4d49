"""Learning loss for active learning (Yoo & Kweon, CVPR 2019, arXiv:1905.03677).

A loss-prediction module on the backbone's stage outputs learns to predict each image's target
loss jointly with the backbone; selection takes the candidates with the HIGHEST predicted loss.
Every choice on which public reproductions differ is a field here or in the trainer config,
with the paper's value as default (see ../shared/LL4AL.md and conf/strategy/lloss.yaml).
"""

from __future__ import annotations

import torch
from torch import nn

from al_bench import ConfigError
from al_bench.models.lossnet import LossPredictionModule
from al_bench.strategies.base import ScoreStrategy, TrainHooks
from al_bench.strategies.entropy import entropy

PAIRINGS = ("halves", "mirror")
DETACH_RULES = ("ge", "gt")
ODD_BATCH = ("drop_last", "error")


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
    The true losses are constants (detached)."""
    i, j = make_pairs(pred.shape[0], pairing, odd_batch)
    i, j = i.to(pred.device), j.to(pred.device)
    true = true.detach()
    sign = torch.where(true[i] > true[j], 1.0, -1.0)
    return torch.clamp(-sign * (pred[i] - pred[j]) + margin, min=0).mean()


def ranking_accuracy(score: torch.Tensor, true: torch.Tensor, chunk: int = 1024) -> float:
    """The paper's figure-5 measure: over all pairs whose true losses differ, the fraction whose
    scores are ordered like the true losses (tied scores count one half). Exact, chunked."""
    score, true = score.double().flatten(), true.double().flatten()
    n = score.numel()
    agree = total = 0.0
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        upper = torch.arange(start, rows.stop, device=score.device)[:, None] < torch.arange(n, device=score.device)[None, :]
        dl = torch.sign(true[rows, None] - true[None, :])
        ds = torch.sign(score[rows, None] - score[None, :])
        valid = upper & (dl != 0)
        agree += float(((ds == dl) & valid).sum()) + 0.5 * float(((ds == 0) & valid).sum())
        total += float(valid.sum())
    return agree / total if total else float("nan")


class LossPredictionHooks(TrainHooks):
    """Adds the loss-prediction module to training: target loss + lambda * loss-prediction loss;
    from `detach_epoch` on (rule "ge"; "gt": after it) the module sees detached stage outputs, so
    its gradient no longer reaches the backbone while it keeps learning."""

    def __init__(self, loss: str, margin: float, weight: float, detach_epoch: int, detach_rule: str,
                 pairing: str, odd_batch: str, feature_dim: int, optimizer: dict | None, scheduler: bool):
        for value, allowed, key in ((loss, ("ranking", "mse"), "loss"), (detach_rule, DETACH_RULES, "detach_rule"),
                                    (pairing, PAIRINGS, "pairing"), (odd_batch, ODD_BATCH, "odd_batch")):
            if value not in allowed:
                raise ConfigError(f"strategy.{key} must be one of {', '.join(allowed)}; got {value!r}")
        self.kind, self.margin, self.weight = loss, float(margin), float(weight)
        self.detach_epoch, self.detach_rule = int(detach_epoch), detach_rule
        self.pairing, self.odd_batch, self.feature_dim = pairing, odd_batch, int(feature_dim)
        self.optimizer = dict(optimizer) if optimizer else None
        self.follow_schedule = bool(scheduler)
        self.module = None

    def detached(self, epoch: int) -> bool:
        """True when the module's gradient must not reach the backbone in 0-based `epoch`."""
        return epoch >= self.detach_epoch if self.detach_rule == "ge" else epoch > self.detach_epoch

    def start_cycle(self, model: nn.Module, warm_start: bool) -> None:
        if self.module is None or not warm_start:
            device = next(model.parameters()).device
            self.module = LossPredictionModule(model.stage_channels, self.feature_dim).to(device)

    def loss(self, out, target_loss: torch.Tensor, epoch: int) -> torch.Tensor:
        stages = [s.detach() for s in out.stages] if self.detached(epoch) else out.stages
        pred = self.module(stages).float()
        if self.kind == "mse":
            lpl = nn.functional.mse_loss(pred, target_loss.detach())
        else:
            lpl = ranking_loss(pred, target_loss, self.margin, self.pairing, self.odd_batch)
        return self.weight * lpl

    def outputs(self, out) -> dict[str, torch.Tensor]:
        return {"pred_loss": self.module(out.stages)}

    def metrics(self, preds, targets) -> dict[str, float]:
        true = nn.functional.cross_entropy(preds["logits"], targets, reduction="none")
        return {"lpl_rank_acc": ranking_accuracy(preds["pred_loss"], true),
                "entropy_rank_acc": ranking_accuracy(entropy(preds["probs"]), true)}

    def describe(self) -> dict:
        first = self.detach_epoch if self.detach_rule == "ge" else self.detach_epoch + 1
        return {"lloss_joint_epochs": first,
                "lloss_detach": f"module gradient into the backbone stops from 0-based epoch {first} on"}


class LearningLoss(ScoreStrategy):
    """Select the k candidates with the highest predicted loss.

    References: Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019, arXiv:1905.03677.
    """

    loss_kind = "ranking"

    def __init__(self, margin: float = 1.0, weight: float = 1.0, detach_epoch: int = 120, detach_rule: str = "ge",
                 pairing: str = "halves", odd_batch: str = "drop_last", feature_dim: int = 128,
                 optimizer: dict | None = None, scheduler: bool = True, loss: str | None = None):
        self.hooks = LossPredictionHooks(loss or self.loss_kind, margin, weight, detach_epoch, detach_rule,
                                         pairing, odd_batch, feature_dim, optimizer, scheduler)

    def train_hooks(self) -> TrainHooks:
        return self.hooks

    def score(self, preds):
        return preds["pred_loss"]
