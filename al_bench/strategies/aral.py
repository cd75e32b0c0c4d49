"""Adversarial Representation Active Learning, ARAL (Mottaghi & Yeung, 2019).

VAAL's acquisition on a semi-supervised, BiGAN-style conditional GAN: a generator G(z, y) and an
encoder E(x) play the VAE's decoder and encoder, a sampler S on E's means learns to tell labeled (1)
from unlabeled (0) images while E is trained to make it call every image labeled, and the
classifier is co-trained as the GAN's discriminator on labeled, unlabeled and generated images
(Salimans et al.'s K-class semi-supervised GAN: p(real | x) = Z / (Z + 1), Z = sum exp(logits)).
The k candidates S rates least likely to be labeled are selected.

Follows the authors' code (samottaghi/adversarial-representation-active-learning, cifar_trainer.py
`Trainer._train`, cifar_model.py, config.py `cifar_config`; tests/golden/test_aral.py pins its
numbers). Per classifier step, in their order:
1. classifier: cls_lambda x CE(labeled) + gan_lambda x [-1/2 mean lse(unl) + 1/2 mean softplus(lse(unl))
   + 1/2 mean softplus(lse(gen))], lse = logsumexp of the logits, generated images detached;
2. generator and encoder (one backward, both stepped): mean_d |mean over the batch of the classifier's
   embedding of generated - of unlabeled images| (feature matching; the classifier in training mode,
   same unlabeled batch as 1.) + trd_lambda x K x gaussian_nll(E(G(z, y)), z), z ~ U[0, 1)^100 and
   y uniform over the K classes, fresh for 1. and 2.;
3. encoder, on a fresh labeled and unlabeled batch: trd_lambda x (reconstruction + KL(E(x_u))), KL
   summed over batch and latents with log sigma read as a log-variance (their `kl`), + adv_lambda x
   [BCE(S(mu_l), 1) + BCE(S(mu_u), 1)];
4. sampler, on a fresh labeled and unlabeled batch: adv_lambda x [BCE(S(mu_l), 1) + BCE(S(mu_u), 0)].
Adam with betas (0, 0.999) for G and E and (0.5, 0.9999) for S, lr 3e-4, 3e-4, 6e-4, each lr held for the
first two thirds of training and then decayed linearly to 0 (`lr_schedule: linear_last_third`; the
classifier follows the trainer's). The unlabeled batches are drawn from the whole pool, labeled images
included (`unlabeled_pool: all`, their CIFAR/SVHN loaders; `unlabeled` = the unlabeled images only,
their MNIST one). Scoring is S(E(x)) with the encoder in eval mode (`eval2`). The authors carry every
network, the classifier too, over to the next iteration (main.py's `inherit`: the previous run's last
checkpoint, saved every 10,000 iterations); here G, E and S are kept with `trainer.warm_start=true`
(which keeps the classifier) and built anew otherwise, fresh optimisers either way. Where the code
departs from the paper's reading, the code is the default and the other reading a named option:
- `reconstruction: detached` (code): G's reconstruction of x_u enters step 3 detached, so it
  trains nothing and is left out here (the gradient is the same); `trained` lets it train E and G
  (G stepped in step 3 too), G conditioned on the classifier's logits of x_u as in the code;
- `encoder_label: zero` (the code as run with the PyTorch 1.x of its README: the CIFAR encoder's label
  plane is 0 for integer labels and argmax(logits) / K, an integer division, hence 0, for unlabeled
  images); `argmax` is the same code under PyTorch >= 1.7's true division: argmax / K of the
  classifier's logits (training mode) for unlabeled images, 0 for labeled and generated ones;
- `query: least_labeled` (the paper, VAAL's sampler, whose `*= -1` their `eval2` keeps) picks the lowest
  S; their main.py then sorts the negated scores ascending, which would take the HIGHEST S first
  (`query: most_labeled`), but it reads the scores from a shuffled loader as if they were in pool
  order, so the code's picks do not depend on the scores at all; that is not reproduced.

Differences forced by al-bench (not options): the classifier is the experiment's backbone, its
optimiser and schedule the trainer's, its embedding the feature-matching features (the authors': a
weight-normalised 9-layer CNN, Adam 6e-4 betas (0.5, 0.999), its mean-pooled last features); one
ARAL iteration per classifier step, so the GAN trains for the trainer's epochs over the labeled set
(the authors': 100 epochs over the whole pool); G's tanh output is pixels in [0, 1] put through the
trainer's normalisation (the authors normalise with mean = std = 0.5, where the two agree); batches
are drawn at random with replacement with the trainer's augmentation from the plugin's own
generator; in `encoder_label: zero` the classifier pass on x_u whose logits only feed that plane
and the detached reconstruction is skipped (it trains nothing). G, E and S run in fp32. The
authors' classifier has no batch norm; a backbone that has it normalises the unlabeled and generated
batches with their own statistics (training mode, as theirs) but keeps the running statistics of the
labeled batches (`classifier_bn: labeled`; `all` lets every pass move them, which on one quickstart run
(seed 0) put the eval-mode classifier at 0.47 test accuracy after two cycles against 0.85 with `labeled`).

References: arXiv:1912.09720.
"""

from __future__ import annotations

import contextlib
import dataclasses
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch import nn

from al_bench.data.augment import Normalize
from al_bench.models.aral import ConditionalGenerator, LabelEncoder, Sampler
from al_bench.models.vae import vae_loss
from al_bench.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from al_bench.strategies.base import Strategy, top_k
from al_bench.strategies.vaal import VaalPlugin, discriminator_scores, image_shape, least_labeled
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin

_bce = nn.functional.binary_cross_entropy
BETAS = {"generator": (0.0, 0.999), "encoder": (0.0, 0.999), "sampler": (0.5, 0.9999)}  # cifar_trainer.py


def gan_classifier_loss(unl_logits: torch.Tensor, gen_logits: torch.Tensor) -> torch.Tensor:
    """The semi-supervised GAN's unlabeled term (real: unlabeled, fake: generated), before gan_lambda."""
    lse_u, lse_g = unl_logits.logsumexp(1), gen_logits.logsumexp(1)
    real = -0.5 * lse_u.mean() + 0.5 * nn.functional.softplus(lse_u).mean()
    return real + 0.5 * nn.functional.softplus(lse_g).mean()


def gaussian_nll(mu: torch.Tensor, log_sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """-log N(noise; mu, sigma) per image up to a constant, averaged (the authors' `gaussian_nll`)."""
    nll = log_sigma.sum(1) + (((noise - mu) / (1e-8 + log_sigma.exp())) ** 2).sum(1) / 2
    return nll.mean()


def feature_matching(gen_feat: torch.Tensor, unl_feat: torch.Tensor) -> torch.Tensor:
    return (gen_feat.mean(0) - unl_feat.mean(0)).abs().mean()


def lr_factor(epoch: int, epochs: int, schedule: str) -> float:
    """The authors' min(3 (1 - epoch / epochs), 1): flat, then linear to 0 over the last third."""
    return min(3.0 * (1.0 - epoch / epochs), 1.0) if schedule == "linear_last_third" else 1.0


@contextlib.contextmanager
def bn_stats_frozen(model: nn.Module):
    """Batch-norm layers of `model` normalise with each batch's statistics but leave their running ones
    as they are (momentum 0 inside; the batch counter put back). Unlike a restore of the buffers
    afterwards this leaves the tensors autograd saved untouched."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class AralPlugin(VaalPlugin):
    """Trains G, E and S beside the classifier and adds the GAN terms to the classifier's step.
    Reuses VAAL's plugin for its own generator, batches and `fresh` draws."""

    def __init__(self, noise_size: int, gan_lambda: float, cls_lambda: float, trd_lambda: float, adv_lambda: float,
                 lrs: dict[str, float], width: int, sampler_width: int, unlabeled_batch_size: int | None,
                 unlabeled_pool: str, encoder_label: str, reconstruction: str, lr_schedule: str,
                 classifier_bn: str = "labeled"):
        self.noise_size, self.gan, self.cls = noise_size, float(gan_lambda), float(cls_lambda)
        self.trd, self.adv, self.lrs, self.width, self.sampler_width = float(trd_lambda), float(adv_lambda), lrs, \
            width, sampler_width
        self.requested_unlabeled, self.unlabeled_pool = unlabeled_batch_size, unlabeled_pool
        self.encoder_label, self.reconstruction, self.lr_schedule = encoder_label, reconstruction, lr_schedule
        self.classifier_bn = classifier_bn
        self.gen: ConditionalGenerator | None = None
        self.enc: LabelEncoder | None = None
        self.smp: Sampler | None = None

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        size, channels = image_shape(ctx.pool)
        self.num_classes, self.epochs = int(ctx.pool.num_classes), ctx.settings.epochs
        if not (warm_start and self.gen is not None):  # the authors' `inherit` keeps them: with warm_start
            # built in the authors' order (after the classifier): generator, encoder, sampler
            self.gen = ConditionalGenerator(size, channels, self.noise_size, self.num_classes,
                                            self.width).to(ctx.device)
            self.enc = LabelEncoder(size, channels, self.noise_size, self.width).to(ctx.device)
            self.smp = Sampler(self.noise_size, self.sampler_width).to(ctx.device)
        self.setup_batches(ctx)
        # the unlabeled batches are the plugin's own draws (from the whole pool by default), not the trainer's
        self.n_unlabeled, self.unlabeled_batch_size = self.unlabeled_batch_size, 0
        if self.unlabeled_pool == "all":
            self.unlabeled_rows = torch.arange(ctx.pool.n_train, device=ctx.device)
        mean = torch.as_tensor(ctx.pool.mean, device=ctx.device, dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(ctx.pool.std, device=ctx.device, dtype=torch.float32)[None, :, None, None]
        self.pixel_mean, self.pixel_std = mean, std

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.gen, "encoder": self.enc, "sampler": self.smp} if self.gen is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {name: OptimizerSpec(module.parameters(), factory=partial(torch.optim.Adam, lr=self.lrs[name],
                                                                         betas=BETAS[name]), scheduled=False)
                for name, module in self.modules().items()}

    # random draws, in the authors' order (noise, then labels); tests replace them with pinned ones
    def noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, dev = self.generator, self.unlabeled_rows.device
        z = torch.rand(n, self.noise_size, device=dev, generator=g)
        return z, torch.randint(self.num_classes, (n,), device=dev, generator=g)

    def unlabeled_batch(self, n: int) -> torch.Tensor:
        g, dev = self.generator, self.unlabeled_rows.device
        return self.make_batch(self.unlabeled_rows[torch.randint(len(self.unlabeled_rows), (n,), device=dev,
                                                                 generator=g)])

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G's tanh output read as pixels in [0, 1], in the trainer's normalisation."""
        return ((self.gen(z, y) + 1) / 2 - self.pixel_mean) / self.pixel_std

    def extra_passes(self, model: nn.Module):
        """Around the classifier's passes on unlabeled and generated images: with `classifier_bn: labeled`
        its batch-norm running statistics stay those of the labeled batches."""
        return bn_stats_frozen(model) if self.classifier_bn == "labeled" else contextlib.nullcontext()

    def plane(self, step: Step, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(the encoder's label plane, the classifier's logits) for unlabeled images x."""
        if self.encoder_label == "zero" and self.reconstruction == "detached":
            return None, None
        with torch.no_grad(), self.extra_passes(step.model):  # training mode, as the authors' `self.dis(unl)`
            logits = step.forward(x).logits.float()
        return (logits.argmax(1) / self.num_classes if self.encoder_label == "argmax" else None), logits

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor:
        """Step 1's extra terms: the classifier as the GAN's discriminator."""
        z, y = self.noise(len(self._x_u))
        with torch.autocast(step.x.device.type, enabled=False):
            fake = self.generate(z, y).detach()
        with self.extra_passes(step.model):
            unl_logits = step.forward(self._x_u).logits.float()
            gen_logits = step.forward(fake).logits.float()
        extra = self.gan * gan_classifier_loss(unl_logits, gen_logits)
        if self.cls != 1.0:  # the default update adds the plain mean cross-entropy
            extra = extra + (self.cls - 1.0) * target_loss.mean()
        return extra

    def update(self, step: Step) -> torch.Tensor:
        factor = lr_factor(step.epoch, self.epochs, self.lr_schedule)
        for name in self.modules():
            for group in step.optimizers[name].param_groups:
                group["lr"] = self.lrs[name] * factor
        self._x_u = self.unlabeled_batch(self.n_unlabeled)
        # 1. the classifier: the trainer's default step plus `loss`, on the backbone's optimiser alone
        target = TrainingPlugin.update(self, dataclasses.replace(step, optimizers={"backbone":
                                                                                   step.optimizers["backbone"]}))
        opt = step.optimizers
        with torch.autocast(step.x.device.type, enabled=False):
            g_loss = self.generator_step(step, opt)
            e_loss = self.encoder_step(step, opt, *self.fresh(len(step.x), self.n_unlabeled))
            s_loss = self.sampler_step(step, opt, *self.fresh(len(step.x), self.n_unlabeled))
        opt["backbone"].zero_grad(set_to_none=True)  # step 2's pass left gradients on the classifier
        step.logs.update(gen_loss=g_loss, enc_loss=e_loss, smp_loss=s_loss)
        return target

    def generator_step(self, step: Step, opt: dict) -> torch.Tensor:
        z, y = self.noise(len(self._x_u))
        fake = self.generate(z, y)
        mu, log_sigma = self.enc(fake)  # integer labels: zero plane
        with self.extra_passes(step.model):
            unl_feat = step.forward(self._x_u).embedding.float()
            gen_feat = step.forward(fake).embedding.float()
        loss = feature_matching(gen_feat, unl_feat) + self.trd * self.num_classes * gaussian_nll(mu, log_sigma, z)
        opt["generator"].zero_grad(set_to_none=True)
        opt["encoder"].zero_grad(set_to_none=True)
        loss.backward()
        opt["generator"].step()
        opt["encoder"].step()
        return loss.detach()

    def encoder_step(self, step: Step, opt: dict, x_l: torch.Tensor, x_u: torch.Tensor) -> torch.Tensor:
        plane, logits = self.plane(step, x_u)
        mu_l, _ = self.enc(x_l)
        mu_u, log_sigma_u = self.enc(x_u, plane)
        if self.reconstruction == "trained":
            eps = torch.randn(mu_u.shape, device=mu_u.device, generator=self.generator)
            recon = self.generate(eps * (0.5 * log_sigma_u).exp() + mu_u, logits)
            vae = self.trd * vae_loss(x_u, recon, mu_u, log_sigma_u, 1.0)
        else:  # the code's detached reconstruction carries no gradient: the KL term alone
            vae = self.trd * -0.5 * (1 + log_sigma_u - mu_u.pow(2) - log_sigma_u.exp()).sum()
        p_l, p_u = self.smp(mu_l), self.smp(mu_u)
        loss = vae + self.adv * (_bce(p_l, torch.ones_like(p_l)) + _bce(p_u, torch.ones_like(p_u)))
        stepped = ["encoder", "generator"] if self.reconstruction == "trained" else ["encoder"]
        for name in stepped:
            opt[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in stepped:
            opt[name].step()
        opt["sampler"].zero_grad(set_to_none=True)
        return loss.detach()

    def sampler_step(self, step: Step, opt: dict, x_l: torch.Tensor, x_u: torch.Tensor) -> torch.Tensor:
        plane, _ = self.plane(step, x_u) if self.encoder_label == "argmax" else (None, None)
        with torch.no_grad():  # the encoder in training mode (its batch-norm statistics move, as theirs)
            mu_l, _ = self.enc(x_l)
            mu_u, _ = self.enc(x_u, plane)
        p_l, p_u = self.smp(mu_l), self.smp(mu_u)
        loss = self.adv * (_bce(p_l, torch.ones_like(p_l)) + _bce(p_u, torch.zeros_like(p_u)))
        opt["sampler"].zero_grad(set_to_none=True)
        loss.backward()
        opt["sampler"].step()
        return loss.detach()

    def describe(self, settings) -> dict:
        return {"aral_unlabeled_batch_size": self.requested_unlabeled or settings.batch_size,
                "aral_lr_schedule": self.lr_schedule}


class Aral(Strategy):
    """Select the k candidates ARAL's sampler rates least likely to be labeled.

    References: Mottaghi & Yeung, "Adversarial Representation Active Learning", arXiv:1912.09720.
    """

    def __init__(self, noise_size: PositiveInt = 100, gan_lambda: NonNegativeFloat = 1.0,
                 cls_lambda: NonNegativeFloat = 1.0, trd_lambda: NonNegativeFloat = 0.001,
                 adv_lambda: NonNegativeFloat = 0.001, gen_lr: PositiveFloat = 3e-4, enc_lr: PositiveFloat = 3e-4,
                 smp_lr: PositiveFloat = 6e-4, width: PositiveInt = 128, sampler_width: PositiveInt = 512,
                 unlabeled_batch_size: PositiveInt | None = None, unlabeled_pool: Literal["all", "unlabeled"] = "all",
                 encoder_label: Literal["zero", "argmax"] = "zero",
                 reconstruction: Literal["detached", "trained"] = "detached",
                 lr_schedule: Literal["linear_last_third", "constant"] = "linear_last_third",
                 query: Literal["least_labeled", "most_labeled"] = "least_labeled",
                 classifier_bn: Literal["labeled", "all"] = "labeled",
                 score_batch_size: PositiveInt | None = None):
        lrs = {"generator": gen_lr, "encoder": enc_lr, "sampler": smp_lr}
        self.plugin = AralPlugin(noise_size, gan_lambda, cls_lambda, trd_lambda, adv_lambda, lrs, width,
                                 sampler_width, unlabeled_batch_size, unlabeled_pool, encoder_label, reconstruction,
                                 lr_schedule, classifier_bn)
        self.query, self.score_batch_size = query, score_batch_size

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def scores(self, ctx, candidates: np.ndarray) -> torch.Tensor:
        """S(E(x)) per candidate, in candidate order: the probability that it is labeled."""
        bs = self.score_batch_size or (ctx.settings.batch_size if ctx.settings is not None else 128)
        rows = torch.as_tensor(np.asarray(candidates), device=ctx.device)
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device, channels_last=False)
        # the authors' eval2: every module in eval mode (batch-norm running statistics)
        return discriminator_scores(self.plugin.enc, self.plugin.smp, ctx.pool.train_x[rows], bs, "running",
                                    normalize)

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        scores = self.scores(ctx, candidates)
        pick = least_labeled(scores, k, ctx.rng) if self.query == "least_labeled" else top_k(scores, k, ctx.rng)
        return np.asarray(candidates)[pick]
