"""ResNet-18, CIFAR variant (He et al. 2016, arXiv:1512.03385; as used by Yoo & Kweon 2019).

3x3 stem with stride 1 and no max-pool; four stages of two BasicBlocks with 64/128/256/512
channels (times width/64) at 32/16/8/4 pixels for 32x32 inputs; global average pool; linear.
"""

from __future__ import annotations

import torch
from torch import nn

from al_bench.models.base import Backbone
from al_bench.schema import Fraction, PositiveInt


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    """CIFAR ResNet-18; `width` is the first stage's channel count (paper: 64)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: PositiveInt = 64, dropout: Fraction = 0.0):
        super().__init__(dropout)
        chans = (width, 2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, cout in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(chans[-1], num_classes)
        self.stage_channels = chans
        self.embed_dim = chans[-1]

    def features(self, x):
        out = self.stem(x)
        stages = []
        for layer in self.layers:
            out = layer(out)
            stages.append(out)
        return stages, torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
