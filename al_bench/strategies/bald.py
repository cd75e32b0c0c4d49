"""BALD: Bayesian active learning by disagreement, with MC-dropout samples (Houlsby et al. 2011,
arXiv:1112.5745; for deep image models: Gal, Islam & Ghahramani, "Deep Bayesian Active Learning
with Image Data", ICML 2017, arXiv:1703.02910).

The MC-dropout helpers every Bayesian strategy shares live here too: `require_dropout` (the model
must have dropout on its head) and `consistent_mc_probs` (S dropout masks shared by all inputs,
which joint quantities such as BatchBALD and EPIG need).

BALD is H(mean_s p_s) - mean_s H(p_s) in nats, highest first, as the public code it is checked against in
tests/golden/test_bald.py: baal (baal-org/baal, heuristics.BALD), DeepAL+ (SineZHAN/deepALplus, BALDDropout,
which sorts E H - H(mean) ascending: the same order) and the paper authors' Keras script
(Riashat/Deep-Bayesian-Active-Learning, Dropout_Bald_Q10_N1000_Paper.py, in bits: the same order).

Cost: one trunk pass over the N candidates, then S head passes: time O(N S C D), memory O(N S C).

References: arXiv:1703.02910, arXiv:1112.5745
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import ScoreStrategy, SelectionContext


def require_dropout(model, strategy: str) -> float:
    """The dropout probability of the model's classifier head; a ConfigError when it is 0."""
    p = float(getattr(model, "dropout", 0.0))
    if p <= 0.0:
        raise ConfigError(f"strategy={strategy} draws MC-dropout samples but the model has no dropout; "
                          f"set model.dropout>0 (e.g. model.dropout=0.5) or use experiment=mc_dropout")
    return p


def check_mc_samples(mc_samples: int) -> int:
    if int(mc_samples) < 1:
        raise ConfigError(f"strategy.mc_samples must be >= 1, got {mc_samples}")
    return int(mc_samples)


def consistent_mc_probs(ctx: SelectionContext, indices: np.ndarray, mc_samples: int, strategy: str,
                        generator: torch.Generator) -> torch.Tensor:
    """(N, S, C) class probabilities under S dropout masks on the head's input, the same S masks for
    every input (one mask = one sample of the weights, as joint predictive distributions need)."""
    p = require_dropout(ctx.model, strategy)
    emb = ctx.predict(indices)["embedding"].float()
    keep = torch.rand((mc_samples, emb.shape[1]), device=emb.device, generator=generator) >= p
    masks = keep.float() / (1.0 - p)
    with torch.no_grad():
        logits = torch.stack([ctx.model.fc(emb * m) for m in masks], dim=1).float()
    return torch.softmax(logits, dim=2)


def torch_generator(ctx: SelectionContext) -> torch.Generator:
    """A torch generator on the context's device, seeded from the context's numpy generator."""
    return torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))


def entropy_last(p: torch.Tensor) -> torch.Tensor:
    """Entropy over the last axis, 0 log 0 = 0."""
    p = p.double()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1)


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """I(y; w | x) = H(mean_s p_s) - mean_s H(p_s) for mc_probs (N, S, C)."""
    return entropy_last(mc_probs.double().mean(dim=1)) - entropy_last(mc_probs).mean(dim=1)


class MCDropoutScore(ScoreStrategy):
    """A score over `mc_probs` (N, S, C), drawn in one batched pass of S dropout masks."""

    word = ""  # the CLI word, for error messages

    def __init__(self, mc_samples: int = 20):  # S
        self.mc_samples = check_mc_samples(mc_samples)

    def check(self, model) -> None:
        require_dropout(model, self.word)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        require_dropout(ctx.model, self.word)
        return super().select(ctx, candidates, k)


class Bald(MCDropoutScore):
    """The candidates on which the dropout samples disagree most (mutual information)."""

    word = "bald"

    def score(self, preds):
        return bald(preds["mc_probs"])
