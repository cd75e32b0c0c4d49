"""VGG-16 with batch norm, CIFAR variant (Simonyan & Zisserman 2015, arXiv:1409.1556):
13 conv layers in 5 blocks, one linear classifier on the 512-d pooled features."""

from __future__ import annotations

import torch
from torch import nn

from al_bench.models.base import Backbone
from al_bench.schema import Fraction, PositiveInt

BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(Backbone):
    """The stages are the outputs of blocks 2-5 (128, 256, 512, 512 channels)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: PositiveInt = 64, dropout: Fraction = 0.0):
        super().__init__(dropout)
        scale = width / 64
        blocks, cin = [], in_channels
        for block in BLOCKS:
            layers = []
            for c in block:
                c = int(c * scale)
                layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                cin = c
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.stage_channels = tuple(int(block[-1] * scale) for block in BLOCKS[1:])
        self.embed_dim = cin
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x):
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= 1:
                stages.append(x)
        return stages, torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
