"""Query strategies: one module per strategy, named after its CLI word (`strategy=entropy`)."""

from al_bench.strategies.base import ScoreStrategy, SelectionContext, Strategy

__all__ = ["ScoreStrategy", "SelectionContext", "Strategy"]
