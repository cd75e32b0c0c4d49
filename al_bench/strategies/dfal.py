"""DFAL: DeepFool active learning (Ducoffe & Precioso, "Adversarial Active Learning for Deep
Networks: a Margin Based Approach", 2018, arXiv:1802.09841; DeepFool: Moosavi-Dezfooli et al. 2016,
arXiv:1511.04599).

Each candidate's distance to the decision boundary is approximated by the norm of the smallest
perturbation DeepFool finds that changes the predicted class; the smallest perturbations come first.
Per iteration and image: the gradients of all C logits with respect to the input, the linearised
nearest boundary l = argmin_k |f_k - f_y| / ||grad f_k - grad f_y||, the step
(|f_l - f_y| + 1e-4) / ||w_l||^2 w_l, scaled by (1 + `overshoot`) when accumulated.

Choices: the perturbation lives in pixel space scaled to [0, 1] (normalisation with the pool's
mean and std is part of the differentiated model, as al_bench.data.augment.Normalize does it); no
clipping to the valid range (as DeepFool); `max_iter` iterations, images whose label never flips
rank after all flipped ones (by the norm reached); the paper also adds the adversarial images with
the same label to the training set, which the loop's interface (indices only) leaves out.

Cost: time O(max_iter C) forward + backward passes over the N candidates, in batches of
`batch_size`; memory O(batch_size x image) activations and gradients plus O(N) scores.

References: arXiv:1802.09841, arXiv:1511.04599
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.data.augment import Normalize
from al_bench.strategies.base import SelectionContext, Strategy


def deepfool_norms(model, x: torch.Tensor, normalize, max_iter: int = 50,
                   overshoot: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturbation L2 norm, flipped?) per image for float pixel images x (B, H, W, C) in [0, 1]."""
    x0 = x.detach().float()
    r_tot = torch.zeros_like(x0)
    with torch.no_grad():
        label = model(normalize(x0)).logits.argmax(1)
    active = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    rows = torch.arange(x0.shape[0], device=x0.device)
    for _ in range(max_iter):
        xi = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
        logits = model(normalize(xi)).logits.float()
        active &= logits.argmax(1) == label
        if not active.any():
            break
        grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), xi, retain_graph=j + 1 < logits.shape[1])[0]
                             for j in range(logits.shape[1])], 1)  # (B, C, H, W, Ch)
        w = (grads - grads[rows, label][:, None]).flatten(2)  # (B, C, P)
        f = (logits - logits[rows, label][:, None]).detach()
        wn = w.norm(dim=2).clamp_min(1e-12)
        ratio = f.abs() / wn
        ratio[rows, label] = float("inf")
        l = ratio.argmin(1)
        step = ((f[rows, l].abs() + 1e-4) / wn[rows, l] ** 2)[:, None] * w[rows, l]
        r_tot = r_tot + torch.where(active[:, None], step, 0.0).view_as(r_tot)
    with torch.no_grad():
        flipped = model(normalize(x0 + (1 + overshoot) * r_tot)).logits.argmax(1) != label
    return ((1 + overshoot) * r_tot).flatten(1).norm(dim=1), flipped


class Dfal(Strategy):
    """The candidates closest to the decision boundary by DeepFool's perturbation norm."""

    def __init__(self, max_iter: int = 50, overshoot: float = 0.02, batch_size: int = 256):
        if int(max_iter) < 1 or int(batch_size) < 1 or float(overshoot) < 0:
            raise ConfigError(f"strategy.max_iter, batch_size must be >= 1 and overshoot >= 0; "
                              f"got {max_iter}, {batch_size}, {overshoot}")
        self.max_iter, self.overshoot, self.batch_size = int(max_iter), float(overshoot), int(batch_size)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        model = ctx.model
        was_training = model.training
        model.eval()
        # pixels in [0, 1]: the uint8 scale of Normalize folded into x
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device, channels_last=False)
        scaled = lambda x: normalize(x * 255.0)  # noqa: E731
        norms, flipped = [], []
        idx = torch.as_tensor(candidates, device=ctx.device)
        for start in range(0, len(candidates), self.batch_size):
            x = ctx.pool.train_x[idx[start:start + self.batch_size]].float() / 255.0
            n, f = deepfool_norms(model, x, scaled, self.max_iter, self.overshoot)
            norms.append(n.detach().double().cpu())
            flipped.append(f.cpu())
        model.train(was_training)
        norms, flipped = torch.cat(norms).numpy(), torch.cat(flipped).numpy()
        order = np.lexsort((np.arange(len(candidates)), norms, ~flipped))
        return candidates[order[:k]]
