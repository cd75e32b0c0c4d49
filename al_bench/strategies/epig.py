"""EPIG: expected predictive information gain (Bickford Smith, Kirsch, Farquhar, Gal, Foster &
Rainforth, "Prediction-Oriented Bayesian Active Learning", AISTATS 2023, arXiv:2304.08151).

EPIG(x) = E_{x* ~ p*(x*)} I(y; y* | x, x*): how much labelling x tells about the predictions on
target inputs x*. With S weight samples, p(y, y*) = 1/S sum_s p_s(y|x) p_s(y*|x*) and
I = sum_{y, y*} p(y, y*) log(p(y, y*) / (p(y) p(y*))), averaged over M = `num_targets` targets.

The score equals the authors' (fbickfordsmith/epig, src/uncertainty/epig_logprobs.py
`epig_from_logprobs_using_matmul`, which its MC-dropout trainer calls; the golden test pins it). As there,
the S weight samples are S dropout masks on the head shared by candidates and targets (consistent MC
dropout, as the joint needs); `mc_samples` S (the authors' n_samples_test), `num_targets` M (their
n_target_samples, 100).

Choice (ours): the targets are drawn uniformly (seeded) from the whole unlabeled pool, not only the
candidate subset; the authors' code draws a fresh batch of M from a separate "target" split of the
training set that is never labeled.

Cost: time O(N M S C^2), memory O((N + M) S C) plus a chunk of the (N, M, C, C) joint.

References: arXiv:2304.08151
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy, top_k
from al_bench.strategies.common.mc_dropout import (
    check_mc_samples,
    consistent_mc_probs,
    require_dropout,
    torch_generator,
)


def epig(probs: torch.Tensor, target_probs: torch.Tensor, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """EPIG of each candidate: probs (N, S, C), target_probs (M, S, C)."""
    p, q = probs.double(), target_probs.double()
    n, s, c = p.shape
    m = q.shape[0]
    log_q = torch.log(q.mean(dim=1).clamp_min(1e-300))  # (M, C)
    out = torch.empty(n, dtype=torch.float64, device=p.device)
    step = max(1, chunk_elems // (m * c * c))
    for start in range(0, n, step):
        pc = p[start:start + step]
        joint = torch.einsum("nsc,msd->nmcd", pc, q) / s
        log_p = torch.log(pc.mean(dim=1).clamp_min(1e-300))  # (n, C)
        ratio = torch.log(joint.clamp_min(1e-300)) - log_p[:, None, :, None] - log_q[None, :, None, :]
        out[start:start + step] = (joint * ratio).sum(dim=(2, 3)).mean(dim=1)
    return out


class Epig(Strategy):
    """The candidates most informative about the predictions on pool targets."""

    def __init__(self, mc_samples: int = 20, num_targets: int = 100):  # S, M
        self.mc_samples = check_mc_samples(mc_samples)
        if int(num_targets) < 1:
            raise ConfigError(f"strategy.num_targets must be >= 1, got {num_targets}")
        self.num_targets = int(num_targets)

    def check(self, model) -> None:
        require_dropout(model, "epig")

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        unlabeled = np.setdiff1d(np.arange(ctx.pool.n_train), ctx.labeled)
        targets = np.sort(ctx.rng.choice(unlabeled, size=min(self.num_targets, len(unlabeled)), replace=False))
        probs = consistent_mc_probs(ctx, np.concatenate([candidates, targets]), self.mc_samples, "epig",
                                    torch_generator(ctx))
        return candidates[top_k(epig(probs[:len(candidates)], probs[len(candidates):]), k, ctx.rng)]
