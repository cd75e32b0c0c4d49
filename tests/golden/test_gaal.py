"""GAAL (Zhu & Bento, arXiv:1702.07956) on hand-made inputs whose right answer is known.

No public code of the authors is known (searched GitHub for the title, arXiv:1702.07956 and the
first author's account jj-zhu; billzhaox/PyTorch-GAAL is a third-party re-implementation), so
there is nothing to pin; the rule is checked on a linear generator and a linear classifier, where
the paper's objective min_z (W^T G(z) + b)^2 has a closed-form answer: plain gradient descent from
z0 ends at the orthogonal projection of z0 onto the boundary hyperplane {z : a.z + c = 0}
(a = A^T W for G(z) = A z + v), and with the penalty lambda ||z||^2 at z = -c a / (||a||^2 + lambda).
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.data.pool import Pool
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.gan_query import Classifier, margin_sq, synthesize
from al_bench.strategies.gaal import Gaal


class LinearG(nn.Module):
    """z (N, Z) -> A z + v shaped (N, C, H, W)."""

    def __init__(self, a: torch.Tensor, v: torch.Tensor, shape):
        super().__init__()
        self.a, self.v, self.shape, self.z_dim = a, v, shape, a.shape[1]

    def forward(self, z):
        return (z @ self.a.T + self.v).reshape(z.shape[0], *self.shape)


class LinearClassifier(nn.Module):
    """x (N, C, H, W) -> logits W x + b (and the input as the embedding)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        flat = x.flatten(1)
        return SimpleNamespace(logits=flat @ self.w.T + self.b, embedding=flat)


def identity_classifier(model, channels=4):
    # mean 0.5, std 0.5: the classifier sees the generator's [-1, 1] values unchanged
    return Classifier(model, (0.5,) * channels, (0.5,) * channels, torch.device("cpu"))


def problem():
    g = torch.Generator().manual_seed(14)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64)  # 3-d z -> a 1x1 image of 4 channels
    v = torch.randn(4, generator=g, dtype=torch.float64)
    w = torch.randn(2, 4, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    gen, clf = LinearG(a, v, (4, 1, 1)), LinearClassifier(w, b)
    # in z: W^T G(z) + b = normal . z + offset, with W = w_1 - w_0 and b = b_1 - b_0
    normal = a.T @ (w[1] - w[0])
    offset = float((w[1] - w[0]) @ v + (b[1] - b[0]))
    z0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    return gen, clf, normal, offset, z0


def test_margin_sq_is_the_papers_svm_objective_for_two_classes():
    w = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    b = torch.tensor([0.1, -0.3])
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.5], [0.3, -0.2]])
    logits = x @ w.T + b
    svm = x @ (w[1] - w[0]) + (b[1] - b[0])  # W^T x + b of the equivalent binary linear classifier
    assert torch.allclose(margin_sq(logits), svm.pow(2))
    # more classes: the gap between the two largest logits
    assert margin_sq(torch.tensor([[3.0, 1.0, 2.5]])).item() == pytest.approx(0.25)


def test_gradient_descent_on_z_ends_at_the_projection_onto_the_boundary():
    gen, clf, normal, offset, z0 = problem()
    lr = 0.25 / float(normal @ normal)  # contracts the residual by 1/2 per step
    z, obj = synthesize(gen, identity_classifier(clf), z0, margin_sq, steps=100, lr=lr, optimizer="sgd",
                        z_penalty=0.0)
    want = z0 - ((z0 @ normal + offset) / (normal @ normal))[:, None] * normal[None]
    assert torch.allclose(z, want, atol=1e-9)
    assert obj.max().item() < 1e-12
    assert (z0 @ normal + offset).abs().min().item() > 0.1  # the start was off the boundary


def test_the_z_penalty_gives_the_regularised_minimiser():
    gen, clf, normal, offset, z0 = problem()
    lam = float(normal @ normal)  # lambda = ||a||^2: every direction contracts by 1/2 per step at this lr
    lr = 0.25 / lam
    z, _ = synthesize(gen, identity_classifier(clf), z0, margin_sq, steps=100, lr=lr, optimizer="sgd",
                      z_penalty=lam)
    want = -offset * normal / (normal @ normal + lam)
    assert torch.allclose(z, want.expand_as(z), atol=1e-8)


def test_adam_also_reaches_the_boundary():
    gen, clf, normal, offset, z0 = problem()
    z, obj = synthesize(gen, identity_classifier(clf), z0, margin_sq, steps=150, lr=0.05,
                        optimizer="adam", z_penalty=0.0)
    start = (z0 @ normal + offset).abs()
    assert ((z @ normal + offset).abs() < 0.02 * start).all()


def boundary_pool():
    """Two-channel 1x1 images; the generator's line x = (z, 0.2) crosses the classifier's boundary
    x_0 = t at pixel (128, 153); candidates: that image, two on the line farther away, one on the
    boundary but off the generator's line, one far off."""
    px = np.array([[100, 153], [128, 40], [128, 153], [160, 153], [10, 10]], dtype=np.uint8)
    x = torch.from_numpy(px).reshape(5, 1, 1, 2)
    return Pool("boundary", x, torch.zeros(5, dtype=torch.long), x[:1], torch.zeros(1, dtype=torch.long), 2,
                (0.5, 0.5), (0.5, 0.5))


def gaal_ctx(pool, seed=0):
    t = 128 / 127.5 - 1.0
    clf = LinearClassifier(torch.tensor([[0.0, 0.0], [4.0, 0.0]]), torch.tensor([0.0, -4.0 * t]))

    def predictor(indices, mc_samples=0):  # the classifier's embedding of pool rows: its normalised input
        x = pool.train_x[torch.as_tensor(indices)].permute(0, 3, 1, 2).float() / 255.0
        return {"embedding": ((x - 0.5) / 0.5).flatten(1)}

    return SelectionContext(model=clf, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=predictor)


def planted_strategy(cls=Gaal, **kw):
    s = cls(**{"z_steps": 60, "z_lr": 0.02, "features": "pixels", **kw})
    s.plugin.gen = LinearG(torch.tensor([[1.0], [0.0]]), torch.tensor([0.0, 0.2]), (2, 1, 1))
    s.plugin.disc, s.plugin.trained = nn.Identity(), True
    return s


@pytest.mark.parametrize("seed", [0, 1])
def test_gaal_labels_the_real_image_nearest_its_boundary_query(seed):
    pool, cands = boundary_pool(), np.array([10, 11, 12, 13, 14])
    pool = Pool(pool.name, pool.train_x.repeat(3, 1, 1, 1), torch.zeros(15, dtype=torch.long), pool.test_x,
                pool.test_y, 2, pool.mean, pool.std)
    picks = planted_strategy().select(gaal_ctx(pool, seed), cands, 1)
    assert picks.tolist() == [12]
    # two synthetic queries land on the same boundary point: the second takes the next nearest
    picks = planted_strategy().select(gaal_ctx(pool, seed), cands, 2)
    assert picks.tolist() == [12, 10]
    picks = planted_strategy().select(gaal_ctx(pool, seed), cands, 5)
    assert sorted(picks.tolist()) == cands.tolist()
