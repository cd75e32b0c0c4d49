"""Gradient-norm acquisition (Wang, Li, Yang, Hu, Zeng, Huang, Xu & Xu, "Boosting Active Learning via
Improving Test Performance", AAAI 2022, arXiv:2112.05683): a candidate's score is the norm of the
gradient of an unsupervised loss on it with respect to the model's parameters; the largest first.

Default, as the authors' code (xulabs/aitom, aitom/ml/active_learning/al_gradnorm/main.py,
get_uncertainty + compute_gradnorm, SCHEME = 1 in config.py): the loss is the entropy of the
prediction, H(p(.|x)); the gradient is taken with respect to every parameter of the backbone, one
candidate at a time, with the model in eval mode (BatchNorm uses its running statistics, no
dropout); the score is the sum over parameter tensors of each tensor's L2 (Frobenius) norm.
The authors' SCHEME = 0 ("expected-gradnorm", sum_y p_y CE(x, y) with p not detached) is the
same function as the entropy, so it has the same gradient and is not a separate option here.

Named options:
- `scope: all` (authors) | `last_layer`: only the final linear layer's weights (and bias with
  `bias: true`), in closed form from the probabilities and the embedding, no backward pass: the
  gradient with respect to the logits is u, and grad_W = u e^T, grad_b = u.
- `mode: entropy` (authors) | `expected`: E_{y ~ p} ||grad CE(x, y)|| with p held fixed, the
  expectation outside the norm (our reading of "expected empirical loss"; with the expectation
  inside the norm and p fixed the gradient is zero, since sum_y p_y (p - onehot(y)) = 0).
- `reduction: sum` (authors: sum of per-tensor norms) | `total` (the L2 norm of the whole
  gradient vector).

Cost: scope all: one forward and backward per candidate (times C for `expected`): `engine: vmap`
computes per-sample gradients (torch.func) of `batch_size` candidates at once, memory O(batch_size x
parameters); `loop` one backward per candidate, memory O(parameters); `auto`: vmap on CUDA, else loop.
scope last_layer: time and memory O(N (C + D)) on top of the prediction pass.

References: arXiv:2112.05683
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from al_bench import ConfigError
from al_bench.data.augment import Normalize
from al_bench.strategies.base import SelectionContext, Strategy, top_k

MODES, SCOPES, REDUCTIONS = ("entropy", "expected"), ("all", "last_layer"), ("sum", "total")
ENGINES = ("auto", "vmap", "loop")


def _combine(weight_norm: torch.Tensor, bias_norm: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if bias_norm is None:
        return weight_norm
    return weight_norm + bias_norm if reduction == "sum" else (weight_norm ** 2 + bias_norm ** 2).sqrt()


def expected_gradnorm(probs: torch.Tensor, emb: torch.Tensor, bias: bool = True,
                      reduction: str = "sum") -> torch.Tensor:
    """E_{y ~ p} ||grad_{W,b} CE(x, y)|| of the last linear layer, p held fixed."""
    p = probs.double()
    # ||p - onehot(y)||^2 = ||p||^2 - 2 p_y + 1
    u_norm = ((p * p).sum(1, keepdim=True) - 2 * p + 1).clamp_min(0).sqrt()  # (N, C), one per label y
    e_norm = emb.double().norm(dim=1, keepdim=True)
    return (p * _combine(u_norm * e_norm, u_norm if bias else None, reduction)).sum(1)


def entropy_gradnorm(probs: torch.Tensor, emb: torch.Tensor, bias: bool = True,
                     reduction: str = "sum") -> torch.Tensor:
    """||grad_{W,b} H(p(.|x))|| of the last linear layer: dH/dz_j = -p_j (log p_j + H)."""
    p = probs.double()
    logp = torch.log(p.clamp_min(1e-30))
    h = -(p * logp).sum(1, keepdim=True)
    u_norm = (p * (logp + h)).norm(dim=1)
    return _combine(u_norm * emb.double().norm(dim=1), u_norm if bias else None, reduction)


def _tensor_norms(grads: dict[str, torch.Tensor], reduction: str) -> torch.Tensor:
    norms = torch.stack([g.flatten(1).double().norm(dim=1) for g in grads.values()], 1)  # (B, tensors)
    return norms.sum(1) if reduction == "sum" else norms.pow(2).sum(1).sqrt()


def _loss(logits: torch.Tensor, mode: str, y: int | None) -> torch.Tensor:
    """Entropy of softmax(logits), or the cross-entropy with label y; logits (C,)."""
    logp = torch.log_softmax(logits.float(), 0)
    return -(logp.exp() * logp).sum() if y is None else -logp[y]


def _labels(model: torch.nn.Module, x: torch.Tensor, mode: str) -> list[tuple[int | None, torch.Tensor]]:
    """(label, weight per sample) pairs: the entropy once, or each label y weighted by p_y (held fixed)."""
    if mode == "entropy":
        return [(None, torch.ones(x.shape[0], dtype=torch.float64, device=x.device))]
    with torch.no_grad():
        probs = torch.softmax(model(x).logits.float(), 1).double()
    return [(y, probs[:, y]) for y in range(probs.shape[1])]


def full_gradnorm(model: torch.nn.Module, x: torch.Tensor, mode: str = "entropy", reduction: str = "sum",
                  engine: str = "vmap") -> torch.Tensor:
    """Per-sample gradient norm over every trainable parameter of `model` for model inputs x (B, ...),
    each sample on its own (a batch of one), in the model's current train/eval mode. `engine`: vmap
    (per-sample gradients with torch.func, faster on GPUs) or loop (one backward per sample)."""
    named = {k: v for k, v in model.named_parameters() if v.requires_grad}
    pairs = _labels(model, x, mode)
    score = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    if engine == "vmap":
        params, buffers = {k: v.detach() for k, v in named.items()}, dict(model.named_buffers())

        def loss(p, xi, y):
            return _loss(functional_call(model, (p, buffers), (xi.unsqueeze(0),)).logits[0], mode, y)

        for y, weight in pairs:
            score += weight * _tensor_norms(vmap(grad(loss), in_dims=(None, 0, None))(params, x, y), reduction)
        return score
    for i in range(x.shape[0]):
        logits = model(x[i:i + 1]).logits[0]
        for j, (y, weight) in enumerate(pairs):
            grads = torch.autograd.grad(_loss(logits, mode, y), list(named.values()), allow_unused=True,
                                        retain_graph=j + 1 < len(pairs))
            # an unused parameter has no gradient (their `param.grad is None`): a zero norm
            grads = {k: (g if g is not None else torch.zeros_like(v))[None] for (k, v), g in zip(named.items(), grads)}
            score[i] += weight[i] * _tensor_norms(grads, reduction)[0]
    return score


class Gradnorm(Strategy):
    """The candidates whose loss gradient is largest."""

    def __init__(self, mode: str = "entropy", scope: str = "all", reduction: str = "sum", bias: bool = True,
                 batch_size: int = 32, engine: str = "auto"):
        if mode not in MODES or scope not in SCOPES or reduction not in REDUCTIONS or engine not in ENGINES:
            raise ConfigError(f"strategy.mode must be one of {MODES}, scope one of {SCOPES}, reduction one of "
                              f"{REDUCTIONS}, engine one of {ENGINES}; got {mode!r}, {scope!r}, {reduction!r}, "
                              f"{engine!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"strategy.batch_size must be >= 1, got {batch_size}")
        self.mode, self.scope, self.reduction = mode, scope, reduction
        self.bias, self.batch_size, self.engine = bool(bias), int(batch_size), engine

    def scores(self, ctx: SelectionContext, candidates: np.ndarray) -> torch.Tensor:
        if self.scope == "last_layer":
            preds = ctx.predict(candidates)
            fn = expected_gradnorm if self.mode == "expected" else entropy_gradnorm
            return fn(preds["probs"], preds["embedding"], self.bias, self.reduction)
        model = ctx.model
        was_training = model.training
        model.eval()
        # fp32, NCHW: the per-sample gradients need no autocast and no channels_last strides
        normalize = Normalize(ctx.pool.mean, ctx.pool.std, ctx.device, channels_last=False)
        idx = torch.as_tensor(candidates, device=ctx.device)
        # per-sample convolution-weight gradients are slow on CPUs (3x a plain backward per image on a
        # 2-core CPU for ResNet-18); on GPUs vmap batches what the loop would launch image by image
        engine = self.engine if self.engine != "auto" else ("vmap" if ctx.device.type == "cuda" else "loop")
        out = []
        try:
            for start in range(0, len(candidates), self.batch_size):
                x = normalize(ctx.pool.train_x[idx[start:start + self.batch_size]])
                out.append(full_gradnorm(model, x, self.mode, self.reduction, engine).cpu())
        finally:
            model.train(was_training)
        return torch.cat(out)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        return candidates[top_k(self.scores(ctx, candidates), k, ctx.rng)]
