"""scikit-learn's bundled 8x8 handwritten digits: the embedded dataset that needs no download."""

from __future__ import annotations

import numpy as np

from al_bench.data.pool import Pool, make_pool
from al_bench.schema import NonNegativeInt, OpenFraction


def digits(test_fraction: OpenFraction = 0.25, split_seed: NonNegativeInt = 0) -> Pool:
    """1,797 images of 8x8 pixels (16 grey levels), 10 classes; a fixed stratified split
    (1,347 train / 450 test with the defaults) that does not depend on the run's seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        images, bunch.target, test_size=test_fraction, random_state=split_seed, stratify=bunch.target
    )
    return make_pool("digits", train_x, train_y, test_x, test_y, [str(i) for i in range(10)], 10)
