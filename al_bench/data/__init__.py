"""Datasets as device-ready uint8 tensors, and augmentation that runs on the device."""

from al_bench.data.pool import Pool

__all__ = ["Pool"]
