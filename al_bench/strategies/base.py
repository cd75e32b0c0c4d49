"""The strategy interface.

A strategy is a small object with `select(ctx, candidates, k) -> indices`: k distinct indices taken
from `candidates` (pool indices). `ctx` gives what strategies share: batched predictions over any
index set (probabilities, embeddings, MC-dropout samples, extras of the training hooks), the labeled
set, a seeded generator and the device. A strategy that changes training (learning loss...)
returns TrainHooks from `train_hooks()`; the others never touch training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from al_bench.data.pool import Pool


class TrainHooks:
    """What a strategy adds to training: an auxiliary module, its loss, its outputs at prediction.

    The trainer calls `start_cycle` before each cycle, optimises `module` with its own optimiser
    (`optimizer` settings; None = the backbone's) and adds `loss(...)` to the target loss.
    """

    module: nn.Module | None = None
    optimizer: dict | None = None  # {"name": "sgd"|"adam", "lr": .., ...}; None = as the backbone
    follow_schedule: bool = True  # False: the module's lr never decays

    def start_cycle(self, model: nn.Module, warm_start: bool) -> None:
        pass

    def loss(self, out, target_loss: torch.Tensor, epoch: int) -> torch.Tensor:
        """Auxiliary loss for one batch; `target_loss` is the per-sample target loss."""
        raise NotImplementedError

    def outputs(self, out) -> dict[str, torch.Tensor]:
        """Extra per-sample predictions (e.g. the predicted loss) for the prediction pass."""
        return {}

    def metrics(self, preds: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, float]:
        """Extra per-cycle metrics on the test set, from its prediction pass."""
        return {}

    def describe(self) -> dict:
        return {}


Predictor = Callable[..., dict[str, torch.Tensor]]


@dataclass
class SelectionContext:
    """What every strategy may use during one selection."""

    model: nn.Module
    pool: Pool  # on `device`
    labeled: np.ndarray  # pool indices labeled so far
    rng: np.random.Generator  # seeded from (seed, cycle)
    device: torch.device
    predictor: Predictor  # predictor(indices, mc_samples=0) -> dict of tensors on device
    cycle: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def predict(self, indices: np.ndarray, mc_samples: int = 0) -> dict[str, torch.Tensor]:
        """One batched pass over `indices` giving `probs` (N, C), `embedding` (N, D), `logits`,
        hook extras, and with mc_samples > 0 `mc_probs` (N, S, C); cached per index set."""
        key = (np.asarray(indices).tobytes(), mc_samples)
        if key not in self._cache:
            self._cache[key] = self.predictor(np.asarray(indices), mc_samples=mc_samples)
        return self._cache[key]


class Strategy:
    """Base class: subclasses implement `select`."""

    def train_hooks(self) -> TrainHooks | None:
        return None

    def check(self, model: nn.Module) -> None:
        """Refuse (ConfigError) a model this strategy cannot work with, before any training."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError


class ScoreStrategy(Strategy):
    """A strategy that scores each candidate and takes the k highest scores (ties: earlier first).
    Subclasses implement `score(preds) -> (N,) tensor`, higher = more informative."""

    mc_samples: int = 0

    def score(self, preds: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        scores = self.score(ctx.predict(candidates, mc_samples=self.mc_samples))
        return candidates[top_k(scores, k)]


def top_k(scores: torch.Tensor, k: int) -> np.ndarray:
    """Positions of the k highest scores, ties broken by position (stable, reproducible)."""
    order = np.argsort(-scores.detach().double().cpu().numpy(), kind="stable")
    return order[:k]
