"""Second augmented views of training batches, for plugins that compare two views of one image
(Barlow Twins in dalbt, supervised contrastive learning in scal_*).

The trainer's batch (`Step.x`, `Step.unlabeled_x`) is one view: pool rows put through the trainer's
augmentation (al_bench.data.augment.random_crop_flip) and normalisation. `view_maker` draws another
view of the same rows the same way, from a generator of the plugin's own, so the trainer's
generator (batch order, the trainer's own augmentation) draws exactly what it draws without the
plugin.
"""

from __future__ import annotations

import torch

from al_bench.training.plugin import TrainContext


def view_maker(ctx: TrainContext):
    """Pool rows -> a second normalised, augmented batch of those rows, drawn the trainer's way
    (`TrainContext.batch_maker`) from a generator seeded from the loop's seeded global generator:
    reproducible, and independent of the trainer's."""
    generator = torch.Generator(device=ctx.device).manual_seed(int(torch.randint(2 ** 62, ())))
    return ctx.batch_maker(generator)
