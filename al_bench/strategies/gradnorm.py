"""Gradient-norm acquisition (Wang, Sun, Zhang, Wang & Li, "Boosting Active Learning via Improving
Test Performance", AAAI 2022, arXiv:2112.05683): expected-gradnorm scores a candidate by
E_{y ~ p(y|x)} ||grad_theta CE(x, y)||, entropy-gradnorm by ||grad_theta H(p(.|x))||.

Choice: theta is the last linear layer (weights and bias) rather than every parameter, so both
norms are in closed form from the probabilities and the embedding, no backward pass: the gradient
with respect to the logits is u = p - onehot(y) (cross-entropy) or u_j = -p_j (log p_j + H)
(entropy), and for a linear layer ||grad_{W,b}|| = ||u|| sqrt(||e||^2 + 1). `mode: expected|entropy`.

Cost: time O(N (C + D)), memory O(N (C + D)) on top of the prediction pass.

References: arXiv:2112.05683
"""

from __future__ import annotations

import torch

from al_bench import ConfigError
from al_bench.strategies.base import ScoreStrategy


def expected_gradnorm(probs: torch.Tensor, emb: torch.Tensor, bias: bool = True) -> torch.Tensor:
    p = probs.double()
    # ||p - onehot(y)||^2 = ||p||^2 - 2 p_y + 1
    per_label = ((p * p).sum(1, keepdim=True) - 2 * p + 1).clamp_min(0).sqrt()
    return (p * per_label).sum(1) * input_norm(emb, bias)


def entropy_gradnorm(probs: torch.Tensor, emb: torch.Tensor, bias: bool = True) -> torch.Tensor:
    p = probs.double()
    logp = torch.log(p.clamp_min(1e-30))
    h = -(p * logp).sum(1, keepdim=True)
    return (p * (logp + h)).norm(dim=1) * input_norm(emb, bias)


def input_norm(emb: torch.Tensor, bias: bool) -> torch.Tensor:
    return ((emb.double() ** 2).sum(1) + (1.0 if bias else 0.0)).sqrt()


class Gradnorm(ScoreStrategy):
    """The candidates whose last-layer gradient is expected to be largest."""

    def __init__(self, mode: str = "expected", bias: bool = True):
        if mode not in ("expected", "entropy"):
            raise ConfigError(f"strategy.mode must be expected or entropy, got {mode!r}")
        self.mode, self.bias = mode, bool(bias)

    def score(self, preds):
        fn = expected_gradnorm if self.mode == "expected" else entropy_gradnorm
        return fn(preds["probs"], preds["embedding"], self.bias)
