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

Cost: scope all: per candidate, the gradient of its own loss with respect to every parameter.
`engine: layers` gets every candidate's gradient norm from one batched forward and backward of
`batch_size` (null: 128) candidates (eval mode: samples independent): the gradient of the batch's summed loss
with respect to a layer's output holds each sample's own output gradient g, and a layer's
per-sample weight gradient sum_t g_t a_t^T (a its input; unfolded for a convolution) has the squared
norm ||.||_F^2, computed as the fp32 per-sample (O, I) products or, where cheaper (small feature
maps), as sum_{t,s} (a_t . a_s)(g_t . g_s) in fp64; bias: ||sum_t g_t||^2; eval-mode BatchNorm:
sum_t g_t x_hat_t and sum_t g_t per channel. Time about one training step per batch, memory
O(batch_size x activations). It knows Linear, Conv2d (groups 1, zero padding) and eval-mode
BatchNorm1d/2d, each parameter read once, by its own layer (checked on the autograd graph); any
other model raises its Unsupported. Scores equal the loop's to ~1e-6 relative in fp32 (the loop
itself is that far from an fp64 evaluation; up to ~1e-5 on VGG16) and to 1e-12 in fp64; a sample
with a pre-activation within rounding of a ReLU's kink can differ more (1 in 10,000 on the bench's
inputs, by 3e-3, as much as the loop differs from fp64 there); picks identical on the bench at 10k.
`engine: vmap` computes per-sample gradients (torch.func) of `batch_size` (null: 32) candidates at
once, memory O(batch_size x parameters);
`loop` one backward per candidate, memory O(parameters). `auto` (default): on CPUs the layers engine
where the model allows it, else the loop (measured on one CPU thread, the bench's 10k candidates:
0.95 s against 13.0 s for the loop in the same run; the loop is 1.3-1.5x faster than vmap there);
on CUDA vmap (the layers engine is not measured on GPUs: `engine: layers` asks for it).
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
ENGINES = ("auto", "layers", "vmap", "loop")


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
    norms = torch.stack([g.reshape(len(g), -1).double().norm(dim=1) for g in grads.values()], 1)  # (B, tensors)
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


# --- per-layer engine: per-sample gradient norms from each layer's input and output gradient -----

class Unsupported(Exception):
    """The model has a parameter the per-layer engine cannot account for."""


def _supported(m: torch.nn.Module) -> bool:
    """Layers whose per-sample parameter gradient follows from their input and output gradient;
    exact types only (a subclass may override forward)."""
    if type(m) is torch.nn.Linear:
        return True
    if type(m) is torch.nn.Conv2d:
        return m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
    if type(m) in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d):  # eval mode with running statistics: affine
        return not m.training and m.running_mean is not None
    return False


def _param_uses(root) -> dict[int, int]:
    """How many operations of the autograd graph below `root` read each leaf tensor (by id)."""
    uses, seen, todo = {}, {root}, [root]
    while todo:
        for nf, _ in todo.pop().next_functions:
            if nf is None:
                continue
            var = getattr(nf, "variable", None)
            if var is not None:
                uses[id(var)] = uses.get(id(var), 0) + 1
            if nf not in seen:
                seen.add(nf)
                todo.append(nf)
    return uses


def _gram_or_outer(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample ||sum_t g_t a_t^T||_F^2 for a (B, I, T), g (B, O, T): the (O, I) products in fp32
    (the arithmetic of a per-sample backward) or, where cheaper, the Gram identity
    sum_{t,s} (a_t . a_s)(g_t . g_s) in fp64 (no cancellation worth speaking of at this precision)."""
    n_in, n_out, t = a.shape[1], g.shape[1], a.shape[2]
    if t == 1:
        return a.double().pow(2).sum((1, 2)) * g.double().pow(2).sum((1, 2))
    if t * t * (n_in + n_out) < t * n_in * n_out:
        a, g = a.double(), g.double()
        return (a.transpose(1, 2) @ a).mul_(g.transpose(1, 2) @ g).sum((1, 2))
    out = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
    step = max(1, (1 << 24) // (n_in * n_out))  # at most 16M gradient entries (64 MB) at a time
    for i in range(0, a.shape[0], step):
        out[i:i + step] = torch.bmm(g[i:i + step], a[i:i + step].transpose(1, 2)).double().pow(2).sum((1, 2))
    return out


def _layer_sq_norms(m: torch.nn.Module, a: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample squared norms of the gradients of m's weight and bias, in that order (None absent),
    from its input a and the gradient g of its output."""
    b = a.shape[0]
    if type(m) is torch.nn.Linear:
        a3, g3 = a.reshape(b, -1, a.shape[-1]).transpose(1, 2), g.reshape(b, -1, g.shape[-1]).transpose(1, 2)
        gb = g3.sum(2)
    elif type(m) is torch.nn.Conv2d:
        a3 = torch.nn.functional.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)
        g3 = g.flatten(2)
        gb = g3.sum(2)
    else:  # BatchNorm in eval mode: y = x_hat gamma + beta per channel
        shape = (1, -1) + (1,) * (a.dim() - 2)
        x_hat = (a - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)
        gw = (g * x_hat).reshape(b, g.shape[1], -1).sum(2)
        gb = g.reshape(b, g.shape[1], -1).sum(2)
        return [gw.double().pow(2).sum(1), gb.double().pow(2).sum(1)]
    return [_gram_or_outer(a3, g3), gb.double().pow(2).sum(1)]


def layer_gradnorm(model: torch.nn.Module, x: torch.Tensor, mode: str = "entropy",
                   reduction: str = "sum") -> torch.Tensor:
    """full_gradnorm from one batched forward and backward: in eval mode samples are independent, so
    the gradient of the batch's summed loss with respect to a layer's output holds each sample's own
    output gradient, and a Linear/Conv2d/BatchNorm layer's per-sample parameter gradient follows from
    it and the layer's input. Raises Unsupported when a trainable parameter is not read exactly once,
    by its own supported layer (another layer type, a shared parameter, a layer called twice, a
    parameter read outside its layer, a layer's output changed in place)."""
    named = {k: v for k, v in model.named_parameters() if v.requires_grad}
    owners = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            if p.requires_grad:
                if not _supported(m) or id(p) in owners:
                    raise Unsupported(f"parameter of {type(m).__name__}" if id(p) not in owners else "shared parameter")
                owners[id(p)] = m
    layers = list(dict.fromkeys(owners.values()))
    calls: dict[torch.nn.Module, list] = {m: [] for m in layers}

    def hook(m, inputs, output):
        calls[m].append((inputs[0].detach(), output, output._version))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        logits = model(x).logits.float()
    finally:
        for h in handles:
            h.remove()
    if any(len(c) > 1 for c in calls.values()):
        raise Unsupported("a layer called more than once")
    logp = torch.log_softmax(logits, 1)
    if mode == "entropy":
        losses = [(-(logp.exp() * logp).sum(), torch.ones(x.shape[0], dtype=torch.float64, device=x.device))]
    else:  # sum_y p_y ||grad CE(x, y)||, p held fixed (computed as _labels does): one backward per label
        p = torch.softmax(logits.detach(), 1).double()
        losses = [(-logp[:, y].sum(), p[:, y]) for y in range(logp.shape[1])]
    uses = _param_uses(losses[0][0].grad_fn)
    for pid, m in owners.items():
        if uses.get(pid, 0) != len(calls[m]):
            raise Unsupported(f"a parameter of {type(m).__name__} read outside its layer")
    called = [m for m in layers if calls[m]]
    if any(calls[m][0][1]._version != calls[m][0][2] for m in called):
        raise Unsupported("a layer's output changed in place")
    score = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for j, (loss, weight) in enumerate(losses):
        outs = torch.autograd.grad(loss, [calls[m][0][1] for m in called], allow_unused=True,
                                   retain_graph=j + 1 < len(losses))
        sq = {}
        for m, g in zip(called, outs):
            a, out = calls[m][0][0], calls[m][0][1]
            parts = _layer_sq_norms(m, a, g if g is not None else torch.zeros_like(out))
            for param, part in zip((m.weight, m.bias), parts):
                if param is not None and param.requires_grad:
                    sq[id(param)] = part
        zero = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)  # a layer never called: no gradient
        norms = torch.stack([sq.get(id(v), zero) for v in named.values()], 1).sqrt()  # (B, tensors)
        score += weight * (norms.sum(1) if reduction == "sum" else norms.pow(2).sum(1).sqrt())
    return score


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
                 batch_size: int | None = None, engine: str = "auto"):
        if mode not in MODES or scope not in SCOPES or reduction not in REDUCTIONS or engine not in ENGINES:
            raise ConfigError(f"strategy.mode must be one of {MODES}, scope one of {SCOPES}, reduction one of "
                              f"{REDUCTIONS}, engine one of {ENGINES}; got {mode!r}, {scope!r}, {reduction!r}, "
                              f"{engine!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ConfigError(f"strategy.batch_size must be >= 1 or null, got {batch_size}")
        self.mode, self.scope, self.reduction = mode, scope, reduction
        self.bias, self.engine = bool(bias), engine
        self.batch_size = None if batch_size is None else int(batch_size)

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
        # auto on CUDA: vmap, which batches there what the loop launches image by image (the layers engine
        # is not measured on GPUs); elsewhere the layers engine where the model allows it (on a 2-core CPU
        # ~8x faster than the loop, itself 1.3-1.5x faster than vmap there), else the loop
        engine = "vmap" if self.engine == "auto" and ctx.device.type == "cuda" else self.engine
        fallback = "loop"
        # null: 32 for vmap (memory ~ batch x parameters); 128 for layers, whose cost is per batch more than
        # per candidate on small models (and per parallel region on a busy CPU: 32 is 1.3x slower on one
        # quiet thread, up to 10x on two loaded ones, at the bench's 10k)
        batch = self.batch_size or (32 if engine in ("vmap", "loop") else 128)
        out = []
        try:
            for start in range(0, len(candidates), batch):
                x = normalize(ctx.pool.train_x[idx[start:start + batch]])
                if engine in ("auto", "layers"):
                    try:
                        out.append(layer_gradnorm(model, x, self.mode, self.reduction).cpu())
                        continue
                    except Unsupported as e:
                        if engine == "layers":
                            raise ConfigError(f"strategy.engine=layers cannot score this model ({e}); "
                                              f"use engine auto, vmap or loop") from None
                        engine = fallback
                out.append(full_gradnorm(model, x, self.mode, self.reduction, engine).cpu())
        finally:
            model.train(was_training)
        return torch.cat(out)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        return candidates[top_k(self.scores(ctx, candidates), k, ctx.rng)]
