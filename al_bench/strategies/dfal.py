"""DFAL: DeepFool active learning (Ducoffe & Precioso, "Adversarial Active Learning for Deep
Networks: a Margin Based Approach", 2018, arXiv:1802.09841; DeepFool: Moosavi-Dezfooli et al. 2016,
arXiv:1511.04599).

Each candidate's distance to the decision boundary is approximated by the norm of the perturbation
DeepFool accumulates until the predicted class changes; the smallest perturbations come first.
Per iteration and image: the gradients of all C logits with respect to the input, the linearised
nearest boundary l = argmin_k |f_k - f_y| / ||grad f_k - grad f_y||, the step
(|f_l - f_y| + `eps`) / ||w_l||^2 w_l, scaled by (1 + `overshoot`) when accumulated.

Defaults as the DFAL code of ej0cl6/deep-active-learning (query_strategies/adversarial_deepfool.py,
AdversarialDeepFool.cal_dis, commit eea3d2c, "fix bug for deepfool"; DeepAL+ has the same code without
that fix): the model in eval mode; the perturbation lives in the model's input space, i.e. on the
normalised image (`space: normalized`); no overshoot and no step margin (`overshoot: 0`, `eps: 0`);
at most `max_iter` = 50 iterations; every candidate ranked by the norm it reached, flipped or not
(`unflipped: by_norm`). Named options: `space: pixel` (the perturbation on pixels scaled to [0, 1],
the normalisation part of the differentiated model), DeepFool's own `overshoot: 0.02` and
`eps: 1e-4`, and `unflipped: last` (images whose label never flipped rank after all flipped ones).
The paper also adds the adversarial images with the same label to the training set, which the
loop's interface (indices only) leaves out.

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


def deepfool_norms(model, x: torch.Tensor, to_input=lambda z: z, max_iter: int = 50, overshoot: float = 0.0,
                   eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturbation L2 norm, flipped?) per image of the batch x, perturbed where it is given
    (to_input maps it to the model's input); images are independent (the model in eval mode)."""
    x0 = x.detach().float()
    r_tot = torch.zeros_like(x0)
    with torch.no_grad():
        label = model(to_input(x0)).logits.argmax(1)
    active = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    rows = torch.arange(x0.shape[0], device=x0.device)
    for _ in range(max_iter):
        xi = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
        logits = model(to_input(xi)).logits.float()
        active &= logits.argmax(1) == label
        if not active.any():
            break
        grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), xi, retain_graph=j + 1 < logits.shape[1])[0]
                             for j in range(logits.shape[1])], 1)  # (B, C, *x.shape[1:])
        w = (grads - grads[rows, label][:, None]).flatten(2)  # (B, C, P)
        f = (logits - logits[rows, label][:, None]).detach()
        wn = w.norm(dim=2).clamp_min(1e-12)
        ratio = f.abs() / wn
        ratio[rows, label] = float("inf")
        near = ratio.argmin(1)  # first of equal minima, as the authors' strict "<" over classes in order
        step = ((f[rows, near].abs() + eps) / wn[rows, near] ** 2)[:, None] * w[rows, near]
        r_tot = r_tot + torch.where(active[:, None], step, 0.0).view_as(r_tot)
    with torch.no_grad():
        flipped = model(to_input(x0 + (1 + overshoot) * r_tot)).logits.argmax(1) != label
    return ((1 + overshoot) * r_tot).flatten(1).norm(dim=1), flipped


class Dfal(Strategy):
    """The candidates closest to the decision boundary by DeepFool's perturbation norm."""

    def __init__(self, max_iter: int = 50, overshoot: float = 0.0, eps: float = 0.0, space: str = "normalized",
                 unflipped: str = "by_norm", batch_size: int = 256):
        if int(max_iter) < 1 or int(batch_size) < 1 or float(overshoot) < 0 or float(eps) < 0:
            raise ConfigError(f"strategy.max_iter, batch_size must be >= 1 and overshoot, eps >= 0; "
                              f"got {max_iter}, {batch_size}, {overshoot}, {eps}")
        if space not in ("normalized", "pixel") or unflipped not in ("by_norm", "last"):
            raise ConfigError(f"strategy.space must be normalized or pixel and unflipped by_norm or last; "
                              f"got {space!r}, {unflipped!r}")
        self.max_iter, self.overshoot, self.eps = int(max_iter), float(overshoot), float(eps)
        self.space, self.unflipped, self.batch_size = space, unflipped, int(batch_size)

    def norms(self, ctx: SelectionContext, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(perturbation norm, flipped?) per candidate."""
        model = ctx.model
        was_training = model.training
        model.eval()
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device, channels_last=False)
        norms, flipped = [], []
        idx = torch.as_tensor(candidates, device=ctx.device)
        try:
            for start in range(0, len(candidates), self.batch_size):
                x = ctx.pool.train_x[idx[start:start + self.batch_size]]
                if self.space == "normalized":
                    n, f = deepfool_norms(model, normalize(x), max_iter=self.max_iter, overshoot=self.overshoot,
                                          eps=self.eps)
                else:  # pixels in [0, 1]: the uint8 scale of Normalize folded into x
                    n, f = deepfool_norms(model, x.float() / 255.0, lambda z: normalize(z * 255.0), self.max_iter,
                                          self.overshoot, self.eps)
                norms.append(n.detach().double().cpu())
                flipped.append(f.cpu())
        finally:
            model.train(was_training)
        return torch.cat(norms).numpy(), torch.cat(flipped).numpy()

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        norms, flipped = self.norms(ctx, candidates)
        keys = (np.arange(len(candidates)), norms) + ((~flipped,) if self.unflipped == "last" else ())
        return candidates[np.lexsort(keys)[:k]]
