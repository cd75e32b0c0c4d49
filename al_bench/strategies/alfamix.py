"""ALFA-Mix: active learning by feature mixing (Parvaneh, Abbasnejad, Teney, Haffari, van den Hengel
& Shi, "Active Learning by Feature Mixing", CVPR 2022, arXiv:2203.07034).

Anchors z*_y are the mean penultimate embeddings of the labeled images of each class. A candidate
z with predicted label y_hat is mixed with each anchor, z~ = (1 - alpha) z + alpha z*, alpha in
[0, eps]^D chosen to push the loss of y_hat up; candidates whose prediction changes for some anchor
are inconsistent near the labeled data. These are clustered with k-means into k clusters and the
candidate nearest each centre is picked.

Choices: alpha by the paper's closed-form first-order approximation,
alpha = eps ||z* - z|| / ||g|| * g / (z* - z), g = grad_z CE(head(z), y_hat) = W^T (p - onehot(y_hat))
in closed form for the linear head, clipped elementwise to [0, eps] (`alpha_cap` eps); when fewer
than k candidates flip, all are taken and the rest is drawn uniformly from the others.

Cost: time O(N C^2 D) for the mixes (C anchors, each a head pass) + k-means O(iters N_flip k D);
memory O(N (C + D)).

References: arXiv:2203.07034
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.kmeans import kmeans, nearest_distinct


def class_anchors(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean embedding per class (C, D), whether the class has a labeled image (C,))."""
    sums = torch.zeros((num_classes, emb.shape[1]), dtype=emb.dtype, device=emb.device).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=num_classes)
    return sums / counts.clamp_min(1)[:, None].to(emb.dtype), counts > 0


def flips(emb: torch.Tensor, probs: torch.Tensor, fc: torch.nn.Linear, anchors: torch.Tensor,
          present: torch.Tensor, alpha_cap: float) -> torch.Tensor:
    """Whether mixing with some anchor changes each candidate's predicted label."""
    weight = fc.weight.detach().to(emb.dtype)
    pred = probs.argmax(1)
    u = probs.to(emb.dtype).clone()
    u[torch.arange(len(pred)), pred] -= 1.0
    grad = u @ weight  # (N, D): d CE(head(z), y_hat) / dz
    gnorm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.zeros(len(pred), dtype=torch.bool, device=emb.device)
    with torch.no_grad():
        for anchor in anchors[present]:
            diff = anchor[None] - emb
            safe = torch.where(diff.abs() > 1e-12, diff, torch.full_like(diff, 1e-12))
            alpha = (alpha_cap * diff.norm(dim=1, keepdim=True) / gnorm * grad / safe).clamp(0.0, alpha_cap)
            mixed = emb + alpha * diff
            out |= fc(mixed.to(fc.weight.dtype)).argmax(1) != pred
    return out


class Alfamix(Strategy):
    """k-means representatives of the candidates whose label flips when mixed with labeled anchors."""

    def __init__(self, alpha_cap: float = 0.2, max_iter: int = 100):
        if not 0.0 < float(alpha_cap) <= 1.0:
            raise ConfigError(f"strategy.alpha_cap must be in (0, 1], got {alpha_cap}")
        self.alpha_cap, self.max_iter = float(alpha_cap), int(max_iter)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        preds = ctx.predict(candidates)
        emb, probs = preds["embedding"].float(), preds["probs"]
        lab = ctx.predict(ctx.labeled)["embedding"].float()
        labels = ctx.pool.train_y[torch.as_tensor(ctx.labeled, device=ctx.pool.train_y.device)].to(emb.device)
        anchors, present = class_anchors(lab, labels, probs.shape[1])
        flipped = flips(emb, probs, ctx.model.fc, anchors, present, self.alpha_cap).cpu().numpy()
        pos = np.flatnonzero(flipped)
        if len(pos) > k:
            centres, _ = kmeans(emb[pos].double(), k, ctx.rng, max_iter=self.max_iter)
            return candidates[pos[nearest_distinct(emb[pos].double(), centres)]]
        rest = ctx.rng.choice(np.flatnonzero(~flipped), size=k - len(pos), replace=False)
        return candidates[np.concatenate([pos, rest]).astype(np.int64)]
