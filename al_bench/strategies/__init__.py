"""Query strategies: one module per strategy, named after its CLI word (`strategy=entropy`)."""

from al_bench.strategies.base import ScoreStrategy, SelectionContext, Strategy, TrainHooks

__all__ = ["ScoreStrategy", "SelectionContext", "Strategy", "TrainHooks"]
