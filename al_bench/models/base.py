"""What every al-bench backbone returns and exposes."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # (N, classes)
    stages: list[torch.Tensor]  # the stage outputs (N, C_i, H_i, W_i), shallow to deep
    embedding: torch.Tensor  # (N, D): the penultimate features, input of the classifier


class Backbone(nn.Module):
    """A classifier whose forward returns ModelOutput.

    Subclasses set `stage_channels` (channels of each stage output) and `embed_dim`, build
    `self.fc`, and implement `features(x) -> (stages, embedding)`. The classifier head is
    dropout (`dropout` p, 0 = none) + linear, so MC-dropout samples can be drawn from one
    embedding without running the trunk again (`classify(embedding, mc=True)`).
    """

    stage_channels: tuple[int, ...]
    embed_dim: int

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.dropout = float(dropout)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def classify(self, embedding: torch.Tensor, mc: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The head on `embedding`; dropout is active in training and, with `mc`, in eval mode too
        (MC-dropout samples, masks drawn from `generator` when given)."""
        if self.dropout > 0 and (self.training or mc):
            if generator is None:
                embedding = nn.functional.dropout(embedding, self.dropout, training=True)
            else:
                keep = torch.empty_like(embedding).bernoulli_(1.0 - self.dropout, generator=generator)
                embedding = embedding * keep / (1.0 - self.dropout)
        return self.fc(embedding)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        stages, embedding = self.features(x)
        return ModelOutput(self.classify(embedding), stages, embedding)
