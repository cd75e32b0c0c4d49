"""Random sampling: the baseline every AL paper compares with."""

from __future__ import annotations

import numpy as np

from al_bench.strategies.base import SelectionContext, Strategy


class Random(Strategy):
    """k candidates uniformly without replacement, from the run's seeded generator."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        return ctx.rng.choice(candidates, size=k, replace=False)
