"""Backbones that return their intermediate stage outputs, and the loss-prediction module."""

from al_bench.models.base import Backbone, ModelOutput

__all__ = ["Backbone", "ModelOutput"]
