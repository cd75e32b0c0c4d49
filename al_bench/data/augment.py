"""Batched augmentation and normalisation on the device (no PIL, no DataLoader).

`random_crop_flip` draws from the same distribution as torchvision's
RandomCrop(size, padding=pad) (zero fill) followed by RandomHorizontalFlip(): each of the
(2 pad + 1)^2 crop offsets and each flip with equal probability, independently per image.
"""

from __future__ import annotations

import torch


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop with `pad` zero pixels on each side and random horizontal flip of a uint8
    batch (N, H, W, C), done as one gather; returns uint8 (N, H, W, C)."""
    n, h, w, _ = x.shape
    dev = x.device
    if pad > 0:
        x = torch.nn.functional.pad(x, (0, 0, pad, pad, pad, pad))  # pads W and H, not C
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip:
        flipped = torch.randint(0, 2, (n, 1), device=dev, generator=generator).bool()
        cols = torch.where(flipped, (w - 1) - cols, cols)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + cols
    batch = torch.arange(n, device=dev)[:, None, None]
    return x[batch, rows[:, :, None], cols[:, None, :]]


class Normalize:
    """uint8 (N, H, W, C) -> float (N, C, H, W) normalised per channel. The result keeps the
    NHWC memory order (channels_last) unless `channels_last` is False."""

    def __init__(self, mean, std, device, channels_last: bool = True, dtype=torch.float32):
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device, dtype=dtype)))
        self.shift = (torch.tensor(mean, device=device, dtype=dtype) / torch.tensor(std, device=device, dtype=dtype))
        self.channels_last = channels_last
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = (x.to(self.dtype) * self.scale - self.shift).permute(0, 3, 1, 2)
        return out if self.channels_last else out.contiguous()
