"""Wasserstein adversarial active learning, WAAL (Shui, Zhou, Gagne & Wang, AISTATS 2020).

Training is a min-max game between the backbone and a critic D on its embedding z (a small MLP with a
sigmoid output, al_bench.models.critic): per step, first the backbone minimises
    CE(labeled) + alpha * (mean D(z_unlabeled) - gamma * mean D(z_labeled)),
the critic frozen; then the critic, the backbone frozen, on the embeddings recomputed after that update,
minimises  -alpha * (mean D(z_u) - gamma * mean D(z_l)) - alpha * mu * GP, where GP is the gradient penalty
mean (||grad D|| - 1)^2 over the interpolates, the unlabeled and the labeled embeddings. Selection takes the
candidates with the LOWEST  0.5 ||log p||_2 + 0.5 ||log p||_1 - selection * D(z)  (these "upper bounds" of
the loss are smallest for a flat prediction; a high D(z) marks an image unlike the labeled set): the score
here is its negative, highest first.

Follows the authors' code (cjshui/WAAL @ 7104bc0113e7e73218a6d287951642a76d8005df,
query_strategies/wasserstein_adversarial.py, Test.py for CIFAR-10), checked in tests/golden/test_waal.py:
alpha = 2e-3, mu = 2 and the sign of its penalty term (the critic's loss *rewards* the penalty there;
`penalty_sign: wgan_gp` subtracts it as in WGAN-GP, Gulrajani et al. 2017), gamma = |L| / |U| (the
"unbalanced" loss; `gamma: one` as DeepAL+ uses), selection = 10, the critic 512 -> 50 -> 1 with dropout 0.5
(`critic_hidden`, `critic_dropout`; DeepAL+ uses [512, 512] without dropout), the critic's optimiser the
backbone's, a fresh critic per cycle (kept with trainer.warm_start), and the "redundant trick": an epoch
runs over max(|L|, |U|) labeled-unlabeled pairs, the labeled images repeated (`redundant: false`: one pass
over the labeled set). Differences from that code: the unlabeled batch next to each labeled one is drawn
with replacement by the trainer (the authors' pairs each unlabeled image once per epoch); the penalty the
authors add to the backbone's loss is computed on detached embeddings with the critic frozen, so it has no
gradient and is left out (with it, their step runs the backbone twice more without gradient, which only
moves batch-norm running statistics).

References: arXiv:1911.09162.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.models.critic import Critic
from al_bench.schema import Fraction, NonNegativeFloat, PositiveInt
from al_bench.strategies.base import ScoreStrategy
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin


def gradient_penalty(critic: nn.Module, h_s: torch.Tensor, h_t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """mean (||grad_z D(z)||_2 - 1)^2 over z in [h_s + u (h_t - h_s), h_s, h_t] (the interpolates and both
    sets, as the authors' code); `u` (n, 1) the interpolation coefficients, h_s and h_t treated as constants."""
    z = torch.cat([h_s + u * (h_t - h_s), h_s, h_t]).detach().requires_grad_(True)
    out = critic(z)
    (grad,) = torch.autograd.grad(out, z, grad_outputs=torch.ones_like(out), create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def wasserstein_term(critic: nn.Module, z_labeled: torch.Tensor, z_unlabeled: torch.Tensor,
                     gamma: float) -> torch.Tensor:
    """mean D(z_unlabeled) - gamma * mean D(z_labeled): the critic's estimate of the distance."""
    return critic(z_unlabeled).mean() - gamma * critic(z_labeled).mean()


def loss_bound(log_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """The authors' uncertainty terms, LOW for uncertain predictions: "l2_l1" 0.5 ||log p||_2 +
    0.5 ||log p||_1 (their choice), "l2", "l1", or "single_worst" max_k -log p_k."""
    neg = -log_probs
    if kind == "l2":
        return neg.norm(dim=1)
    if kind == "l1":
        return neg.sum(dim=1)
    if kind == "single_worst":
        return neg.max(dim=1).values
    return 0.5 * neg.norm(dim=1) + 0.5 * neg.sum(dim=1)


class WassersteinPlugin(TrainingPlugin):
    """The critic and the alternating min-max step (see the module docstring)."""

    def __init__(self, alpha: float, gp_weight: float, penalty_sign: str, gamma: str, hidden, dropout: float,
                 optimizer: dict | None, scheduler: bool, redundant: bool):
        self.alpha, self.gp_weight, self.gamma = float(alpha), float(gp_weight), gamma
        self.sign = 1.0 if penalty_sign == "code" else -1.0
        self.hidden, self.dropout = [int(h) for h in hidden], float(dropout)
        self.optimizer, self.scheduler, self.redundant = (dict(optimizer) if optimizer else None), scheduler, redundant
        self.critic: Critic | None = None
        self.gamma_ratio = 1.0
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        if self.critic is None or not warm_start:
            self.critic = Critic(model.embed_dim, self.hidden, self.dropout).to(ctx.device)
        self.unlabeled_batch_size = ctx.settings.batch_size  # the authors' pairs: as many unlabeled as labeled
        n_unlabeled = len(ctx.unlabeled)
        self.gamma_ratio = len(ctx.labeled) / max(n_unlabeled, 1) if self.gamma == "ratio" else 1.0
        self.generator = ctx.generator

    def modules(self) -> dict[str, nn.Module]:
        return {"critic": self.critic} if self.critic is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"critic": OptimizerSpec(self.critic.parameters(), spec=self.optimizer, scheduled=self.scheduler)}

    def training_set(self, ctx: TrainContext):
        if not self.redundant:
            return None
        # the redundant trick: max(|L|, |U|) rows, labeled index i at row i mod |L|
        rows = np.resize(np.asarray(ctx.labeled), max(len(ctx.labeled), len(ctx.unlabeled)))
        idx = torch.as_tensor(rows, device=ctx.device)
        return idx, ctx.pool.train_y[idx]

    def interpolation(self, n: int, device) -> torch.Tensor:
        """The gradient penalty's interpolation coefficients u ~ U(0, 1), (n, 1), from the cycle's generator."""
        return torch.rand((n, 1), generator=self.generator, device=device)

    def update(self, step: Step) -> torch.Tensor:
        critic, device = self.critic, step.x.device
        backbone, critic_opt = step.optimizers["backbone"], step.optimizers["critic"]
        no_autocast = torch.autocast(device.type, enabled=False)

        # 1. the backbone (feature extractor + classifier) against the frozen critic
        critic.requires_grad_(False)
        with step.autocast():
            out = step.forward(step.x)
            out_u = step.forward(step.unlabeled_x)  # a separate pass, as the authors' (own batch-norm statistics)
            target_loss = nn.functional.cross_entropy(out.logits.float(), step.y, reduction="none")
        with no_autocast:
            wd = wasserstein_term(critic, out.embedding.float(), out_u.embedding.float(), self.gamma_ratio)
            loss = target_loss.mean() + self.alpha * wd
        backbone.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        step.scaler.step(backbone)

        # 2. the critic on the embeddings of the updated backbone, which is frozen
        critic.requires_grad_(True)
        with torch.no_grad(), step.autocast():
            z_l = step.forward(step.x).embedding.float()
            z_u = step.forward(step.unlabeled_x).embedding.float()
        n = min(len(z_l), len(z_u))  # a last, shorter labeled batch: pair what there is
        with no_autocast:
            gp = gradient_penalty(critic, z_u[:n], z_l[:n], self.interpolation(n, device))
            wd_critic = wasserstein_term(critic, z_l, z_u, self.gamma_ratio)
            critic_loss = -self.alpha * wd_critic - self.sign * self.alpha * self.gp_weight * gp
        critic_opt.zero_grad(set_to_none=True)
        step.scaler.scale(critic_loss).backward()
        step.scaler.step(critic_opt)
        step.scaler.update()
        step.logs.update(waal_wd=wd.detach(), waal_gp=gp.detach(), waal_critic_loss=critic_loss.detach())
        return target_loss.detach()

    def outputs(self, out, x=None) -> dict[str, torch.Tensor]:
        return {"critic": self.critic(out.embedding.float())}

    def describe(self, settings) -> dict:
        return {"waal_epoch": "max(|L|, |U|) labeled-unlabeled pairs, labeled repeated" if self.redundant
                else "the labeled set once, an unlabeled batch beside each labeled batch"}


class WAAL(ScoreStrategy):
    """Train with the critic; select the lowest  bound(log p) - selection * D(z)  (see the module docstring).

    References: Shui et al., "Deep Active Learning: Unified and Principled Method for Query and Training",
    AISTATS 2020, arXiv:1911.09162.
    """

    def __init__(self, alpha: NonNegativeFloat = 2e-3, selection: NonNegativeFloat = 10.0,
                 gp_weight: NonNegativeFloat = 2.0, penalty_sign: Literal["code", "wgan_gp"] = "code",
                 gamma: Literal["ratio", "one"] = "ratio",
                 uncertainty: Literal["l2_l1", "l2", "l1", "single_worst"] = "l2_l1",
                 critic_hidden: list[PositiveInt] = (50,), critic_dropout: Fraction = 0.5,
                 optimizer: dict | None = None, scheduler: bool = True, redundant: bool = True):
        if optimizer is not None and (optimizer.get("name", "sgd") not in ("sgd", "adam") or "lr" in optimizer
                                      and not float(optimizer["lr"]) > 0):
            raise ConfigError(f"strategy.optimizer must be null or {{name: sgd|adam, lr: >0, ...}}; got {optimizer}")
        self.selection, self.uncertainty = float(selection), uncertainty
        self.plugin = WassersteinPlugin(alpha, gp_weight, penalty_sign, gamma, critic_hidden, critic_dropout,
                                        optimizer, scheduler, redundant)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def score(self, preds):
        log_probs = torch.log_softmax(preds["logits"].double(), dim=1)
        return self.selection * preds["critic"].double() - loss_bound(log_probs, self.uncertainty)
