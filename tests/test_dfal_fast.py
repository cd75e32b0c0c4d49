"""DFAL's streamed DeepFool (a batch of images in flight, each leaving when it flips, has taken max_iter
steps or stops moving, the next candidates taking its place) gives the perturbation norms and flips of
a plain image-by-image DeepFool loop (as the authors' cal_dis runs it) and the same picks."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.data.augment import Normalize
from al_bench.data.pool import Pool
from al_bench.models.base import Backbone
from al_bench.models.resnet import ResNet18
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.dfal import Dfal, deepfool_norms

RTOL = 1e-5  # fp32 batches against fp32 single images: ~1e-7 apart


def reference_deepfool(model, x, to_input=lambda z: z, max_iter=50, overshoot=0.0, eps=0.0):
    """DeepFool one image at a time: step to the nearest linearised boundary until the label changes."""
    norms, flips = [], []
    for i in range(len(x)):
        x0 = x[i:i + 1].float()
        r = torch.zeros_like(x0)
        with torch.no_grad():
            label = int(model(to_input(x0)).logits.argmax(1))
        for _ in range(max_iter):
            xi = (x0 + (1 + overshoot) * r).requires_grad_(True)
            logits = model(to_input(xi)).logits[0].float()
            if int(logits.argmax()) != label:
                break
            grads = [torch.autograd.grad(logits[j], xi, retain_graph=True)[0] for j in range(len(logits))]
            best = None
            for k in range(len(logits)):
                if k == label:
                    continue
                w = grads[k] - grads[label]
                f = float(logits[k].detach() - logits[label].detach())
                ratio = abs(f) / float(w.norm())
                if best is None or ratio < best[0]:  # the first of equal distances
                    best = (ratio, f, w)
            _, f, w = best
            r = r + (abs(f) + eps) / float(w.norm()) ** 2 * w
        with torch.no_grad():
            flips.append(int(model(to_input(x0 + (1 + overshoot) * r)).logits.argmax(1)) != label)
        norms.append(float(((1 + overshoot) * r).norm()))
    return np.array(norms), np.array(flips)


class TanhNet(Backbone):
    """conv-BN-tanh, conv-tanh, average pool, linear: smooth, so DeepFool takes several steps."""

    stage_channels = (6,)
    embed_dim = 6

    def __init__(self, classes=4):
        super().__init__(0.0)
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, classes)

    def features(self, x):
        s = torch.tanh(self.conv2(torch.tanh(self.bn(self.conv1(x)))))
        return [s], s.mean((2, 3))


def model_of(word, seed):
    torch.manual_seed(seed)
    model = TanhNet() if word == "tanh" else ResNet18(4, width=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model.fc.weight.mul_(3.0)
    return model.eval()


def pool_of(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 6, 6, 3), dtype=torch.uint8, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return Pool(name="t", train_x=x, train_y=y, test_x=x, test_y=y, num_classes=4, mean=(0.5, 0.45, 0.4),
                std=(0.25, 0.2, 0.3))


def ctx_for(model, pool):
    return SelectionContext(model=model, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=None)


def reference_for(model, pool, cands, space="normalized", **kw):
    normalize = Normalize(pool.mean, pool.std, "cpu", channels_last=False)
    x = pool.train_x[torch.as_tensor(cands)]
    if space == "normalized":
        return reference_deepfool(model, normalize(x), **kw)
    return reference_deepfool(model, x.float() / 255.0, lambda z: normalize(z * 255.0), **kw)


@functools.lru_cache
def case(word):
    """(model, pool, candidates, the loop's norms) for one model; the loop is slow, so run once."""
    model, pool = model_of(word, 0), pool_of(30, 1)
    cands = np.random.default_rng(2).permutation(30)[:23 if word == "tanh" else 15]
    want, _ = reference_for(model, pool, cands)
    return model, pool, cands, want


@pytest.mark.parametrize("word,batch_size", [("tanh", 1), ("tanh", 4), ("tanh", 256), ("resnet", 5), ("resnet", 256)])
def test_streamed_deepfool_equals_the_image_by_image_loop(word, batch_size):
    model, pool, cands, want = case(word)
    got, _ = Dfal(batch_size=batch_size).norms(ctx_for(model, pool), cands)
    assert np.allclose(got, want, rtol=RTOL, atol=0)
    # with overshoot 0 an image ends on the boundary, where rounding decides its flag: compared below
    order = np.lexsort((np.arange(len(cands)), want))
    assert Dfal(batch_size=batch_size).select(ctx_for(model, pool), cands, 9).tolist() == cands[order[:9]].tolist()


@pytest.mark.parametrize("space,overshoot,eps,max_iter", [("normalized", 0.02, 1e-4, 50), ("pixel", 0.02, 0.0, 50),
                                                          ("pixel", 0.02, 0.0, 1), ("normalized", 0.0, 1e-4, 1)])
def test_options_equal_the_image_by_image_loop(space, overshoot, eps, max_iter):
    model, pool = model_of("tanh", 3), pool_of(17, 4)
    cands = np.arange(17)
    want, want_flip = reference_for(model, pool, cands, space, max_iter=max_iter, overshoot=overshoot, eps=eps)
    strategy = Dfal(max_iter, overshoot, eps, space, batch_size=5)
    got, flip = strategy.norms(ctx_for(model, pool), cands)
    assert np.allclose(got, want, rtol=RTOL, atol=0)
    assert flip.tolist() == want_flip.tolist()
    if max_iter == 1:
        assert not want_flip.all()  # some images stopped by max_iter: the final check decides their flag


class Flat(Backbone):
    """Logits (x - 0.5, 0.5 - x) of a one-pixel image x: the boundary at x = 0.5, class 0 above it."""

    stage_channels = (1,)
    embed_dim = 1

    def __init__(self):
        super().__init__(0.0)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.copy_(torch.tensor([-0.5, 0.5]))
        self.calls = 0

    def features(self, x):
        self.calls += len(x)
        return [x], x.flatten(1)


def test_an_image_that_stops_moving_leaves_the_batch():
    """x = 1 lands exactly on the boundary in one step (logits 0, 0): argmax keeps class 0 and every later
    step is zero; the loop repeats it to max_iter, the stream stops at the second, with the same norm and
    flag. x = 0.2 and 0.1 (class 1) land on the boundary too, where argmax's tie-break flips them."""
    x = torch.tensor([1.0, 0.2, 0.1]).view(3, 1, 1, 1)
    model = Flat().eval()
    want, want_flip = reference_deepfool(model, x)
    loop_calls, model.calls = model.calls, 0
    assert np.allclose(want, [0.5, 0.3, 0.4]) and want_flip.tolist() == [False, True, True]
    got, flip = deepfool_norms(model, x)
    assert np.allclose(got.numpy(), want, rtol=RTOL) and flip.tolist() == want_flip.tolist()
    assert loop_calls == 60 and model.calls <= 8  # image 0: 52 forwards in the loop, 3 here
