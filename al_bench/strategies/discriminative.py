"""Discriminative active learning, DAL (Gissin & Shalev-Shwartz, "Discriminative Active Learning",
2019, arXiv:1907.06347).

A small MLP learns to tell labeled from unlabeled points in the task model's penultimate embedding
space; the unlabeled points it finds most surely unlabeled are the ones the labeled set represents
worst. The batch is taken in rounds of int(k / `sub_batches`) points, the MLP retrained from scratch
each round with the previous rounds' picks moved to the labeled side.

Choices follow the authors' code (dsgissin/DiscriminativeActiveLearning, DiscriminativeRepresentationSampling
with models.train_discriminative_model, the "learned representation" variant their docstring calls best):
- the unlabeled side of each round is a fresh uniform subsample of min(`unlabeled_ratio` |L|, |U|) of the
  remaining candidates, |L| counting earlier picks; the raw embeddings are the input (no scaling);
- MLP: 3 hidden ReLU layers of 256 units (20 when D < 29, their `sum(input_shape) < 30`), softmax
  output, Glorot-uniform weights and zero biases (Keras defaults);
- Adam (beta 0.9, 0.999, eps 1e-7) with learning rate, epochs and batch size by D, as theirs:
  D = 28: 3e-4, 200, 1024; D = 32: 3e-4, 500, 1024; D = 128: 1e-4, 1000, 128; D = 512: 2e-4, 500, 1024;
  otherwise 1e-3, 1000, 32 (`lr`, `epochs`, `batch_size` override);
- cross-entropy averaged over the mini-batch, unweighted: their class_weight {0: N / N_L, 1: N / N_U}
  counts zeros and ones of the one-hot targets, so both weights are 1 (`class_weight: inverse`, the
  weighting as written, is a named option); shuffled mini-batches; training stops after the first
  epoch whose running training accuracy exceeds `stop_acc` (their DiscriminativeEarlyStopping, 0.98);
- the round's picks are the subsample's `size` highest P(unlabeled).
Ours: k < sub_batches takes rounds of one point (theirs would loop forever on int(k / 20) = 0).

Cost: per round O(epochs (|L| + r |L|) D h) for the subsample ratio r, about k / int(k / sub_batches)
rounds; memory O(r |L| (D + h)).

References: arXiv:1907.06347
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy

# embedding width D -> (Adam learning rate, epochs, batch size), their train_discriminative_model
SCHEDULE = {28: (3e-4, 200, 1024), 128: (1e-4, 1000, 128), 512: (2e-4, 500, 1024), 32: (3e-4, 500, 1024)}
DEFAULT_SCHEDULE = (1e-3, 1000, 32)


def default_width(dim: int) -> int:
    """Their width rule: sum(input_shape) < 30 for an input of shape (D, 1)."""
    return 20 if dim + 1 < 30 else 256


def discriminator(dim: int, hidden: int, layers: int, gen: torch.Generator) -> nn.Sequential:
    """ReLU MLP with a 2-way head, Keras-initialised (Glorot-uniform weights, zero biases)."""
    dims = [dim] + [hidden] * layers + [2]
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b)
        nn.init.xavier_uniform_(lin.weight, generator=gen)
        nn.init.zeros_(lin.bias)
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def round_sizes(k: int, sub_batches: int) -> list[int]:
    """Their loop: rounds of int(k / sub_batches) points, the last one cut to what is left."""
    step, sizes = max(1, int(k / sub_batches)), []
    while sum(sizes) < k:
        sizes.append(min(step, k - sum(sizes)))
    return sizes


def train_discriminator(x_lab: torch.Tensor, x_unl: torch.Tensor, hidden: int, layers: int, lr: float, epochs: int,
                        batch_size: int, stop_acc: float, gen: torch.Generator, inverse_weights: bool = False
                        ) -> nn.Module:
    x = torch.cat([x_lab, x_unl])
    y = torch.cat([torch.zeros(len(x_lab)), torch.ones(len(x_unl))]).long().to(x.device)
    weight = (len(x) / torch.tensor([len(x_lab), len(x_unl)], dtype=torch.float64)).float().to(x.device)
    if not inverse_weights:
        weight = torch.ones_like(weight)
    net = discriminator(x.shape[1], hidden, layers, gen).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    for _ in range(epochs):
        correct = 0
        for batch in torch.randperm(len(x), generator=gen).to(x.device).split(batch_size):
            logits = net(x[batch])
            loss = (weight[y[batch]] * loss_fn(logits, y[batch])).mean()
            correct += int((logits.argmax(1) == y[batch]).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
        if correct / len(x) > stop_acc:
            break
    return net.eval()


def dal_select(emb: torch.Tensor, is_labeled: np.ndarray, k: int, rng: np.random.Generator, sub_batches: int = 20,
               unlabeled_ratio: float = 10.0, hidden: int | None = None, layers: int = 3, lr: float | None = None,
               epochs: int | None = None, batch_size: int | None = None, stop_acc: float = 0.98,
               inverse_weights: bool = False, train=train_discriminator) -> np.ndarray:
    """Positions (rows of emb not labeled) picked in rounds, in pick order."""
    x = emb.float()
    sched = SCHEDULE.get(x.shape[1], DEFAULT_SCHEDULE)
    lr, epochs, batch_size = (sched[0] if lr is None else lr), (sched[1] if epochs is None else epochs), \
        (sched[2] if batch_size is None else batch_size)
    hidden = default_width(x.shape[1]) if hidden is None else hidden
    labeled = np.asarray(is_labeled, dtype=bool).copy()
    picks: list[int] = []
    for size in round_sizes(k, sub_batches):
        rest = np.flatnonzero(~labeled)
        sub = rng.choice(rest, size=min(int(unlabeled_ratio * labeled.sum()), len(rest)), replace=False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        lab_t = torch.as_tensor(np.flatnonzero(labeled), device=x.device)
        sub_t = torch.as_tensor(sub, device=x.device)
        with torch.enable_grad():
            net = train(x[lab_t], x[sub_t], hidden, layers, lr, epochs, batch_size, stop_acc, gen, inverse_weights)
        with torch.no_grad():
            p_unlab = torch.softmax(net(x[sub_t]).double(), 1)[:, 1].cpu().numpy()
        chosen = sub[np.argsort(-p_unlab, kind="stable")[:size]]
        picks += chosen.tolist()
        labeled[chosen] = True
    return np.asarray(picks, dtype=np.int64)


class Discriminative(Strategy):
    """The candidates a labeled-vs-unlabeled classifier finds most surely unlabeled, in sub-batches."""

    def __init__(self, sub_batches: int = 20, unlabeled_ratio: float = 10.0, hidden: int | None = None,
                 layers: int = 3, lr: float | None = None, epochs: int | None = None, batch_size: int | None = None,
                 stop_acc: float = 0.98, class_weight: str = "none"):
        for name, value in (("sub_batches", sub_batches), ("layers", layers), ("hidden", hidden or 1),
                            ("epochs", epochs or 1), ("batch_size", batch_size or 1)):
            if int(value) < 1:
                raise ConfigError(f"strategy.{name} must be >= 1, got {value}")
        if class_weight not in ("none", "inverse"):
            raise ConfigError(f"strategy.class_weight must be 'none' or 'inverse', got {class_weight!r}")
        if float(unlabeled_ratio) <= 0:
            raise ConfigError(f"strategy.unlabeled_ratio must be > 0, got {unlabeled_ratio}")
        self.sub_batches, self.unlabeled_ratio, self.layers = int(sub_batches), float(unlabeled_ratio), int(layers)
        self.hidden = None if hidden is None else int(hidden)
        self.lr = None if lr is None else float(lr)
        self.epochs = None if epochs is None else int(epochs)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.stop_acc, self.inverse_weights = float(stop_acc), class_weight == "inverse"

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        emb = ctx.predict(rows)["embedding"]
        pos = dal_select(emb, is_labeled, k, ctx.rng, self.sub_batches, self.unlabeled_ratio, self.hidden,
                         self.layers, self.lr, self.epochs, self.batch_size, self.stop_acc, self.inverse_weights)
        return rows[pos]
