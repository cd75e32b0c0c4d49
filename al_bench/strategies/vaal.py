"""Variational Adversarial Active Learning, VAAL (Sinha, Ebrahimi & Darrell, ICCV 2019).

A beta-VAE learns a latent space of labeled and unlabeled images while a discriminator on the
latent means learns to tell labeled (1) from unlabeled (0); the VAE is also trained to make the
discriminator call every image labeled. The k candidates the discriminator rates LEAST likely to
be labeled are selected. The classifier is trained as usual on the labeled set.

Follows the authors' code (sinhasam/vaal, solver.py `Solver.train`, sampler.py `AdversarySampler`,
model.py; tests/golden/test_vaal.py pins its numbers): per classifier step, `num_vae_steps` = 2 VAE
steps and `num_adv_steps` = 1 discriminator step, each with Adam (lr 5e-4, no weight decay, no
schedule); VAE loss = MSE(recon, x) + beta x KL summed over batch and latents, for the labeled and
the unlabeled batch, + adversary_param x [BCE(D(mu_l), 1) + BCE(D(mu_u), 1)]; discriminator loss
BCE(D(mu_l), 1) + BCE(D(mu_u), 0) on the VAE's means (no gradient into the VAE). The first VAE step
uses the classifier's labeled batch and the trainer's unlabeled batch; each later VAE or
discriminator step beyond the first of its kind draws a fresh labeled and unlabeled batch (the
authors' `next(labeled_data)`), the first discriminator step reuses the last VAE step's batch.
Scoring runs the VAE in training mode as the authors' sampler does (their VAE is never switched to
eval): batch-norm statistics of batches of `score_batch_size` candidates in random order
(`score_bn: batch`; the running statistics are left untouched); `score_bn: running` is eval mode.
The VAE and discriminator are built anew each cycle (the authors' main.py).

Differences forced by al-bench (not options): the classifier follows the trainer's epochs,
optimiser and schedule (the authors train a VGG-16 for num_images x 100 / 128 iterations with SGD
0.01 and keep the best validation checkpoint); the authors' labeled loader advances two batches
per iteration, so their classifier sees every other labeled batch, while here each classifier
step is one trainer batch; fresh batches are drawn at random with replacement (the trainer's way
for unlabeled batches) with the trainer's augmentation, from a generator of the plugin's own; the
VAE sees the trainer's normalisation (the authors': mean 0.5, std 0.5) and augmentation (theirs:
horizontal flip); VAE and discriminator run in fp32 whatever the trainer's precision.

References: arXiv:1904.00370.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.data.augment import Normalize
from al_bench.models.vae import VAE, LatentDiscriminator, vae_loss
from al_bench.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from al_bench.strategies.base import Strategy, top_k
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin

_bce = nn.functional.binary_cross_entropy


def vae_step(vae: VAE, disc: LatentDiscriminator, opt: torch.optim.Optimizer, x_l, x_u, beta: float,
             adversary: float, kld: str = "sum", generator: torch.Generator | None = None,
             cond: tuple | None = None) -> torch.Tensor:
    """One VAE update; returns its total loss. `cond` (TA-VAAL): (VAE condition labeled, unlabeled,
    discriminator condition labeled, unlabeled)."""
    vl, vu, dl, du = cond if cond is not None else (None,) * 4
    recon, mu, logvar = vae(x_l, vl, generator)
    unsup = vae_loss(x_l, recon, mu, logvar, beta, kld)
    recon_u, mu_u, logvar_u = vae(x_u, vu, generator)
    transductive = vae_loss(x_u, recon_u, mu_u, logvar_u, beta, kld)
    # the VAE wants both sets called labeled (1)
    p_l, p_u = disc(mu, dl), disc(mu_u, du)
    adv = _bce(p_l, torch.ones_like(p_l)) + _bce(p_u, torch.ones_like(p_u))
    total = unsup + transductive + adversary * adv
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return total.detach()


def discriminator_step(vae: VAE, disc: LatentDiscriminator, opt: torch.optim.Optimizer, x_l, x_u,
                       generator: torch.Generator | None = None, cond: tuple | None = None) -> torch.Tensor:
    """One discriminator update on the VAE's means (labeled 1, unlabeled 0); returns its loss."""
    vl, vu, dl, du = cond if cond is not None else (None,) * 4
    with torch.no_grad():  # the authors' full VAE pass in training mode (batch-norm statistics move)
        mu = vae(x_l, vl, generator)[1]
        mu_u = vae(x_u, vu, generator)[1]
    p_l, p_u = disc(mu, dl), disc(mu_u, du)
    loss = _bce(p_l, torch.ones_like(p_l)) + _bce(p_u, torch.zeros_like(p_u))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def discriminator_scores(vae: VAE, disc: LatentDiscriminator, x: torch.Tensor, batch_size: int,
                         bn: str = "batch", prepare: Callable | None = None,
                         cond: torch.Tensor | None = None) -> torch.Tensor:
    """D(mu(x)) for the rows of x in batches of `batch_size`, in row order: the probability that
    each image is labeled. `bn`: "batch" = the VAE in training mode (each batch's own batch-norm
    statistics; the running statistics are restored afterwards), "running" = eval mode.
    `prepare` maps a slice of x to the VAE's input (e.g. uint8 -> normalised); `cond` (TA-VAAL)
    is the discriminator's extra input per row."""
    modes = [(m, m.training) for m in (vae, disc)]
    saved = {k: v.clone() for k, v in vae.state_dict().items() if "running" in k or "num_batches" in k}
    vae.train(bn == "batch")
    disc.eval()
    try:
        out = []
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            mu, _ = vae.encode(prepare(xb) if prepare is not None else xb)
            out.append(disc(mu, cond[s:s + batch_size] if cond is not None else None).float())
    finally:
        vae.load_state_dict(saved, strict=False)
        for m, mode in modes:
            m.train(mode)
    return torch.cat(out)


def least_labeled(scores: torch.Tensor, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions of the k LOWEST discriminator scores (least likely labeled), ties in random order."""
    return top_k(-scores, k, rng)


def image_shape(pool) -> tuple[int, int]:
    """(size, channels) of the pool's square images."""
    _, h, w, c = pool.train_x.shape
    if h != w:
        raise ConfigError(f"the VAE needs square images; the dataset's are {h}x{w}")
    return int(h), int(c)


def vae_optimizer(params, lr: float) -> OptimizerSpec:
    return OptimizerSpec(params, spec={"name": "adam", "lr": lr, "weight_decay": 0.0}, scheduled=False)


class VaalPlugin(TrainingPlugin):
    """Trains the VAE and the discriminator beside the classifier, the authors' solver's way."""

    def __init__(self, z_dim: int, beta: float, adversary_param: float, num_vae_steps: int, num_adv_steps: int,
                 lr: float, vae_width: int, discriminator_width: int, unlabeled_batch_size: int | None,
                 kld: str):
        self.z_dim, self.beta, self.adversary = z_dim, float(beta), float(adversary_param)
        self.num_vae_steps, self.num_adv_steps, self.lr = num_vae_steps, num_adv_steps, float(lr)
        self.vae_width, self.discriminator_width, self.kld = vae_width, discriminator_width, kld
        self.requested_unlabeled = unlabeled_batch_size
        self.vae: VAE | None = None
        self.disc: LatentDiscriminator | None = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        size, channels = image_shape(ctx.pool)
        self.vae = VAE(size, channels, self.z_dim, self.vae_width).to(ctx.device)
        self.disc = LatentDiscriminator(self.z_dim, hidden=self.discriminator_width).to(ctx.device)
        self.setup_batches(ctx)

    def setup_batches(self, ctx: TrainContext) -> None:
        """The unlabeled batch size, the plugin's own generator and the rows `fresh` draws from."""
        # the authors' unlabeled loader has the classifier's batch size
        self.unlabeled_batch_size = self.requested_unlabeled or ctx.settings.batch_size
        # a generator of our own (seeded from the loop's seeded global one) for the VAE's noise and the
        # fresh batches, so the trainer's generator gives the classifier the same batches as without them
        self.generator = torch.Generator(device=ctx.device).manual_seed(int(torch.randint(2 ** 62, ())))
        self.make_batch = ctx.batch_maker(self.generator)
        self.labeled_rows = torch.as_tensor(ctx.labeled, device=ctx.device)
        self.unlabeled_rows = torch.as_tensor(ctx.unlabeled, device=ctx.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "discriminator": self.disc} if self.vae is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"vae": vae_optimizer(self.vae.parameters(), self.lr),
                "discriminator": vae_optimizer(self.disc.parameters(), self.lr)}

    def fresh(self, n_l: int, n_u: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A new labeled and unlabeled batch (the authors' next(labeled_data), next(unlabeled_data))."""
        g, dev = self.generator, self.labeled_rows.device
        rows_l = self.labeled_rows[torch.randint(len(self.labeled_rows), (n_l,), device=dev, generator=g)]
        rows_u = self.unlabeled_rows[torch.randint(len(self.unlabeled_rows), (n_u,), device=dev, generator=g)]
        return self.make_batch(rows_l), self.make_batch(rows_u)

    def update(self, step: Step) -> torch.Tensor:
        # the classifier's step: the trainer's default step, on the backbone's optimiser alone
        classifier_only = dataclasses.replace(step, optimizers={"backbone": step.optimizers["backbone"]})
        target = TrainingPlugin.update(self, classifier_only)
        x_l, x_u = step.x.float(), step.unlabeled_x.float()
        opt_v, opt_d = step.optimizers["vae"], step.optimizers["discriminator"]
        with torch.autocast(step.x.device.type, enabled=False):
            for count in range(self.num_vae_steps):
                if count > 0:
                    x_l, x_u = self.fresh(len(x_l), len(x_u))
                vae_total = vae_step(self.vae, self.disc, opt_v, x_l, x_u, self.beta, self.adversary, self.kld,
                                     self.generator)
            for count in range(self.num_adv_steps):
                if count > 0:
                    x_l, x_u = self.fresh(len(x_l), len(x_u))
                dsc = discriminator_step(self.vae, self.disc, opt_d, x_l, x_u, self.generator)
        step.logs["vae_loss"] = vae_total
        step.logs["dsc_loss"] = dsc
        return target

    def describe(self, settings) -> dict:
        return {"vaal_steps_per_classifier_step": {"vae": self.num_vae_steps, "discriminator": self.num_adv_steps},
                "vaal_unlabeled_batch_size": self.requested_unlabeled or settings.batch_size}


class Vaal(Strategy):
    """Select the k candidates the latent discriminator rates least likely to be labeled.

    References: Sinha, Ebrahimi & Darrell, "Variational Adversarial Active Learning", ICCV 2019,
    arXiv:1904.00370.
    """

    def __init__(self, z_dim: PositiveInt = 32, beta: NonNegativeFloat = 1.0, adversary_param: NonNegativeFloat = 1.0,
                 num_vae_steps: PositiveInt = 2, num_adv_steps: PositiveInt = 1, lr: PositiveFloat = 5e-4,
                 vae_width: PositiveInt = 128, discriminator_width: PositiveInt = 512,
                 unlabeled_batch_size: PositiveInt | None = None, kld: Literal["sum", "mean"] = "sum",
                 score_bn: Literal["batch", "running"] = "batch", score_batch_size: PositiveInt | None = None):
        self.plugin = VaalPlugin(z_dim, beta, adversary_param, num_vae_steps, num_adv_steps, lr, vae_width,
                                 discriminator_width, unlabeled_batch_size, kld)
        self.score_bn, self.score_batch_size = score_bn, score_batch_size

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        bs = self.score_batch_size or (ctx.settings.batch_size if ctx.settings is not None else 128)
        # the authors' sampler reads the unlabeled set in random order (its batches set the batch norm)
        order = ctx.rng.permutation(len(candidates)) if self.score_bn == "batch" else np.arange(len(candidates))
        rows = torch.as_tensor(np.asarray(candidates)[order], device=ctx.device)
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device, channels_last=False)
        scores = torch.empty(len(candidates), device=ctx.device)
        scores[torch.as_tensor(order, device=ctx.device)] = discriminator_scores(
            self.plugin.vae, self.plugin.disc, ctx.pool.train_x[rows], bs, self.score_bn, normalize)
        return candidates[least_labeled(scores, k, ctx.rng)]
