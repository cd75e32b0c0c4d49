"""The active-learning schedule (conf/budget/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge

from al_bench import ConfigError


@dataclass(frozen=True)
class Budget:
    """`initial` random labels, then `step` more per cycle, `cycles` training rounds in all
    (n_labeled = initial, initial + step, ..., initial + (cycles - 1) step), each selection
    ranking a random candidate subset of `subset` unlabeled images (None = all)."""

    initial: Annotated[int, Ge(1)] = 1000  # images
    step: Annotated[int, Ge(1)] = 1000  # K, images added per cycle
    cycles: Annotated[int, Ge(1)] = 10  # training rounds
    subset: Annotated[int, Ge(1)] | None = 10000  # M, candidates per selection; None = the whole pool

    def n_labeled(self, cycle: int) -> int:
        return self.initial + cycle * self.step

    def check(self) -> None:
        if self.subset is not None and self.subset < self.step:
            raise ConfigError(f"budget.subset={self.subset} is smaller than budget.step={self.step}: "
                              f"a cycle could not select enough images")

    def check_pool(self, n_pool: int) -> None:
        final = self.n_labeled(self.cycles - 1)
        if final > n_pool:
            raise ConfigError(f"the budget needs {final} labeled images (initial {self.initial} + "
                              f"{self.cycles - 1} x step {self.step}) but the pool has only {n_pool}")
