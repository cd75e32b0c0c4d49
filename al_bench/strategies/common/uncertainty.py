"""Entropy of predictive distributions, the one definition every strategy uses."""

from __future__ import annotations

import torch


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """H(p) = -sum p log p over `dim` (the class axis, last by default), in nats, with 0 log 0 = 0."""
    p = probs.double()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=dim)
