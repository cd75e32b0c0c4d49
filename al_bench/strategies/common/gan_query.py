"""Query synthesis with a GAN, shared by GAAL (Zhu & Bento, arXiv:1702.07956) and ASAL (Mayer &
Timofte, arXiv:1808.06671): a DCGAN (al_bench.models.gan) trained once on the pool's images,
latent codes z optimised so that the classifier is uncertain about G(z), and each synthetic image
answered by its nearest real candidate (al_bench.strategies.common.retrieval).

Where the GAN is trained: in a training plugin (at the first training step of the first cycle
this process trains, `GanPlugin.ensure_trained`), not in `select`. Both papers train the GAN once,
before the active-learning cycles, on all pool images (labeled and unlabeled) and independently of
the classifier; as a plugin that training is seeded by the loop's per-cycle auxiliary seed, its
weights ride in the warm-start checkpoint (a warm-start resume loads it and trains none), it leaves
the classifier's training untouched (the default step, no unlabeled batch; a generator of its
own), and its cost is counted in the cycle's `train_time_s` (and on its own in
`gan_train_time_s`), not in `select_time_s`. A run resumed without warm start trains the GAN again
from the resumed cycle's seed, so it differs from the uninterrupted run's GAN.

Selection cost: k x z_steps passes of the generator and the classifier (forward and backward),
independent of the number of candidates, plus one feature pass over the candidates (the
discriminator's features of a pool image are computed once and kept, `cache_features`) and the
blocked nearest-neighbour search, O(k N F) time and O(N F + k (r + block)) memory.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.models.gan import Discriminator, Generator, to_gan_space, train_gan
from al_bench.strategies.base import Strategy
from al_bench.strategies.common.retrieval import BLOCK, match_distinct
from al_bench.strategies.common.uncertainty import entropy
from al_bench.training.plugin import TrainContext, TrainingPlugin

Features = Literal["discriminator", "pixels", "classifier"]


class GanPlugin(TrainingPlugin):
    """Trains the DCGAN once on every pool image; the classifier trains as usual."""

    def __init__(self, z_dim: int, width: int, epochs: float, batch_size: int, lr: float, beta1: float):
        self.z_dim, self.width, self.epochs = z_dim, width, float(epochs)
        self.batch_size, self.lr, self.beta1 = batch_size, float(lr), float(beta1)
        self.gen: Generator | None = None
        self.disc: Discriminator | None = None
        self.images: torch.Tensor | None = None  # the pool's images until the GAN is trained
        self.trained, self.seed = False, 0
        self.cycle_stats: dict[str, float] = {}

    def steps(self, n_pool: int) -> int:
        return max(1, math.ceil(self.epochs * n_pool / self.batch_size))

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        self.cycle_stats = {"gan_train_time_s": 0.0}
        if self.gen is not None:  # trained once (the papers)
            return
        _, h, w, c = ctx.pool.train_x.shape
        if h != w:
            raise ConfigError(f"the GAN needs square images; the dataset's are {h}x{w}")
        self.gen = Generator(int(h), int(c), self.z_dim, self.width).to(ctx.device)
        self.disc = Discriminator(int(h), int(c), self.width).to(ctx.device)
        self.images, self.trained = ctx.pool.train_x, False
        # our own generator (seeded from the loop's seeded global one): the trainer's stays untouched
        self.seed = int(torch.randint(2 ** 62, ()))

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)  # a warm-start resume: the trained GAN, nothing to train
        self.trained = True

    def ensure_trained(self) -> None:
        """Train the GAN if it is not yet: at the first training step, so that a warm-start resume,
        which loads the GAN after `setup`, never trains one in vain."""
        if self.trained:
            return
        g = torch.Generator(device=self.images.device).manual_seed(self.seed)
        t0 = time.perf_counter()
        with torch.autocast(self.images.device.type, enabled=False):
            losses = train_gan(self.gen, self.disc, self.images, self.steps(self.images.shape[0]), self.batch_size,
                               self.lr, self.beta1, g)
        self.cycle_stats = {"gan_train_time_s": round(time.perf_counter() - t0, 3), **losses}
        self.trained, self.images = True, None

    def update(self, step):
        self.ensure_trained()
        return super().update(step)

    def modules(self) -> dict[str, nn.Module]:
        return {"gan_generator": self.gen, "gan_discriminator": self.disc} if self.gen is not None else {}

    def metrics(self, preds, targets) -> dict[str, float]:
        return dict(self.cycle_stats)

    def describe(self, settings) -> dict:
        return {"gan": {"trained": "once, at the first cycle, on all pool images", "epochs": self.epochs,
                        "batch_size": self.batch_size, "z_dim": self.z_dim, "width": self.width}}


def margin_sq(logits: torch.Tensor) -> torch.Tensor:
    """(top-1 logit - top-2 logit)^2 per row: GAAL's squared distance to the decision boundary.
    For two classes and a linear head it is exactly (W^T x + b)^2 with W = w_1 - w_0, b = b_1 - b_0,
    the paper's objective for its linear SVM."""
    top = logits.topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).pow(2)


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-H(softmax(logits)) per row: minimised, ASAL's maximum-entropy generation."""
    return -entropy(torch.softmax(logits, 1))


OBJECTIVES = {"margin": margin_sq, "entropy": neg_entropy}


class Classifier:
    """The trained classifier on generator-space images (N, C, H, W) in [-1, 1]: the trainer's
    normalisation, fp32, eval mode; differentiable in the input."""

    def __init__(self, model: nn.Module, mean, std, device):
        self.model = model
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor):
        return self.model(((x + 1.0) * 0.5 - self.mean) / self.std)


def synthesize(gen: nn.Module, classify, z: torch.Tensor, objective, steps: int, lr: float, optimizer: str,
               z_penalty: float, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise each row of z (a copy) to minimise objective(classify(gen(z)).logits) + z_penalty x
    ||z||^2 by `steps` steps of SGD or Adam (lr), rows in chunks of `chunk` (every row's problem is
    its own: the networks are in eval mode, so the result does not depend on the chunking).
    Returns (z, the final objective per row, without the penalty)."""
    out_z, out_obj = [], []
    for s in range(0, z.shape[0], chunk):
        zc = z[s:s + chunk].detach().clone().requires_grad_(True)
        opt = torch.optim.SGD([zc], lr=lr) if optimizer == "sgd" else torch.optim.Adam([zc], lr=lr)
        for _ in range(steps):
            loss = objective(classify(gen(zc)).logits.float()).sum()
            if z_penalty:
                loss = loss + z_penalty * zc.pow(2).sum()
            # the gradient in z alone: the networks' weight gradients (a third or more of a backward) are
            # never computed, and no .grad lands on the classifier's or the GAN's parameters
            zc.grad, = torch.autograd.grad(loss, zc)
            opt.step()
        with torch.no_grad():
            out_obj.append(objective(classify(gen(zc)).logits.float()))
        out_z.append(zc.detach())
    return torch.cat(out_z), torch.cat(out_obj)


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[s:s + batch]).float() for s in range(0, x.shape[0], batch)])


class GanQuery(Strategy):
    """Synthesise k queries with the GAN, most uncertain first, and answer each by its nearest
    distinct candidate. Subclasses set `objective` ("margin" GAAL, "entropy" ASAL)."""

    objective: str = "entropy"

    def __init__(self, z_dim: int, gan_width: int, gan_epochs: float, gan_batch_size: int, gan_lr: float,
                 gan_beta1: float, z_steps: int, z_lr: float, z_optimizer: str, z_penalty: float,
                 features: str, feature_batch_size: int, block: int, cache_features: bool):
        self.plugin = GanPlugin(z_dim, gan_width, gan_epochs, gan_batch_size, gan_lr, gan_beta1)
        self.z_steps, self.z_lr, self.z_optimizer, self.z_penalty = z_steps, float(z_lr), z_optimizer, float(z_penalty)
        self.features, self.feature_batch_size, self.block = features, feature_batch_size, block
        self.cache_features = cache_features
        self._cache: tuple | None = None  # (discriminator, features (n_pool, F), computed (n_pool,))

    def train_plugin(self) -> TrainingPlugin:
        return self.plugin

    def candidate_features(self, ctx, candidates: np.ndarray) -> torch.Tensor:
        if self.features == "classifier":
            return ctx.predict(candidates)["embedding"].float()
        rows = torch.as_tensor(np.asarray(candidates), device=ctx.device)
        fn = (lambda x: x.flatten(1)) if self.features == "pixels" else self.plugin.disc.features
        compute = lambda r: _batched(lambda b: fn(to_gan_space(ctx.pool.train_x[b])), r, self.feature_batch_size)  # noqa: E731
        if self.features == "pixels" or not self.cache_features:
            return compute(rows)
        # the GAN is fixed after training: a pool image's discriminator features are computed once
        disc = self.plugin.disc
        if self._cache is None or self._cache[0] is not disc:
            n = ctx.pool.n_train
            self._cache = (disc, torch.empty(n, disc.feature_dim, device=ctx.device),
                           torch.zeros(n, dtype=torch.bool, device=ctx.device))
        _, feats, done = self._cache
        todo = rows[~done[rows]]
        if len(todo):
            feats[todo] = compute(todo)
            done[todo] = True
        return feats[rows]

    def synthetic_features(self, classify, x: torch.Tensor) -> torch.Tensor:
        if self.features == "classifier":
            return _batched(lambda b: classify(b).embedding, x, self.feature_batch_size)
        fn = (lambda b: b.flatten(1)) if self.features == "pixels" else self.plugin.disc.features
        return _batched(fn, x, self.feature_batch_size)

    def select(self, ctx, candidates: np.ndarray, k: int) -> np.ndarray:
        gen, disc = self.plugin.gen, self.plugin.disc
        if gen is None:
            raise RuntimeError(f"{type(self).__name__}: no trained GAN (its training plugin was not set up)")
        self.plugin.ensure_trained()  # e.g. a cycle with no training step
        modules = [ctx.model, gen, disc]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            classify = Classifier(ctx.model, ctx.pool.mean, ctx.pool.std, ctx.device)
            g = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2 ** 62)))
            z0 = torch.randn(k, gen.z_dim, device=ctx.device, generator=g)
            with torch.autocast(ctx.device.type, enabled=False):
                z, obj = synthesize(gen, classify, z0, OBJECTIVES[self.objective], self.z_steps, self.z_lr,
                                    self.z_optimizer, self.z_penalty)
                order = torch.sort(obj.double().cpu(), stable=True).indices  # most uncertain first
                x = _batched(gen, z[order.to(z.device)], self.feature_batch_size)
                queries = self.synthetic_features(classify, x)
                base = self.candidate_features(ctx, candidates)
            picks = match_distinct(queries, base, self.block)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return np.asarray(candidates)[picks]


__all__ = ["BLOCK", "GanPlugin", "GanQuery", "margin_sq", "neg_entropy", "synthesize"]
