"""A small CNN for small or grayscale images (8x8 digits, 28x28 MNIST): four 3x3 conv stages,
the last three halving the resolution (ceil), global average pool, linear."""

from __future__ import annotations

import torch
from torch import nn

from al_bench.models.base import Backbone
from al_bench.schema import Fraction, PositiveInt


class SmallCNN(Backbone):
    def __init__(self, num_classes: int, in_channels: int = 1, width: PositiveInt = 32, dropout: Fraction = 0.0):
        super().__init__(dropout)
        chans = (width, width, 2 * width, 4 * width)
        stages, cin = [], in_channels
        for i, c in enumerate(chans):
            layers = [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.stage_channels = chans
        self.embed_dim = chans[-1]
        self.fc = nn.Linear(chans[-1], num_classes)

    def features(self, x):
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs, torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
