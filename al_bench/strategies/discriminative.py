"""Discriminative active learning, DAL (Gissin & Shalev-Shwartz, "Discriminative Active Learning",
2019, arXiv:1907.06347).

A small MLP learns to tell labeled from unlabeled points in the task model's penultimate embedding
space; the candidates it finds most confidently unlabeled are the ones the labeled set represents
worst. As in the paper the batch is taken in `sub_batches` rounds: each round retrains the MLP
with the previous rounds' picks moved to the labeled side, then takes k / sub_batches points.

Choices (ours, except the 98 % stopping rule from the paper): an MLP with `hidden` units per layer and `layers`
hidden layers (ReLU), Adam with `lr`, cross-entropy weighted by the inverse class frequency (the
unlabeled side is much larger), trained until `stop_acc` training accuracy (paper: 0.98) or
`max_epochs` full-batch steps; embeddings standardised per dimension; the unlabeled side is the candidate subset.

Cost: per round O(max_epochs (|L| + N) D hidden), so O(sub_batches max_epochs (|L| + N) D hidden)
in all; memory O((|L| + N) (D + hidden)).

References: arXiv:1907.06347
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy


def train_discriminator(x: torch.Tensor, is_unlabeled: torch.Tensor, hidden: int, layers: int, lr: float,
                        max_epochs: int, stop_acc: float, seed: int) -> nn.Module:
    dims = [x.shape[1]] + [hidden] * layers
    mods = []
    with torch.random.fork_rng(devices=[]):  # the MLP's init must not move the run's global RNG
        torch.manual_seed(seed)
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*mods, nn.Linear(dims[-1], 2)).to(x.device)
    y = is_unlabeled.long()
    counts = torch.bincount(y, minlength=2).double().clamp_min(1)
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / (2 * counts)).float())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(max_epochs):
        logits = net(x)
        loss = loss_fn(logits, y)
        if (logits.argmax(1) == y).float().mean() >= stop_acc:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def dal_select(emb: torch.Tensor, is_labeled: np.ndarray, k: int, sub_batches: int, rng: np.random.Generator,
               hidden: int = 256, layers: int = 3, lr: float = 1e-3, max_epochs: int = 500,
               stop_acc: float = 0.98) -> np.ndarray:
    """Positions (among the unlabeled rows of emb) picked in `sub_batches` rounds."""
    x = emb.float()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    labeled = torch.as_tensor(is_labeled, device=x.device).clone()
    picks: list[int] = []
    sizes = [k // sub_batches + (1 if r < k % sub_batches else 0) for r in range(sub_batches)]
    for size in sizes:
        if size == 0:
            continue
        net = train_discriminator(x, ~labeled, hidden, layers, lr, max_epochs, stop_acc, int(rng.integers(2**62)))
        with torch.no_grad():
            p_unlab = torch.softmax(net(x).double(), 1)[:, 1]
        p_unlab[labeled] = -1.0
        order = np.argsort(-p_unlab.cpu().numpy(), kind="stable")[:size]
        picks += order.tolist()
        labeled[torch.as_tensor(order, device=x.device)] = True
    return np.asarray(picks, dtype=np.int64)


class Discriminative(Strategy):
    """The candidates a labeled-vs-unlabeled classifier finds most surely unlabeled, in sub-batches."""

    def __init__(self, sub_batches: int = 10, hidden: int = 256, layers: int = 3, lr: float = 1e-3,
                 max_epochs: int = 500, stop_acc: float = 0.98):
        if int(sub_batches) < 1 or int(hidden) < 1 or int(layers) < 1 or int(max_epochs) < 1:
            raise ConfigError("strategy.sub_batches, hidden, layers and max_epochs must be >= 1")
        self.sub_batches, self.hidden, self.layers = int(sub_batches), int(hidden), int(layers)
        self.lr, self.max_epochs, self.stop_acc = float(lr), int(max_epochs), float(stop_acc)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows = np.concatenate([ctx.labeled, candidates])
        emb = ctx.predict(rows)["embedding"]
        is_labeled = np.arange(len(rows)) < len(ctx.labeled)
        with torch.enable_grad():
            pos = dal_select(emb, is_labeled, k, self.sub_batches, ctx.rng, self.hidden, self.layers, self.lr,
                             self.max_epochs, self.stop_acc)
        return rows[pos]
