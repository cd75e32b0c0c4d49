"""NTK look-ahead (arXiv:2206.12569) against retraining, and against the authors' block update.

Reference: mohamad-amin/ntk-lookahead-active-learning@27a2a2d5caa4abb027cd7596748bab7d63c790f5. Its code is
JAX (jax.ops.index_update, an old neural_tangents, dppy, GPUs) and was not run: the block update of
src/utils/predict.py `block_gradient_descent_mse_staged` (the 2-D kernel branch used with trace_axes
[-1]) and `prepare_gradient_descent_mse_staged` (t = None: the converged regression) are re-derived here
from reading, in numpy, in kernel space: v = K_LL^-1 k_Lx, s = k_xx - k_xL v,
f'(u) = f(u) + (K_uL v - k_ux) (v^T (Y_L - f0_L) - (y - f0(x))) / s, f(u) = f0(u) + K_uL K_LL^-1 (Y_L - f0_L);
the pseudo-label is argmax f0(x) and the `pseudo_contrastive` score the number of evaluation points whose
argmax differs from argmax f0 (ntk_util.py `select_batch_according_to_objective`, highest count picked).
al-bench solves the same regression in weight space with the last-layer NTK, so the test inputs are
kernels of explicit features K = Phi Phi^T.

Hand-made: for a linear model f = W phi the look-ahead prediction after adding (x, y) equals actually
retraining it: the closed-form ridge retrain from W0 (any |L|), and gradient descent on the squared loss
from W0 to convergence (|L| + 1 < dim phi, the NTK regime of a linear model: exact).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.strategies.ntk_lookahead import LastLayerNTK, SquaredLossPlugin, lookahead_scores
from al_bench.training.plugin import Step


def linear_setup(n_lab: int, dim: int, c: int = 3, n_u: int = 15, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    phi_l = torch.randn(n_lab, dim, generator=g, dtype=torch.float64)
    phi_u = torch.randn(n_u, dim, generator=g, dtype=torch.float64)
    w0 = torch.randn(c, dim, generator=g, dtype=torch.float64)  # the trained layer: f0 = W0 phi
    y_l = nn.functional.one_hot(torch.randint(0, c, (n_lab,), generator=g), c).double()
    return phi_l, phi_u, w0, y_l


def ridge_retrain(phi, y, w0, lam):
    """argmin_W ||Y - Phi W^T||^2 + lam ||W - W0||^2, in closed form."""
    a = phi.T @ phi + lam * torch.eye(phi.shape[1], dtype=torch.float64)
    return w0 + torch.linalg.solve(a, phi.T @ (y - phi @ w0.T)).T


@pytest.mark.parametrize("n_lab", [20, 4])
def test_lookahead_equals_ridge_retraining_of_a_linear_model(n_lab):
    phi_l, phi_u, w0, y_l = linear_setup(n_lab, dim=7)
    reg = LastLayerNTK(phi_l, phi_l @ w0.T, y_l, ridge=1e-2)
    f_u = reg.predict(phi_u, phi_u @ w0.T)
    assert torch.allclose(f_u, phi_u @ ridge_retrain(phi_l, y_l, w0, reg.lam).T, atol=1e-9)
    for x in range(3):
        y = nn.functional.one_hot(torch.tensor(x % 3), 3).double()
        got = reg.lookahead(phi_u[x], y, f_u[x], phi_u, f_u)
        w = ridge_retrain(torch.cat([phi_l, phi_u[x:x + 1]]), torch.cat([y_l, y[None]]), w0, reg.lam)
        assert torch.allclose(got, phi_u @ w.T, atol=1e-9)


def test_lookahead_equals_gradient_descent_to_convergence():
    phi_l, phi_u, w0, y_l = linear_setup(4, dim=9)
    reg = LastLayerNTK(phi_l, phi_l @ w0.T, y_l, ridge=1e-8)  # ridge -> 0: the min-norm limit
    f_u = reg.predict(phi_u, phi_u @ w0.T)
    x, y = 2, nn.functional.one_hot(torch.tensor(1), 3).double()
    got = reg.lookahead(phi_u[x], y, f_u[x], phi_u, f_u)
    phi, target = torch.cat([phi_l, phi_u[x:x + 1]]), torch.cat([y_l, y[None]])
    w = w0.clone()
    lr = 1.0 / float(torch.linalg.matrix_norm(phi, 2) ** 2)
    for _ in range(20000):
        w -= lr * (phi @ w.T - target).T @ phi  # gradient of 1/2 ||Phi W^T - Y||^2
    assert torch.allclose(got, phi_u @ w.T, atol=1e-5)  # the primal solve at ridge 1e-8 is good to ~1e-6
    assert not torch.allclose(got, f_u, atol=1e-2)  # the look-ahead moved the predictions


def authors_block_update(k, lab, x, y, f0, y_lab):
    """The block update of predict.block_gradient_descent_mse_staged (2-D kernels), from reading."""
    k_ll, k_ul, k_lx = k[np.ix_(lab, lab)], k[:, lab], k[lab, x]
    rhs = y_lab - f0[lab]
    orig = f0 + k_ul @ np.linalg.solve(k_ll, rhs)
    v = np.linalg.solve(k_ll, k_lx)
    s = k[x, x] - k_lx @ v
    change = np.outer(k_ul @ v - k[:, x], (v @ rhs - (y - f0[x])) / s)
    return orig, orig + change


def test_matches_the_authors_block_update_in_kernel_space():
    g = torch.Generator().manual_seed(4)
    n, lab_n, dim, c = 14, 5, 10, 4
    emb = torch.randn(n, dim - 1, generator=g, dtype=torch.float64)
    phi = torch.cat([emb, torch.ones(n, 1, dtype=torch.float64)], 1)
    f0 = 2 * torch.randn(n, c, generator=g, dtype=torch.float64)
    lab = np.arange(lab_n)
    y_lab = nn.functional.one_hot(torch.randint(0, c, (lab_n,), generator=g), c).double()
    k = (phi @ phi.T).numpy()
    reg = LastLayerNTK(phi[lab], f0[lab], y_lab, ridge=1e-9)
    f = reg.predict(phi, f0)
    for x in range(lab_n, n):
        y = nn.functional.one_hot(f0[x].argmax(), c).double()  # the code's pseudo-label
        orig, new = authors_block_update(k, lab, x, y.numpy(), f0.numpy(), y_lab.numpy())
        assert np.allclose(f.numpy(), orig, atol=1e-6)
        assert np.allclose(reg.lookahead(phi[x], y, f[x], phi, f).numpy(), new, atol=1e-5)


@pytest.mark.parametrize("reference", ["network", "ntk"])
def test_scores_count_the_flipped_predictions(reference):
    g = torch.Generator().manual_seed(2)
    n_lab, n, dim, c = 6, 30, 5, 4
    phi = torch.cat([torch.randn(n_lab + n, dim - 1, generator=g, dtype=torch.float64),
                     torch.ones(n_lab + n, 1, dtype=torch.float64)], 1)
    f0 = torch.randn(n_lab + n, c, generator=g, dtype=torch.float64)
    y_lab = nn.functional.one_hot(torch.randint(0, c, (n_lab,), generator=g), c).double()
    eval_pos = np.array([0, 3, 4, 9, 15, 16, 22, 29])
    scores = lookahead_scores(phi[:n_lab], f0[:n_lab], y_lab, phi[n_lab:], f0[n_lab:], eval_pos,
                              ridge=1e-3, reference=reference, block_elems=40)
    reg = LastLayerNTK(phi[:n_lab], f0[:n_lab], y_lab, ridge=1e-3)
    f = reg.predict(phi[n_lab:], f0[n_lab:])
    ref = (f0[n_lab:] if reference == "network" else f)[eval_pos].argmax(1)
    want = []
    for x in range(n):
        y = nn.functional.one_hot(f0[n_lab + x].argmax(), c).double()
        new = reg.lookahead(phi[n_lab + x], y, f[x], phi[n_lab:][eval_pos], f[eval_pos])
        want.append(int((new.argmax(1) != ref).sum()))
    assert scores.tolist() == want
    assert len(set(want)) > 2  # the counts differ between candidates


def test_squared_loss_plugin_trains_on_mse_to_one_hot():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])

    class Scaler:  # a disabled GradScaler: scale is the identity, step steps
        def scale(self, loss):
            return loss

        def step(self, opt):
            opt.step()

        def update(self):
            pass

    class Out:
        def __init__(self, logits):
            self.logits = logits

    class PlainSGD:  # torch.optim's first step imports much more than this test needs
        def zero_grad(self, set_to_none=True):
            model.zero_grad(set_to_none=set_to_none)

        def step(self):
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad

    opt = PlainSGD()
    want = model.weight.detach() - 0.1 * torch.autograd.grad(
        nn.functional.mse_loss(model(x), nn.functional.one_hot(y, 4).float()), model.weight)[0]
    step = Step(model=model, forward=lambda b: Out(model(b)), x=x, y=y, index=torch.arange(5), epoch=0,
                optimizers={"backbone": opt}, scaler=Scaler(),
                autocast=contextlib.nullcontext)
    losses = SquaredLossPlugin().update(step)
    assert losses.shape == (5,)
    assert torch.allclose(model.weight.detach(), want, atol=1e-6)
