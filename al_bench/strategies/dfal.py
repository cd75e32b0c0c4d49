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

Cost: per image and iteration one forward and C backward passes (the input gradients of the C
logits), at most max_iter iterations; the images go through in a stream of `batch_size` in flight
(eval mode: images independent): an image leaves when it flips, when it has taken max_iter steps
(after the final check) or when a step leaves its perturbation unchanged (a zero step, or one below
its rounding: every later iteration would repeat it, so the loop's result is already reached), and
the next candidates take its place. On the bench's inputs the images take ~2.7 iterations on average
against max_iter = 50 for a whole batch before, when one image that never flips (6 % of them, with
overshoot 0) kept its batch iterating: 10k candidates in 9.7 s of CPU time on one thread; 2,048
in 2.0 s against 42 s in the same run. On CPU with several torch threads, one stream per thread,
each on one thread, from one shared cursor (torch's own threading inside these small convolutions
cost 14x the CPU time on the loaded 2-core VM): ~4.7 s of CPU per thread at 10k on 2 threads.
Norms equal the image-by-image loop's to ~1e-7 relative (fp32 batches; a batch's composition changes
rounding only through kernels chosen by batch size, e.g. under 16 images); with overshoot 0 an image
ends on the boundary, where rounding decides its flipped flag (used only by `unflipped: last`).
Memory O(batch_size x image) activations and gradients (times C) per stream plus O(N) scores.

References: arXiv:1802.09841, arXiv:1511.04599
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.data.augment import Normalize
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import one_thread_workers


def deepfool_stream(model, n: int, load, to_input=lambda z: z, max_iter: int = 50, overshoot: float = 0.0,
                    eps: float = 0.0, batch_size: int = 256, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturbation L2 norm, flipped?) of images 0..n-1, `load(i, j)` giving images i..j-1 as floats in
    the space where they are perturbed (to_input maps them to the model's input); at most `batch_size`
    images in flight per stream. The model in eval mode: images are independent, so each leaves the batch
    when it is done (flipped, `max_iter` steps taken, or at a fixed point) and the next candidates take its
    place. `workers` > 1 (CPU): that many streams side by side, each on one torch thread, taking the next
    candidates from one shared cursor (common/blocks.py's reasoning: no barrier between threads inside each
    small operation)."""
    norms = torch.zeros(n, dtype=torch.float64)
    flipped = torch.zeros(n, dtype=torch.bool)
    cursor, lock = [0], threading.Lock()

    def take(m: int) -> tuple[int, int]:
        with lock:
            i = cursor[0]
            cursor[0] = min(n, i + m)
            return i, cursor[0]

    def stream() -> None:
        _stream(model, take, load, to_input, max_iter, overshoot, eps, batch_size, norms, flipped)

    workers = max(1, min(int(workers), -(-n // batch_size)))
    if workers == 1:
        stream()
        return norms, flipped

    with one_thread_workers(workers) as pool:
        for fut in [pool.submit(stream) for _ in range(workers)]:
            fut.result()
    return norms, flipped


def _stream(model, take, load, to_input, max_iter: int, overshoot: float, eps: float, batch_size: int,
            norms: torch.Tensor, flipped: torch.Tensor) -> None:
    """One stream of deepfool_stream: candidates from take(m) (the next range of at most m, empty at the
    end), results written into norms and flipped at their positions."""
    device = None
    # the images in flight: candidate index, start point, accumulated r, label (-1: not yet known), steps
    idx = torch.zeros(0, dtype=torch.long)
    x0 = r_tot = label = done = None
    more = True

    def finish(rows: torch.Tensor, flip: torch.Tensor) -> None:
        at = idx[rows].cpu()
        norms[at] = ((1 + overshoot) * r_tot[rows]).flatten(1).norm(dim=1).double().cpu()
        flipped[at] = flip.cpu()

    while True:
        if len(idx) < batch_size and more:  # top up the batch with the next candidates
            i, j = take(batch_size - len(idx))
            more = j > i
            if more:
                add = load(i, j).detach().float()
                device = add.device
                new = torch.arange(i, j)
                if x0 is None:
                    x0, r_tot = add, torch.zeros_like(add)
                    label = torch.full((len(add),), -1, dtype=torch.long, device=device)
                    done = torch.zeros(len(add), dtype=torch.long, device=device)
                    idx = new
                else:
                    x0, r_tot = torch.cat([x0, add]), torch.cat([r_tot, torch.zeros_like(add)])
                    label = torch.cat([label, torch.full((len(add),), -1, dtype=torch.long, device=device)])
                    done = torch.cat([done, torch.zeros(len(add), dtype=torch.long, device=device)])
                    idx = torch.cat([idx, new])
        if len(idx) == 0:
            break
        xi = (x0 + (1 + overshoot) * r_tot).requires_grad_(True)
        logits = model(to_input(xi)).logits.float()
        pred = logits.argmax(1)
        label = torch.where(label < 0, pred, label)  # a new image: its label is the clean prediction
        keep = (pred == label) & (done < max_iter)
        if not bool(keep.all()):  # flipped, or max_iter steps taken (the last check): done
            finish(~keep, pred[~keep] != label[~keep])
            keep_cpu = keep.cpu()
            idx, x0, r_tot, label, done = idx[keep_cpu], x0[keep], r_tot[keep], label[keep], done[keep]
            continue  # the forward again on the images still in flight (and new ones)
        rows = torch.arange(len(idx), device=device)
        # C plain backward passes: on CPU faster than one batched over C (vmap 1.3x, jacrev 1.5x slower)
        grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), xi, retain_graph=j + 1 < logits.shape[1])[0]
                             for j in range(logits.shape[1])], 1)  # (B, C, *x.shape[1:])
        w = (grads - grads[rows, label][:, None]).flatten(2)  # (B, C, P)
        f = (logits - logits[rows, label][:, None]).detach()
        wn = w.norm(dim=2).clamp_min(1e-12)
        ratio = f.abs() / wn
        ratio[rows, label] = float("inf")
        near = ratio.argmin(1)  # first of equal minima, as the authors' strict "<" over classes in order
        step = ((f[rows, near].abs() + eps) / wn[rows, near] ** 2)[:, None] * w[rows, near]
        r_new = r_tot + step.view_as(r_tot)
        done += 1
        # r unchanged (a zero step, or one below r's rounding): every later iteration repeats this one
        moved = (r_new != r_tot).flatten(1).any(1)
        r_tot = r_new.detach()
        if not bool(moved.all()):
            finish(~moved, torch.zeros(int((~moved).sum()), dtype=torch.bool))
            moved_cpu = moved.cpu()
            idx, x0, r_tot, label, done = idx[moved_cpu], x0[moved], r_tot[moved], label[moved], done[moved]


def deepfool_norms(model, x: torch.Tensor, to_input=lambda z: z, max_iter: int = 50, overshoot: float = 0.0,
                   eps: float = 0.0, batch_size: int = 256, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturbation L2 norm, flipped?) per image of x, perturbed where it is given (to_input maps it
    to the model's input); images are independent (the model in eval mode)."""
    return deepfool_stream(model, len(x), lambda i, j: x[i:j], to_input, max_iter, overshoot, eps, batch_size,
                           workers)


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
        idx = torch.as_tensor(candidates, device=ctx.device)
        if self.space == "normalized":
            def load(i, j):
                return normalize(ctx.pool.train_x[idx[i:j]])
            to_input = lambda z: z  # noqa: E731
        else:  # pixels in [0, 1]: the uint8 scale of Normalize folded into x
            def load(i, j):
                return ctx.pool.train_x[idx[i:j]].float() / 255.0
            to_input = lambda z: normalize(z * 255.0)  # noqa: E731
        try:
            # on CPU one stream per torch thread, each on one thread (deepfool_stream)
            workers = torch.get_num_threads() if ctx.device.type == "cpu" else 1
            norms, flipped = deepfool_stream(model, len(candidates), load, to_input, self.max_iter, self.overshoot,
                                             self.eps, self.batch_size, workers)
        finally:
            model.train(was_training)
        return norms.numpy(), flipped.numpy()

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        norms, flipped = self.norms(ctx, candidates)
        keys = (np.arange(len(candidates)), norms) + ((~flipped,) if self.unflipped == "last" else ())
        return candidates[np.lexsort(keys)[:k]]
