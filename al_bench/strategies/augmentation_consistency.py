"""Augmentation consistency: score a candidate by how much the model's prediction changes across
random augmentations of the same image (consistency under augmentation as an uncertainty signal,
as in Gao et al., "Consistency-Based Semi-supervised Active Learning", ECCV 2020, arXiv:1910.07153).

Each candidate is seen in `n_views` random crops (zero padding `crop_padding` pixels) with random
horizontal flips (`flip`), the training augmentation of al_bench.data.augment, normalised as in
training. `measure: flip_rate` is the fraction of views whose predicted class differs from the
prediction on the clean image; `measure: kl` the mean KL(p_view || p_clean).

Choices: the clean image is the reference (not the views' consensus); ties (frequent with
flip_rate) are broken at random and the views drawn from the selection's seeded generator; the
views are predicted with the trainer's precision and memory format, like the clean pass.

Cost: time O(n_views) forward passes over the N candidates, memory O(N C) beyond one batch.

References: arXiv:1910.07153
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from annotated_types import Ge

from al_bench.data.augment import random_crop_flip
from al_bench.strategies.base import SelectionContext, Strategy, top_k
from al_bench.strategies.common.mc_dropout import torch_generator


def view_disagreement(clean: torch.Tensor, views: list[torch.Tensor], measure: str) -> torch.Tensor:
    """Disagreement of each row's view probabilities (list of (N, C)) with its clean ones (N, C)."""
    if measure == "flip_rate":
        ref = clean.argmax(1)
        return torch.stack([(v.argmax(1) != ref).double() for v in views]).mean(0)
    log_clean = torch.log(clean.double().clamp_min(1e-30))
    kls = [(v.double() * (torch.log(v.double().clamp_min(1e-30)) - log_clean)).sum(1) for v in views]
    return torch.stack(kls).mean(0)


class AugmentationConsistency(Strategy):
    """The candidates whose prediction is least stable under the training augmentation."""

    def __init__(self, n_views: Annotated[int, Ge(1)] = 8, measure: Literal["flip_rate", "kl"] = "flip_rate",
                 crop_padding: Annotated[int, Ge(0)] = 4, flip: bool = True):
        self.n_views, self.measure = int(n_views), measure
        self.crop_padding, self.flip = int(crop_padding), bool(flip)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        clean = ctx.predict(candidates)["probs"]
        x = ctx.pool.train_x[torch.as_tensor(candidates, device=ctx.pool.train_x.device)]
        gen = torch_generator(ctx)
        # the views go through the same pass as the clean images (the trainer's precision and
        # memory format): identical views then agree exactly, whatever the precision
        views = [ctx.predict_images(random_crop_flip(x, self.crop_padding, self.flip, gen))["probs"]
                 for _ in range(self.n_views)]
        return candidates[top_k(view_disagreement(clean, views, self.measure), k, ctx.rng)]
