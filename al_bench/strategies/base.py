"""The strategy interface.

A strategy is a small object with `select(ctx, candidates, k) -> indices`: k distinct indices taken
from `candidates` (pool indices). `ctx` gives what strategies share: batched predictions over any
index set (probabilities, embeddings, MC-dropout samples, extras of the training hooks), the labeled
set, a seeded generator and the device. A strategy that changes training (learning loss...)
returns a TrainingPlugin (al_bench.training.plugin) from `train_plugin()`; the others never touch
training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.data.pool import Pool
from al_bench.training.plugin import TrainingPlugin

Predictor = Callable[..., dict[str, torch.Tensor]]


@dataclass
class SelectionContext:
    """What every strategy may use during one selection."""

    model: nn.Module
    pool: Pool  # on `device`
    labeled: np.ndarray  # pool indices labeled so far
    rng: np.random.Generator  # seeded from (seed, cycle): every random choice of the selection, ties too
    device: torch.device
    predictor: Predictor  # predictor(indices, mc_samples=0) -> dict of tensors on device
    cycle: int = 0
    settings: object | None = None  # the trainer's TrainSettings (precision, channels_last, batch sizes)
    image_predictor: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None  # uint8 (N,H,W,C) -> as predict
    _cache: dict = field(default_factory=dict, repr=False)

    def predict(self, indices: np.ndarray, mc_samples: int = 0) -> dict[str, torch.Tensor]:
        """One batched pass over `indices` giving `probs` (N, C), `embedding` (N, D), `logits`,
        hook extras, and with mc_samples > 0 `mc_probs` (N, S, C); cached per index set."""
        key = (np.asarray(indices).tobytes(), mc_samples)
        if key not in self._cache:
            self._cache[key] = self.predictor(np.asarray(indices), mc_samples=mc_samples)
        return self._cache[key]

    def predict_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same pass as `predict` (the trainer's precision and memory format, eval mode) over
        uint8 images (N, H, W, C) that are not pool rows, e.g. augmented views; not cached."""
        if self.image_predictor is None:
            raise RuntimeError("this selection context has no image predictor")
        return self.image_predictor(images)

    def with_labeled(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, is_labeled): the labeled pool indices followed by the candidates, and a mask of the
        labeled rows; for strategies that look at both sets in one pass."""
        rows = np.concatenate([self.labeled, np.asarray(candidates)])
        return rows, np.arange(len(rows)) < len(self.labeled)


def _checked_select(select):
    @functools.wraps(select)
    def checked(self, ctx, candidates, k):
        n = len(candidates)
        if not 1 <= k <= n:
            raise ConfigError(f"{type(self).__name__} was asked for {k} picks from {n} candidates; "
                              f"need 1 <= k <= candidates (check budget.step and budget.subset)")
        return select(self, ctx, candidates, k)

    return checked


class Strategy:
    """Base class: subclasses implement `select`. Every subclass's `select` refuses k < 1 or more
    picks than candidates (ConfigError) before it runs."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "select" in cls.__dict__:
            cls.select = _checked_select(cls.__dict__["select"])

    def train_plugin(self) -> TrainingPlugin | None:
        """The strategy's changes to training, or None (training as usual)."""
        return None

    @classmethod
    def check_settings(cls, params: dict, settings) -> None:
        """Refuse (ConfigError) strategy options `params` that cannot work with the trainer's
        settings (e.g. a detach epoch past the last epoch); called once when the config is read."""

    def check(self, model: nn.Module) -> None:
        """Refuse (ConfigError) a model this strategy cannot work with, before any training."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError


class ScoreStrategy(Strategy):
    """A strategy that scores each candidate and takes the k highest scores (ties in random order,
    from the selection's seeded generator).
    Subclasses implement `score(preds) -> (N,) tensor`, higher = more informative."""

    mc_samples: int = 0

    def score(self, preds: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        scores = self.score(ctx.predict(candidates, mc_samples=self.mc_samples))
        return candidates[top_k(scores, k, ctx.rng)]


def top_k(scores: torch.Tensor, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions of the k highest scores. Ties are broken in a random order drawn from `rng` (a
    pool ordered class by class would otherwise give the earlier classes every tie), or by position
    when `rng` is None."""
    values = -scores.detach().double().cpu().numpy()
    if rng is None:
        return np.argsort(values, kind="stable")[:k]
    perm = rng.permutation(len(values))
    return perm[np.argsort(values[perm], kind="stable")][:k]
