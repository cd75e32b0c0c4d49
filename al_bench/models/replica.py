"""Second networks beside the loop's model, for training plugins that keep several backbones (an
ensemble's members, a reference model for output discrepancies): a fresh network of the same
architecture, and the logits of such a network computed the way the prediction pass computes the
model's own (al_bench.training.predict), so two networks' outputs are compared at equal precision."""

from __future__ import annotations

import copy

import torch
from torch import nn

from al_bench.training.device import autocast


def fresh_replica(model: nn.Module) -> nn.Module:
    """A network of `model`'s architecture with newly drawn weights (each submodule's
    `reset_parameters`, batch-norm statistics reset), drawn from torch's global generator; the
    backbones here use PyTorch's default initialisation, so this equals building a new one."""
    net = copy.deepcopy(model)
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return net


def logits_like_predict(net: nn.Module, x: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """fp32 logits of `net` on the normalised batch x: the trunk under autocast `amp` (None: fp32)
    and the classifier head in fp32 on the upcast embedding, as predict() does for the model."""
    with autocast(x.device, amp):
        out = net(x)
    with torch.autocast(x.device.type, enabled=False):
        return net.classify(out.embedding.float()).float() if amp is not None else out.logits.float()
