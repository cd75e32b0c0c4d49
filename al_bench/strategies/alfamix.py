"""ALFA-Mix: active learning by feature mixing (Parvaneh, Abbasnejad, Teney, Haffari, van den Hengel
& Shi, "Active Learning by Feature Mixing", CVPR 2022, arXiv:2203.07034).

Anchors z*_c are the mean penultimate embeddings of the labeled images of each class. A candidate
z with predicted label y_hat is mixed with each anchor, z~ = (1 - alpha) z + alpha z*, with alpha
(one coefficient per feature) chosen to push the loss of y_hat up; a candidate whose prediction
changes for some anchor joins the candidate set. The bound eps on alpha grows in steps of
`alpha_cap` until more than k candidates flip (or eps reaches 1). The candidate set's L2-normalised
embeddings are clustered with k-means into k clusters and the member nearest each centre is picked.

Choices follow the authors' code (AminParvaneh/alpha_mix_active_learning, AlphaMixSampling.query):
- `alpha_method: learned` (their README's command, `--alpha_opt`): alpha starts at
  clamp(N(eps/2, (eps/2)^2), 1e-8, eps) and takes `learn_iters` steps of a fresh Adam each
  (lr `learn_lr`, a tenth of it from 2/3 of the steps on) on -CE(y_hat) + `l2_coef` ||alpha||, clamped
  to [1e-8, eps]; a candidate counts as flipped if its label changed at any step's forward pass.
- `alpha_method: closed_form` (the paper's efficient form, their `--alpha_closed_form_approx
  --alpha_cap 0.2`): alpha = eps' ||z* - z|| / ||g|| * g / (z* - z + 1e-8) with eps' = eps / sqrt(D) and
  g = grad_z CE(head(z), y_hat), not clipped.
- eps = alpha_cap, 2 alpha_cap, ... while eps < 1; the candidate set is the union over the eps tried.
- A class without a labeled image takes the mean of all labeled embeddings as its anchor.
- k-means: `n_init` k-means++ restarts (their scikit-learn 0.23 KMeans default is 10).
- Fewer than k picks: the rest is drawn uniformly from the other candidates (theirs draws with
  replacement from the whole unlabeled pool; ours without, so that no index repeats).

Cost: time O(T C N (C D) learn_iters) for T eps steps, C anchors + k-means O(n_init iters N_flip k D);
memory O(N D). For a linear head the learned search runs without autograd (LinearAlphaSearch: the same
operations, row blocks kept in cache, reused buffers; bit-identical, tests/test_alfamix_fast.py): per
anchor and eps about one N x D normal draw plus ~0.1 s of arithmetic at N = 10k, D = 512.

References: arXiv:2203.07034
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import single_thread
from al_bench.strategies.common.clustering import kmeans

# (eps, shape) -> the starting alpha of the learned search (any float dtype: rounded to the embeddings')
AlphaInit = Callable[[float, tuple], torch.Tensor]
DEFAULT_CAP = {"learned": 0.03125, "closed_form": 0.2}  # their --alpha_cap default / README closed-form value


def class_anchors(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean labeled embedding per class (C, D); a class with no labeled image gets the mean of all."""
    sums = torch.zeros((num_classes, emb.shape[1]), dtype=emb.dtype, device=emb.device).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=num_classes)
    means = sums / counts.clamp_min(1)[:, None].to(emb.dtype)
    return torch.where((counts > 0)[:, None], means, emb.mean(0, keepdim=True))


def closed_form_alpha(eps: float, anchor: torch.Tensor, emb: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """First-order optimum of alpha for ||alpha|| <= eps (the paper's Eq. 5, as their code evaluates it)."""
    z = anchor[None] - emb
    return (eps * z.norm(dim=1) / grad.norm(dim=1))[:, None] * grad / (z + 1e-8)


def learned_flips(head: nn.Module, emb: torch.Tensor, anchor: torch.Tensor, pred: torch.Tensor, alpha: torch.Tensor,
                  eps: float, iters: int, lr: float, l2_coef: float,
                  final_alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Whether some step of the alpha search changes each candidate's label; `final_alpha`, if given,
    receives the last alpha."""
    flipped = torch.zeros(len(pred), dtype=torch.bool, device=emb.device)
    for i in range(iters):
        leaf = alpha.clone().requires_grad_(True)
        # a fresh Adam per step, as theirs: its first step moves each alpha by about lr along -sign(grad)
        opt = torch.optim.Adam([leaf], lr=lr / (1.0 if i < iters * 2 / 3 else 10.0))
        out = head((1 - leaf) * emb + leaf * anchor[None])
        flipped |= out.argmax(1) != pred
        loss = -F.cross_entropy(out, pred, reduction="none") + l2_coef * leaf.norm(dim=1)
        leaf.grad, = torch.autograd.grad(loss.sum(), leaf)
        opt.step()
        alpha = leaf.detach().clamp_(1e-8, eps)  # in place: this step's leaf is not used again
    if final_alpha is not None:
        final_alpha.copy_(alpha)
    return flipped


class LinearAlphaSearch:
    """learned_flips for a linear head (logits = z W^T + b) without autograd: the operations of
    autograd's backward and of a fresh Adam's first step (torch.optim.Adam's single-tensor path), in the
    same order on the same dtypes, row block by row block (each row's alpha depends on its own row only;
    blocks of BLOCK rows, a multiple of 256 from row 0, give MKL's products the rows' numbers of the whole
    matrix), all `iters` steps of a block while it is in cache, into reused buffers (a fresh N x D tensor
    per operation costs page faults; autograd and Adam make about twenty per step).
    tests/test_alfamix_fast.py: the flips and the final alpha equal learned_flips' bit for bit.

    The gradient of sum(-CE(out, y) + l2 ||alpha||) w.r.t. alpha is accumulated as autograd does: the
    norm's term (l2 alpha / ||alpha||) first, then the anchor's (g z*), then the embedding's (-(g z)),
    with g = (onehot(y) - softmax) W from log_softmax's backward kernel. Adam's first step from zero
    moments: m = lerp(0, g, 1 - beta1) = (1 - beta1) g, v = 0 + (1 - beta2) g g (the same roundings)."""

    BLOCK = 1024

    def __init__(self, head: nn.Linear, emb: torch.Tensor, pred: torch.Tensor):
        self.w = head.weight.detach()
        self.b = None if head.bias is None else head.bias.detach()
        self.emb, self.pred = emb, pred
        self.onehot = torch.zeros((len(pred), self.w.shape[0]), dtype=emb.dtype, device=emb.device)
        self.onehot.scatter_(1, pred[:, None], 1.0)
        rows = min(self.BLOCK, emb.shape[0])
        self.leaf, self.mix, self.tmp, self.grad = (torch.empty((rows, emb.shape[1]), dtype=emb.dtype,
                                                                device=emb.device) for _ in range(4))
        self.out = torch.empty((rows, self.w.shape[0]), dtype=emb.dtype, device=emb.device)

    def flips(self, anchor: torch.Tensor, alpha: torch.Tensor, eps: float, iters: int, lr: float, l2_coef: float,
              final_alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Whether some step changes each row's label; `final_alpha`, if given, receives the last alpha.
        On CPU on one torch thread (as the k-means++ steps): ~20 sub-millisecond operations per block and
        step, which two threads barely speed up and a loaded machine slows down many-fold."""
        with single_thread() if self.emb.device.type == "cpu" else nullcontext():
            return self._flips(anchor, alpha, eps, iters, lr, l2_coef, final_alpha)

    def _flips(self, anchor: torch.Tensor, alpha: torch.Tensor, eps: float, iters: int, lr: float, l2_coef: float,
               final_alpha: torch.Tensor | None) -> torch.Tensor:
        flipped = torch.zeros(len(self.pred), dtype=torch.bool, device=self.emb.device)
        beta1, beta2 = 0.9, 0.999  # torch.optim.Adam's defaults, as learned_flips' Adam
        bias1, bias2 = 1 - beta1 ** 1.0, 1 - beta2 ** 1.0  # its first step's bias corrections
        anchor = anchor[None]
        for s in range(0, len(self.pred), self.BLOCK):
            e = min(len(self.pred), s + self.BLOCK)
            emb, pred, onehot = self.emb[s:e], self.pred[s:e], self.onehot[s:e]
            leaf, mix, tmp, grad, out = (t[:e - s] for t in (self.leaf, self.mix, self.tmp, self.grad, self.out))
            leaf.copy_(alpha[s:e])
            for i in range(iters):
                step_lr = lr / (1.0 if i < iters * 2 / 3 else 10.0)
                # (1 - a) z + a z*: a - 1 is -(1 - a) exactly, so a z* - (a - 1) z has the same roundings
                torch.sub(leaf, 1.0, out=mix).mul_(emb)
                mixed = torch.mul(leaf, anchor, out=tmp).sub_(mix)
                if self.b is None:
                    torch.mm(mixed, self.w.t(), out=out)
                else:
                    torch.addmm(self.b, mixed, self.w.t(), out=out)
                flipped[s:e] |= out.argmax(1) != pred
                g_out = torch.ops.aten._log_softmax_backward_data(onehot, torch.log_softmax(out, 1), 1, out.dtype)
                norm = torch.linalg.vector_norm(leaf, 2, dim=1, keepdim=True)
                torch.div(leaf, norm, out=grad)
                if bool((norm == 0).any()):
                    grad.masked_fill_(norm == 0, 0.0)
                grad.mul_(l2_coef)
                g = torch.mm(g_out, self.w, out=mix)
                grad.add_(torch.mul(g, anchor, out=tmp))
                grad.sub_(torch.mul(g, emb, out=tmp))  # + (-(g z)): adding a negation is subtracting
                m = torch.mul(grad, 1 - beta1, out=g)
                v = torch.mul(grad, 1 - beta2, out=tmp).mul_(grad)
                v.sqrt_().div_(bias2 ** 0.5).add_(1e-8)
                leaf.addcdiv_(m, v, value=-(step_lr / bias1))
                leaf.clamp_(1e-8, eps)
            if final_alpha is not None:
                final_alpha[s:e] = leaf
        return flipped


def candidate_set(head: nn.Module, emb: torch.Tensor, probs: torch.Tensor, anchors: torch.Tensor, k: int,
                  method: str, alpha_cap: float, init: AlphaInit, iters: int = 5, lr: float = 0.1,
                  l2_coef: float = 0.01) -> tuple[torch.Tensor, float]:
    """(whether each candidate flipped for some anchor and some eps tried, the last eps tried)."""
    pred = probs.argmax(1)
    with torch.enable_grad():
        if method == "closed_form":
            leaf = emb.clone().requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(head(leaf), pred, reduction="sum"), leaf)
        flipped = torch.zeros(len(pred), dtype=torch.bool, device=emb.device)
        search = LinearAlphaSearch(head, emb, pred) if method == "learned" and type(head) is nn.Linear else None
        eps = 0.0
        while eps < 1.0:
            eps += alpha_cap  # accumulated as theirs, so the last step may land a hair off 1
            for anchor in anchors:
                if method == "closed_form":
                    alpha = closed_form_alpha(eps / math.sqrt(emb.shape[1]), anchor, emb, grad)
                    with torch.no_grad():
                        flipped |= head((1 - alpha) * emb + alpha * anchor[None]).argmax(1) != pred
                elif search is not None:
                    flipped |= search.flips(anchor, init(eps, tuple(emb.shape)), eps, iters, lr, l2_coef)
                else:
                    flipped |= learned_flips(head, emb, anchor, pred, init(eps, tuple(emb.shape)).to(emb.dtype), eps,
                                             iters, lr, l2_coef)
            if int(flipped.sum()) > k:
                break
    return flipped, eps


def cluster_picks(feats: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor) -> np.ndarray:
    """Per non-empty cluster, in cluster order, the member nearest its own centre."""
    d = (feats - centres[labels]).pow(2).sum(1)
    picks = []
    for c in range(centres.shape[0]):
        members = torch.nonzero(labels == c).flatten()
        if len(members):
            picks.append(int(members[d[members].argmin()]))
    return np.asarray(picks, dtype=np.int64)


class Alfamix(Strategy):
    """k-means representatives of the candidates whose label flips when mixed with labeled anchors."""

    def __init__(self, alpha_method: str = "learned", alpha_cap: float | None = None, learn_iters: int = 5,
                 learn_lr: float = 0.1, l2_coef: float = 0.01, n_init: int = 10, max_iter: int = 300):
        if alpha_method not in DEFAULT_CAP:
            raise ConfigError(f"strategy.alpha_method must be one of {sorted(DEFAULT_CAP)}, got {alpha_method!r}")
        alpha_cap = DEFAULT_CAP[alpha_method] if alpha_cap is None else float(alpha_cap)
        if not 0.0 < alpha_cap <= 1.0:
            raise ConfigError(f"strategy.alpha_cap must be in (0, 1], got {alpha_cap}")
        if int(learn_iters) < 1 or int(n_init) < 1 or int(max_iter) < 1:
            raise ConfigError("strategy.learn_iters, n_init and max_iter must be >= 1")
        self.alpha_method, self.alpha_cap = alpha_method, alpha_cap
        self.learn_iters, self.learn_lr, self.l2_coef = int(learn_iters), float(learn_lr), float(l2_coef)
        self.n_init, self.max_iter = int(n_init), int(max_iter)

    def alpha_init(self, ctx: SelectionContext, eps: float, shape: tuple) -> torch.Tensor:
        """Starting alpha of the learned search: clamp(N(eps/2, (eps/2)^2), 1e-8, eps), as theirs; the
        draws and numbers of rng.normal(eps/2, eps/2, shape) (loc + scale z), into an array reused until
        the next call (a fresh N x D array per anchor costs page faults)."""
        if getattr(self, "_draws", None) is None or self._draws.shape != tuple(shape):
            self._draws = np.empty(shape)
        ctx.rng.standard_normal(out=self._draws)
        self._draws *= eps / 2
        self._draws += eps / 2
        return torch.from_numpy(self._draws).clamp_(1e-8, eps)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        preds = ctx.predict(candidates)
        head = ctx.model.fc
        dtype = head.weight.dtype
        emb, probs = preds["embedding"].to(dtype), preds["probs"]
        lab = ctx.predict(ctx.labeled)["embedding"].to(dtype)
        labels = ctx.pool.train_y[torch.as_tensor(ctx.labeled, device=ctx.pool.train_y.device)].to(emb.device)
        anchors = class_anchors(lab, labels.long(), probs.shape[1])

        def init(eps: float, shape: tuple) -> torch.Tensor:
            return self.alpha_init(ctx, eps, shape).to(device=emb.device)  # the search rounds it to emb's dtype

        flipped, _ = candidate_set(head, emb, probs, anchors, k, self.alpha_method, self.alpha_cap, init,
                                   self.learn_iters, self.learn_lr, self.l2_coef)
        pos = torch.nonzero(flipped).flatten().cpu().numpy()
        if len(pos) > k:
            feats = F.normalize(emb[torch.as_tensor(pos, device=emb.device)].double(), dim=1)
            centres, labels = kmeans(feats, k, ctx.rng, n_init=self.n_init, max_iter=self.max_iter)
            pos = pos[cluster_picks(feats, labels, centres)]
        rest = np.setdiff1d(np.arange(len(candidates)), pos)
        fill = ctx.rng.choice(rest, size=k - len(pos), replace=False)
        return candidates[np.concatenate([pos, fill]).astype(np.int64)]
