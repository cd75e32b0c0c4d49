"""A learnable dataset generated in memory, for tests and smoke runs."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge

from al_bench.data.pool import Pool, make_pool
from al_bench.schema import NonNegativeFloat, NonNegativeInt, PositiveInt


def synthetic(
    n_train: PositiveInt = 512,
    n_test: PositiveInt = 256,
    num_classes: Annotated[int, Ge(2)] = 4,
    image_size: PositiveInt = 8,
    channels: Literal[1, 3] = 3,
    noise: NonNegativeFloat = 40.0,  # std of the pixel noise, in uint8 levels
    seed: NonNegativeInt = 0,
) -> Pool:
    """Images = a fixed random template per class + Gaussian noise, so a small CNN learns it in a
    few epochs while some images stay ambiguous (their noise pulls them towards another class)."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, size=(num_classes, image_size, image_size, channels))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        x = templates[y] + rng.normal(0.0, noise, size=(n, image_size, image_size, channels))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    classes = [f"class{i}" for i in range(num_classes)]
    return make_pool("synthetic", train_x, train_y, test_x, test_y, classes, num_classes)
