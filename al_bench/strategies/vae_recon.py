"""Reconstruction error as the acquisition: learning loss with its loss-prediction module replaced
by a decoder or a VAE, trained with the classifier; the candidates it reconstructs WORST are labeled.

The idea was put forward as a follow-up to learning loss (Yoo & Kweon, CVPR 2019, arXiv:1905.03677):
where that paper attaches a loss-prediction module to the backbone's features, attach a decoder
(or a VAE) instead and take the images it cannot reproduce as the ones the model does not know.
There is no paper with code for it (searched: GitHub code and strings for reconstruction-error
acquisition on backbone features, learning-loss follow-ups); every choice below is OUR READING,
each a config option:

- `input: features` (default): the module reads the backbone's features, as the loss-prediction
  module does (`features: stages`: each stage output global-average-pooled and concatenated, the
  module's input in the paper's figure 2; `embedding`: the penultimate features), maps them to a
  latent of `z_dim` and decodes an image. `detach_at` is the fraction of training during which the
  reconstruction gradient also reaches the backbone (the backbone then acts as the encoder), as
  learning loss's detach point. Default 0: the module only reads the classifier's features and the
  classifier trains exactly as without it; learning loss's 0.6 (120 of 200 epochs) is the named
  option (1 = joint throughout). Why: on the quickstart (digits, seed 0, 40 labels) joint training
  cost the classifier most of its accuracy (test accuracy 0.21 with detach_at 0.6, 0.57 with weight
  0.1, against 0.64 with detach_at 0, equal to plain training).
  `input: images`: the VAE of al_bench.models.vae (VAAL's) on the images themselves, its own
  encoder; the backbone is untouched by it (detach_at does not apply).
- `kind: decoder` (default): deterministic, z = the linear head's output, loss = pixel MSE.
  `kind: vae`: z sampled from N(mu, diag exp(logvar)) in training, loss = pixel MSE + beta x KL
  (al_bench.models.vae.vae_loss; KL averaged over batch and latents, `kld: mean`, or summed).
- The decoder is VAAL's decoder layout (al_bench.models.vae.VAE's `decoder` for the pool's image
  size and channels, `width` as there); the target is the normalised (augmented) training image.
- The module is trained on the labeled batches only (`train_on: labeled`, as the loss-prediction
  module), so a high error means "unlike the labeled set"; `labeled_unlabeled` adds an unlabeled
  batch of the same size to its loss (transductive, as VAAL's VAE).
- Optimiser: Adam, lr 5e-4, no weight decay, no schedule (VAAL's for the same decoder).
- Score (prediction pass, eval mode, z = mu: no sampling, so a score does not depend on noise):
  `score: error` = mean squared pixel error of the reconstruction; for a VAE `score: nelbo` = that
  error + beta x the image's KL (reduced over latents as `kld`): the image's term of the training
  objective, a negative-ELBO up to constants for a unit-variance Gaussian decoder.
- Weight `weight` (lambda) of the reconstruction loss in the sum with the target loss: 1, as
  learning loss's lambda. The module runs in fp32 whatever the trainer's precision.

References: arXiv:1905.03677 (the setting this replaces the module of); arXiv:1904.00370 (VAAL,
the VAE and decoder layout).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from annotated_types import Ge, Le
from torch import nn

from al_bench import ConfigError
from al_bench.models.vae import VAE, vae_loss
from al_bench.schema import NonNegativeFloat, PositiveFloat, PositiveInt
from al_bench.strategies.base import ScoreStrategy
from al_bench.strategies.lloss import ranking_accuracy
from al_bench.strategies.vaal import image_shape, vae_optimizer
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin


def pooled_stages(stages: list[torch.Tensor]) -> torch.Tensor:
    """Each stage output averaged over space and concatenated: (N, sum of stage channels)."""
    return torch.cat([s.float().mean((2, 3)) for s in stages], 1)


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor, kld: str) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, averaged ("mean") or summed ("sum") over the latents."""
    terms = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return terms.mean(1) if kld == "mean" else terms.sum(1)


class Reconstructor(nn.Module):
    """Features (N, F) or normalised images (N, C, S, S) -> (reconstruction, mu, logvar).
    On images it is al_bench.models.vae.VAE; on features, that VAE's decoder behind linear heads."""

    def __init__(self, source: str, in_dim: int, image_size: int, channels: int, z_dim: int, width: int):
        super().__init__()
        self.source = source
        vae = VAE(image_size, channels, z_dim, width)
        self.image_size, self.size = vae.image_size, vae.size
        if source == "images":
            self.vae = vae
        else:
            self.decoder = vae.decoder  # the VAE's image encoder is not needed: the backbone encodes
            self.fc_mu = nn.Linear(in_dim, z_dim)
            self.fc_logvar = nn.Linear(in_dim, z_dim)

    def encode(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source == "images":
            return self.vae.encode(inp)
        return self.fc_mu(inp), self.fc_logvar(inp)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        recon = (self.vae.decoder if self.source == "images" else self.decoder)(z)
        lo = (self.size - self.image_size) // 2  # the VAE works at a power of two: crop back
        return recon[:, :, lo:lo + self.image_size, lo:lo + self.image_size]

    def forward(self, inp: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        mu, logvar = self.encode(inp)
        z = mu
        if sample:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            z = eps * (0.5 * logvar).exp() + mu
        return self.decode(z), mu, logvar


class ReconstructionPlugin(TrainingPlugin):
    """Trains the decoder (or VAE) beside the classifier, its loss added to the target loss."""

    def __init__(self, source: str, kind: str, features: str, z_dim: int, width: int, weight: float, beta: float,
                 kld: str, detach_at: float, train_on: str, lr: float, score: str):
        self.source, self.kind, self.features, self.z_dim, self.width = source, kind, features, z_dim, width
        self.weight, self.beta, self.kld, self.detach_at = float(weight), float(beta), kld, float(detach_at)
        self.train_on, self.lr, self.score = train_on, float(lr), score
        self.module: Reconstructor | None = None
        self.first_detached = 0
        self.generator: torch.Generator | None = None

    def feature_dim(self, model: nn.Module) -> int:
        return sum(model.stage_channels) if self.features == "stages" else int(model.embed_dim)

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        size, channels = image_shape(ctx.pool)
        self.first_detached = int(round(self.detach_at * ctx.settings.epochs))
        if self.module is None or not warm_start:
            self.module = Reconstructor(self.source, self.feature_dim(model), size, channels, self.z_dim,
                                        self.width).to(ctx.device)
        # our own generator (seeded from the loop's seeded global one) for the VAE's noise, so the
        # trainer's generator and the global one give the classifier the same draws as without it
        self.generator = torch.Generator(device=ctx.device).manual_seed(int(torch.randint(2 ** 62, ())))
        self.unlabeled_batch_size = ctx.settings.batch_size if self.train_on == "labeled_unlabeled" else 0

    def modules(self) -> dict[str, nn.Module]:
        return {"reconstructor": self.module} if self.module is not None else {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {"reconstructor": vae_optimizer(self.module.parameters(), self.lr)}

    def detached(self, epoch: int) -> bool:
        """True when the reconstruction loss must not reach the backbone in 0-based `epoch`."""
        return epoch >= self.first_detached

    def module_input(self, out, x: torch.Tensor, detach: bool) -> torch.Tensor:
        if self.source == "images":
            return x.float()
        h = pooled_stages(out.stages) if self.features == "stages" else out.embedding.float()
        return h.detach() if detach else h

    def recon_loss(self, inp: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = self.module(inp, sample=self.kind == "vae", generator=self.generator)
        x = x.float().contiguous()
        if self.kind == "vae":
            return vae_loss(x, recon, mu, logvar, self.beta, self.kld)
        return nn.functional.mse_loss(recon, x)

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor:
        detach = self.detached(step.epoch)
        with torch.autocast(step.x.device.type, enabled=False):
            total = self.recon_loss(self.module_input(out, step.x, detach), step.x)
        if step.unlabeled_x is not None:
            u_out = step.forward(step.unlabeled_x) if self.source == "features" else None
            with torch.autocast(step.x.device.type, enabled=False):
                total = total + self.recon_loss(self.module_input(u_out, step.unlabeled_x, detach), step.unlabeled_x)
        return self.weight * total

    def outputs(self, out, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon, mu, logvar = self.module(self.module_input(out, x, True))  # z = mu: no noise in a score
        error = (recon - x.float()).pow(2).mean((1, 2, 3))
        if self.score == "nelbo":
            error = error + self.beta * kl_per_image(mu, logvar, self.kld)
        return {"recon_score": error}

    def metrics(self, preds, targets) -> dict[str, float]:
        # does the reconstruction error order test images like their loss? (cf. lloss's measure)
        true = nn.functional.cross_entropy(preds["logits"], targets, reduction="none")
        return {"recon_rank_acc": ranking_accuracy(preds["recon_score"], true)}

    def describe(self, settings) -> dict:
        if self.source == "images":
            link = "none: the VAE encodes the images itself"
        else:
            first = min(int(round(self.detach_at * settings.epochs)), settings.epochs)
            link = f"reconstruction gradient reaches the backbone in 0-based epochs < {first}"
        return {"vae_recon_module": f"{self.kind} on {self.source}"
                                    + (f" ({self.features})" if self.source == "features" else ""),
                "vae_recon_backbone_gradient": link}


class VaeRecon(ScoreStrategy):
    """Select the k candidates whose reconstruction error (or negative ELBO) is HIGHEST.

    References: the learning-loss follow-up idea; Yoo & Kweon, "Learning Loss for Active Learning",
    CVPR 2019, arXiv:1905.03677. No public code: the choices are ours (module docstring).
    """

    def __init__(self, input: Literal["features", "images"] = "features", kind: Literal["decoder", "vae"] = "decoder",
                 features: Literal["stages", "embedding"] = "stages", z_dim: PositiveInt = 32,
                 width: PositiveInt = 128, weight: NonNegativeFloat = 1.0, beta: NonNegativeFloat = 1.0,
                 kld: Literal["mean", "sum"] = "mean", detach_at: Annotated[float, Ge(0), Le(1)] = 0.0,
                 train_on: Literal["labeled", "labeled_unlabeled"] = "labeled", lr: PositiveFloat = 5e-4,
                 score: Literal["error", "nelbo"] = "error"):
        if score == "nelbo" and kind != "vae":
            raise ConfigError("strategy.score=nelbo needs strategy.kind=vae (a plain decoder has no ELBO); "
                              "use score=error")
        self.plugin = ReconstructionPlugin(input, kind, features, z_dim, width, weight, beta, kld, detach_at,
                                           train_on, lr, score)

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def score(self, preds):
        return preds["recon_score"]
