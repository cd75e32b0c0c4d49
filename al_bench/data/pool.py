"""The in-memory form of every dataset: uint8 images (N, H, W, C) and int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class Pool:
    """A train pool and a test set as tensors, plus what normalisation needs.

    Images stay uint8 in (N, H, W, C) so that 50,000 CIFAR images take 150 MB and move to the
    device once; augmentation and normalisation happen per batch on the device.
    """

    name: str
    train_x: torch.Tensor  # uint8 (N, H, W, C)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, pixel values in [0, 1]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[1]), int(self.train_x.shape[2])

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    def to(self, device: torch.device | str) -> Pool:
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


def make_pool(
    name: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    classes: tuple[str, ...] | list[str] = (),
    num_classes: int | None = None,
) -> Pool:
    """Build a Pool from numpy arrays, adding a channel axis to grayscale images and computing
    the per-channel mean and std of the training images (the normalisation the paper uses)."""
    arrays = []
    for x in (train_x, test_x):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"{name}: images must be uint8 (N, H, W[, C]), got {x.dtype} {x.shape}")
        arrays.append(np.ascontiguousarray(x))
    train_x, test_x = arrays
    train_y = np.asarray(train_y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    if num_classes is None:
        num_classes = len(classes) if len(classes) else int(max(train_y.max(), test_y.max())) + 1
    pixels = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64) / 255.0
    mean = tuple(float(v) for v in pixels.mean(0))
    std = tuple(float(max(v, 1e-3)) for v in pixels.std(0))
    return Pool(
        name=name,
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        num_classes=num_classes,
        mean=mean,
        std=std,
        classes=tuple(classes),
    )
