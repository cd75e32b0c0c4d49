"""Value constraints shared by the config schemas: a signature says `width: PositiveInt = 64` and
al_bench.config refuses `model.width=0` before anything runs (see docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Lt

PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Lt(1)]  # [0, 1): a dropout probability, a momentum
OpenFraction = Annotated[float, Gt(0), Lt(1)]  # (0, 1): a split's share
