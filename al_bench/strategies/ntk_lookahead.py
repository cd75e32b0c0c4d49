"""NTK look-ahead (Mohamadi, Bae & Sutherland, "Making Look-Ahead Active Learning Strategies Feasible
with Neural Tangent Kernels", NeurIPS 2022, arXiv:2206.12569).

Look-ahead: for each candidate x, retrain on the labeled set plus (x, y_hat) and see how much the
predictions on the pool move; pick the candidates that move them most. The retraining is replaced by
its neural-tangent-kernel linearisation around the trained network: gradient flow on the squared loss
to convergence gives the kernel regression f'(u) = f0(u) + K(u, L') K(L', L')^-1 (Y' - f0(L')),
L' = L + {x}, and adding one point to L is a rank-one block update of the labeled solution.

As in the authors' code (mohamad-amin/ntk-lookahead-active-learning @ 27a2a2d5, src/utils/ntk_util.py
`get_uncertainty_ntk_block_sequential`, batch branch, with predict.py `block_gradient_descent_mse_staged`,
t = None, trace_axes = [-1]): the kernel is traced over the classes (one scalar kernel shared by the C
outputs); the hypothetical label is the network's own prediction argmax f0(x) (a single pseudo-label, no
expectation over labels); the look-ahead predictions are taken on the candidate set itself (the candidate
included); the score is the default `pseudo_contrastive` objective: the number of candidates whose argmax
differs from the network's argmax f0 (the code's `pseudo_label_strategy` default 'torch'; `reference:
ntk` compares with the argmax of the NTK prediction before the addition instead, what the shipped yaml's
misspelt `psuedo_label_strategy: ntk` meant); the network is trained with the squared loss on one-hot
targets (their `criterion: l2`, MSE over logits; `train_loss: ce` keeps al-bench's cross-entropy).

The approximation (ours, named): the empirical NTK restricted to the last linear layer (weights and bias),
K(u, v) = e_u . e_v + 1 with e the penultimate embedding, instead of the full network's eNTK (the authors
compute the full ResNet eNTK in JAX on a 4000-point subset with GPUs). Its feature map phi = [e, 1] is
explicit, so the kernel regression is solved in weight space (D + 1 dims) and K is never formed: with
A = Phi_L^T Phi_L + lam I, the labeled solution is f(u) = f0(u) + phi_u^T A^-1 Phi_L^T (Y_L - f0_L), and
adding (x, y) changes it by phi_u^T A^-1 phi_x / (1 + phi_x^T A^-1 phi_x) (y - f(x)), exactly the
authors' block (Schur-complement) update with lam added to the extended kernel (the code adds its jitter to
K_LL only; the same when lam = 0). A last-layer kernel has rank D + 1, so once
|L| > D + 1 the ridge is needed: lam = `ridge` x mean ||phi_l||^2 (their relative `ntk_diag_reg` form, 1e-5;
the code adds a tiny jitter only when K_LL is not positive definite, which its full eNTK almost always is).
`eval_points` (default 4000, the authors' candidate-subset size `num_subset`, on which their criterion
is taken) counts the flips on a seeded random subset of that many candidates when there are more (0: all
candidates); the pseudo-label, the update and the count are otherwise unchanged. Exact ties between the
reference class and another class after the update count as no flip (the code's argmax takes the first).

Cost: O((|L| + N)(D + 1)^2 + (D + 1)^3) to set up, then O(N M (D + C)) for the N x M look-ahead block
(N candidates, M evaluation points), in blocks of candidates (M x block <= 4M entries): memory
O(N (D + C) + M block), no N x N matrix. Measured at N = 10k candidates, |L| = 1k, D = 512, C = 10, k = 1k
(M = 4000): 1.7 s of CPU time on one thread (the wall time on the shared 2-core machine was 8 s).

References: arXiv:2206.12569
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.schema import NonNegativeFloat, NonNegativeInt
from al_bench.strategies.base import SelectionContext, Strategy, top_k
from al_bench.training.plugin import Step, TrainingPlugin


def features(emb: torch.Tensor) -> torch.Tensor:
    """phi = [e, 1]: the last layer's Jacobian feature map (weights and bias), class-traced."""
    return torch.cat([emb, torch.ones_like(emb[:, :1])], dim=1)


class LastLayerNTK:
    """Kernel regression with the last-layer NTK fitted on the labeled set, in weight space."""

    def __init__(self, phi_lab: torch.Tensor, f0_lab: torch.Tensor, y_lab: torch.Tensor, ridge: float = 1e-5):
        phi_lab = phi_lab.double()
        gram = phi_lab.T @ phi_lab
        scale = float((phi_lab * phi_lab).sum(1).mean()) if len(phi_lab) else 1.0
        self.lam = ridge * scale
        a = gram + self.lam * torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
        self.a_inv = torch.cholesky_inverse(torch.linalg.cholesky(a))
        self.coef = self.a_inv @ (phi_lab.T @ (y_lab.double() - f0_lab.double()))  # (D+1, C)

    def predict(self, phi: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """f(u) = f0(u) + phi_u^T A^-1 Phi_L^T (Y_L - f0_L): the labeled-set NTK regression."""
        return f0.double() + phi.double() @ self.coef

    def lookahead(self, phi_x: torch.Tensor, y_x: torch.Tensor, f_x: torch.Tensor, phi_u: torch.Tensor,
                  f_u: torch.Tensor) -> torch.Tensor:
        """Predictions on u (M, C) after adding (x, y_x) to L, for one x: f_u from `predict`."""
        z = self.a_inv @ phi_x.double()
        gain = (phi_u.double() @ z) / (1.0 + phi_x.double() @ z)
        return f_u + gain[:, None] * (y_x.double() - f_x)[None, :]


def lookahead_scores(phi_lab: torch.Tensor, f0_lab: torch.Tensor, y_lab: torch.Tensor, phi: torch.Tensor,
                     f0: torch.Tensor, eval_pos: np.ndarray | None = None, ridge: float = 1e-5,
                     reference: str = "network", block_elems: int = 1 << 22) -> torch.Tensor:
    """For each candidate (rows of phi/f0): the number of evaluation rows whose argmax moves away from
    the reference after the NTK look-ahead retrain with the candidate's pseudo-label argmax f0."""
    reg = LastLayerNTK(phi_lab, f0_lab, y_lab, ridge)
    f = reg.predict(phi, f0)
    n, c = f.shape
    eval_pos = np.arange(n) if eval_pos is None else eval_pos
    ev = torch.as_tensor(eval_pos, device=phi.device)
    ref = (f0 if reference == "network" else f)[ev].argmax(1)
    delta = nn.functional.one_hot(f0.argmax(1), c).double() - f  # y_hat - f(x)
    z = phi.double() @ reg.a_inv  # (N, D+1)
    q = 1.0 + (z * phi.double()).sum(1)
    phi_e, f_e = phi[ev].float(), f[ev].float()
    f_ct = f_e.T.contiguous()  # (C, M)
    z, delta = z.float(), delta.float()
    f_ref = f_e.gather(1, ref[:, None])  # (M, 1)
    scores = torch.empty(n, dtype=torch.float64, device=phi.device)
    step = max(1, block_elems // max(1, len(ev)))
    for s in range(0, n, step):
        d = delta[s:s + step]
        gain = (phi_e @ z[s:s + step].T) / q[s:s + step].float()  # (M, B): phi_u^T A^-1 phi_x / q_x
        best = torch.addcmul(f_ct[0][:, None], gain, d[None, :, 0])
        for j in range(1, c):  # max over classes of the look-ahead outputs, one class at a time
            best = torch.maximum(best, torch.addcmul(f_ct[j][:, None], gain, d[None, :, j]))
        at_ref = torch.addcmul(f_ref, gain, d.T[ref])  # the reference class's look-ahead output
        scores[s:s + step] = (best > at_ref).sum(0).double()  # argmax moved (exact ties count as kept)
    return scores


class SquaredLossPlugin(TrainingPlugin):
    """Training on the mean squared error between the logits and one-hot targets (the authors'
    `criterion: l2`, torch MSELoss), so the network is what the NTK linearises."""

    def update(self, step: Step) -> torch.Tensor:
        with step.autocast():
            out = step.forward(step.x)
            logits = out.logits.float()
            target = nn.functional.one_hot(step.y, logits.shape[1]).float()
            target_loss = ((logits - target) ** 2).mean(1)
            loss = target_loss.mean()
        step.apply(loss)
        return target_loss.detach()


class NTKLookahead(Strategy):
    """Candidates whose NTK-approximated retraining (with their predicted label) flips most predictions."""

    def __init__(self, ridge: NonNegativeFloat = 1e-5, eval_points: NonNegativeInt = 4000,
                 reference: Literal["network", "ntk"] = "network", train_loss: Literal["l2", "ce"] = "l2"):
        if reference not in ("network", "ntk") or train_loss not in ("l2", "ce"):
            raise ConfigError(f"strategy.reference must be network or ntk and strategy.train_loss l2 or ce; "
                              f"got {reference!r}, {train_loss!r}")
        if float(ridge) < 0 or int(eval_points) < 0:
            raise ConfigError(f"strategy.ridge and strategy.eval_points must be >= 0; got {ridge}, {eval_points}")
        self.ridge, self.eval_points = float(ridge), int(eval_points)
        self.reference, self.train_loss = reference, train_loss

    def train_plugin(self) -> TrainingPlugin | None:
        return SquaredLossPlugin() if self.train_loss == "l2" else None

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        preds = ctx.predict(rows)
        phi, f0 = features(preds["embedding"].double()), preds["logits"].double()
        lab = torch.as_tensor(is_labeled, device=phi.device)
        labels = ctx.pool.train_y[torch.as_tensor(ctx.labeled, device=ctx.pool.train_y.device)].to(phi.device)
        y_lab = nn.functional.one_hot(labels, f0.shape[1]).double()
        n = len(candidates)
        eval_pos = None
        if 0 < self.eval_points < n:
            eval_pos = np.sort(ctx.rng.choice(n, self.eval_points, replace=False))
        scores = lookahead_scores(phi[lab], f0[lab], y_lab, phi[~lab], f0[~lab], eval_pos, self.ridge,
                                  self.reference)
        return candidates[top_k(scores, k, ctx.rng)]
