"""Task-Aware VAAL, TA-VAAL (Kim, Park, Kim & Chun, CVPR 2021).

VAAL whose VAE and discriminator also see the task model's predicted loss: a loss-prediction module
(the "ranker", al-bench's learning-loss module and plugin, strategies/lloss.py) is trained with the
classifier on a ranking loss; at selection a beta-VAE whose decoder gets sigmoid(predicted loss)
appended to the latent, and a discriminator on (mu, predicted loss), are trained adversarially on
the labeled set and the candidates; the candidates the discriminator rates LEAST likely to be
labeled are selected.

Follows the authors' code (cubeyoung/TA-VAAL; tests/golden/test_ta_vaal.py pins its numbers):
- ranker loss (`lpl_loss: bce`, train_test.py `LossPredLoss`, RankCGAN's, as the paper says):
  BCE(sigmoid(lhat_i - lhat_j), 1[l_i > l_j]) over the mirror pairs (i, B-1-i), weight 1; the
  module's gradient into the backbone stops when epoch > 0.6 x epochs (`epoch > EPOCHL`, 120 of 200:
  detach_rule gt). `lpl_loss: margin` is learning loss's margin ranking loss instead. Computed with
  logits (BCE-with-logits; the authors' sigmoid + BCELoss agree to rounding) so it runs under autocast;
- the VAE and discriminator are trained after the classifier, at selection (selection_methods.py
  `query_samples` -> `train_vaal`): fresh modules, Adam lr 5e-4, one VAE and one discriminator step per
  iteration, int((|labeled| + |candidates|) x 100 / 128) iterations (`vae_epochs`, `vae_batch_size`), the
  labeled set and the candidates each read in order in batches of 128, cycled; the classifier and ranker
  in eval mode give r = the predicted loss per image (the first iteration uses uniform random r instead,
  as the code does); the VAE's decoder gets sigmoid(r), the discriminator gets the raw r; VAE loss
  MSE + beta x KL averaged over batch and latents (`kld: mean`, unlike VAAL's sum) + adversary_param x
  adversarial BCE; images normalised without augmentation (the authors' `data_unlabeled`);
- scoring reads the candidates in order in batches of 128 with the VAE in training mode (batch-norm
  statistics of each batch, as the code leaves it; `score_bn: running` is eval mode) and scores
  D(mu, r); the lowest scores are selected.
Named options not from the code: `odd_batch: drop_last` (default; the code asserts an even batch,
`odd_batch: error`). The VAE and discriminator run in fp32; their random numbers come from a generator
seeded by the selection's generator.

References: arXiv:2002.04709.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge, Le
from torch import nn

from al_bench.data.augment import Normalize
from al_bench.models.vae import VAE, LatentDiscriminator
from al_bench.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from al_bench.strategies.lloss import LearningLoss, LossPredictionPlugin, make_pairs
from al_bench.strategies.vaal import discriminator_scores, discriminator_step, image_shape, least_labeled, vae_step
from al_bench.training.plugin import Step


def rank_bce_loss(pred: torch.Tensor, true: torch.Tensor, pairing: str = "mirror",
                  odd_batch: str = "drop_last") -> torch.Tensor:
    """TA-VAAL's ranker loss: mean over pairs (i, j) of BCE(sigmoid(pred_i - pred_j), 1[true_i > true_j])
    (ties: 0); the true losses are constants."""
    i, j = make_pairs(pred.shape[0], pairing, odd_batch)
    if len(i) == 0:
        return pred.sum() * 0.0
    i, j = i.to(pred.device), j.to(pred.device)
    true = true.detach()
    target = (true[i] > true[j]).to(pred.dtype)
    return nn.functional.binary_cross_entropy_with_logits(pred[i] - pred[j], target)


class RankerPlugin(LossPredictionPlugin):
    """Learning loss's plugin with TA-VAAL's ranker loss (kind "bce"); other kinds are learning loss's."""

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor:
        if self.kind != "bce":
            return super().loss(out, target_loss, step)
        stages = [s.detach() for s in out.stages] if self.detached(step.epoch) else out.stages
        return self.weight * rank_bce_loss(self.module(stages).float(), target_loss, self.pairing, self.odd_batch)


def cycled_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices of 0..n in order in batches of `batch_size` (the last one short), over and over: a
    sequential DataLoader without drop_last, read by the authors' `read_data`."""
    while True:
        for s in range(0, n, batch_size):
            yield slice(s, min(s + batch_size, n))


def train_ta_vaal(vae: VAE, disc: LatentDiscriminator, x_l: torch.Tensor, r_l: torch.Tensor, x_u: torch.Tensor,
                  r_u: torch.Tensor, iterations: int, batch_size: int, beta: float = 1.0, adversary: float = 1.0,
                  lr: float = 5e-4, kld: str = "mean", generator: torch.Generator | None = None,
                  prepare: Callable | None = None) -> dict[str, float]:
    """The authors' `train_vaal`: labeled rows x_l with predicted losses r_l, candidates x_u with r_u.
    Returns the last iteration's losses."""
    opt_v = torch.optim.Adam(vae.parameters(), lr=lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr)
    vae.train()
    disc.train()
    prep = prepare if prepare is not None else (lambda t: t)
    lab, unl = cycled_batches(len(x_l), batch_size), cycled_batches(len(x_u), batch_size)
    vae_total = dsc = torch.zeros(())
    for it in range(iterations):
        bl, bu = next(lab), next(unl)
        xl, xu = prep(x_l[bl]), prep(x_u[bu])
        if it == 0:  # the code's first iteration: uniform random ranks for VAE and discriminator alike
            rl = torch.rand((xl.shape[0], 1), generator=generator, device=xl.device)
            ru = torch.rand((xu.shape[0], 1), generator=generator, device=xu.device)
            cond = (rl, ru, rl, ru)
        else:
            rl, ru = r_l[bl].reshape(-1, 1).float(), r_u[bu].reshape(-1, 1).float()
            cond = (torch.sigmoid(rl), torch.sigmoid(ru), rl, ru)
        vae_total = vae_step(vae, disc, opt_v, xl, xu, beta, adversary, kld, generator, cond)
        dsc = discriminator_step(vae, disc, opt_d, xl, xu, generator, cond)
    return {"vae_loss": float(vae_total), "dsc_loss": float(dsc)}


class TaVaal(LearningLoss):
    """Select the k candidates the rank-conditioned latent discriminator rates least likely to be labeled.

    References: Kim, Park, Kim & Chun, "Task-Aware Variational Adversarial Active Learning",
    arXiv:2002.04709.
    """

    def __init__(self, lpl_loss: Literal["bce", "margin"] = "bce", margin: Annotated[float, Ge(0)] = 1.0,
                 weight: Annotated[float, Ge(0)] = 1.0, detach_at: Annotated[float, Ge(0), Le(1)] = 0.6,
                 detach_epoch: Annotated[int, Ge(0)] | None = None, detach_rule: Literal["ge", "gt"] = "gt",
                 pairing: Literal["halves", "mirror"] = "mirror",
                 odd_batch: Literal["drop_last", "error"] = "drop_last", feature_dim: PositiveInt = 128,
                 optimizer: dict | None = None, scheduler: bool = True, keep_module: bool | None = None,
                 z_dim: PositiveInt = 32, beta: NonNegativeFloat = 1.0, adversary_param: NonNegativeFloat = 1.0,
                 lr: PositiveFloat = 5e-4, vae_width: PositiveInt = 128, discriminator_width: PositiveInt = 512,
                 vae_epochs: PositiveFloat = 100.0, vae_batch_size: PositiveInt = 128,
                 kld: Literal["sum", "mean"] = "mean", score_bn: Literal["batch", "running"] = "batch"):
        super().__init__(margin, weight, detach_at, detach_epoch, detach_rule, pairing, odd_batch, feature_dim,
                         optimizer, scheduler, keep_module)
        kind = "ranking" if lpl_loss == "margin" else "bce"
        self.plugin = RankerPlugin(kind, margin, weight, detach_at, detach_epoch, detach_rule, pairing, odd_batch,
                                   feature_dim, optimizer, scheduler, keep_module)
        self.z_dim, self.beta, self.adversary, self.lr = z_dim, float(beta), float(adversary_param), float(lr)
        self.vae_width, self.discriminator_width, self.kld = vae_width, discriminator_width, kld
        self.vae_epochs, self.vae_batch_size, self.score_bn = float(vae_epochs), vae_batch_size, score_bn
        self.last_losses: dict[str, float] = {}

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        dev = ctx.device
        rows_l = torch.as_tensor(np.asarray(ctx.labeled), device=dev)
        rows_u = torch.as_tensor(np.asarray(candidates), device=dev)
        r_l, r_u = ctx.predict(ctx.labeled)["pred_loss"], ctx.predict(candidates)["pred_loss"]
        size, channels = image_shape(ctx.pool)
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, dev, channels_last=False)
        seed = int(ctx.rng.integers(2 ** 62))
        with torch.random.fork_rng(devices=[]):  # module init on the CPU from the selection's seed
            torch.manual_seed(seed)
            vae = VAE(size, channels, self.z_dim, self.vae_width, cond_dim=1)
            disc = LatentDiscriminator(self.z_dim, cond_dim=1, hidden=self.discriminator_width)
        vae, disc = vae.to(dev), disc.to(dev)
        gen = torch.Generator(device=dev).manual_seed(seed)
        iterations = int((len(rows_l) + len(rows_u)) * self.vae_epochs / self.vae_batch_size)
        with torch.autocast(dev.type, enabled=False):
            self.last_losses = train_ta_vaal(vae, disc, ctx.pool.train_x[rows_l], r_l, ctx.pool.train_x[rows_u], r_u,
                                             iterations, self.vae_batch_size, self.beta, self.adversary, self.lr,
                                             self.kld, gen, normalize)
            scores = discriminator_scores(vae, disc, ctx.pool.train_x[rows_u], self.vae_batch_size, self.score_bn,
                                          normalize, cond=r_u.reshape(-1, 1).float())
        return candidates[least_labeled(scores, k, ctx.rng)]
