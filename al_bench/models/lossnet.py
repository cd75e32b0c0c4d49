"""The loss-prediction module of Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019
(arXiv:1905.03677), figure 2: for each stage output, global average pool -> FC(C_i -> 128) -> ReLU;
the concatenated vectors -> FC -> one predicted loss per image."""

from __future__ import annotations

import torch
from torch import nn


class LossPredictionModule(nn.Module):
    def __init__(self, stage_channels: tuple[int, ...] | list[int], feature_dim: int = 128):
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(c, feature_dim) for c in stage_channels)
        self.out = nn.Linear(feature_dim * len(stage_channels), 1)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        pooled = [torch.relu(fc(s.float().mean(dim=(2, 3)))) for fc, s in zip(self.branches, stages)]
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)
