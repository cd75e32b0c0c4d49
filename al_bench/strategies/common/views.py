"""Second augmented views of training batches, for plugins that compare two views of one image
(Barlow Twins in dalbt, supervised contrastive learning in scal_*).

The trainer's batch (`Step.x`, `Step.unlabeled_x`) is one view: pool rows put through the trainer's
augmentation (al_bench.data.augment.random_crop_flip) and normalisation. `ViewMaker` draws another
view of the same rows the same way, from a generator of the plugin's own, so the trainer's
generator (batch order, the trainer's own augmentation) draws exactly what it draws without the
plugin.
"""

from __future__ import annotations

import torch

from al_bench.data.augment import Normalize, random_crop_flip
from al_bench.training.device import use_channels_last
from al_bench.training.plugin import TrainContext


class ViewMaker:
    """Pool rows -> a normalised, augmented batch, as the trainer makes its batches."""

    def __init__(self, ctx: TrainContext):
        s = ctx.settings
        self.x, self.augment, self.pad, self.flip = ctx.pool.train_x, s.augment, s.crop_padding, s.flip
        self.normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device,
                                   use_channels_last(s.channels_last, ctx.device))
        # seeded from the loop's seeded global generator: reproducible, and independent of the trainer's
        self.generator = torch.Generator(device=ctx.device).manual_seed(int(torch.randint(2 ** 62, ())))

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        xb = self.x[rows]
        if self.augment:
            xb = random_crop_flip(xb, self.pad, self.flip, self.generator)
        return self.normalize(xb)
