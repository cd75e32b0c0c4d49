"""A small MLP critic on a backbone's embedding, with a sigmoid output in [0, 1] (WAAL's critic,
arXiv:1911.09162; al_bench.strategies.waal).

The layers are built in the order Linear, ReLU, Dropout, ..., Linear, Sigmoid, with PyTorch's default
initialisation, so a critic is reproducible from `torch.manual_seed` alone.
"""

from __future__ import annotations

import torch
from torch import nn


class Critic(nn.Module):
    """in_dim -> hidden[0] -> ... -> 1, ReLU and dropout after each hidden layer, sigmoid at the end."""

    def __init__(self, in_dim: int, hidden=(50,), dropout: float = 0.5):
        super().__init__()
        layers, width = [], int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = int(h)
        layers += [nn.Linear(width, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1)
