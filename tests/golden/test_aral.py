"""ARAL against its authors' code: one training iteration (cifar_trainer.py `Trainer._train`) from the same
weights, batches and noise.

Reference: samottaghi/adversarial-representation-active-learning at commit
14b2d4d6e4e09fe8615d77ae43a9d0f2304a3d30, cifar_trainer.py `Trainer._train` (CIFAR config of config.py:
gan/cls lambda 1, trd/adv lambda 0.001, lrs 6e-4 / 3e-4 / 3e-4 / 6e-4 and the betas of `Trainer.__init__`)
with cifar_model.py's `Generator`, `Encoder(output_params=True)` and `Sampler`, run on CPU under torch 2.14
(its `.cuda()` calls made no-ops, torchvision stubbed: only its data module imports it). Their `dis` is
given al-bench's SmallCNN(10 classes, 3 channels, width 8) built first from torch.manual_seed(0) (logits;
`feat=True` -> its embedding) with their dis optimiser, Adam(6e-4, betas (0.5, 0.999)); then their
Generator, Encoder and Sampler are built in that order from the same global generator, exactly as
al-bench's plugin builds its own (so the initial weights agree without copying any). Their loaders'
`next()` return the batches of `golden_batches()` in order (labeled 6 images, unlabeled 8, images in
[-1, 1] = the authors' normalisation, i.e. mean = std = 0.5 here) and their global generator is seeded
with 3 just before `_train`, as al-bench's plugin generator is, so z and the fake labels agree.
Pinned: their three monitor losses (dis; gen & enc minus trd_lambda x their detached reconstruction
MSE, which trains nothing and al-bench leaves out; smp), the L1 size of each module's update, and the
sampler's scores of four probe images after the step (encoder in eval mode, their `eval2`). Both sides
run in float64 (torch.set_default_dtype): in float32 the first Adam step, lr x g / (|g| + 1e-8), turns
rounding-level differences of near-zero gradients into sign flips of a few weights (scores then agree to
~2e-5 only); in float64 they agree to ~1e-15. Not compared: the generator's batch-norm running statistics
(their detached reconstruction pass moves them; al-bench skips that pass, which trains nothing). Two runs:
`encoder_label=zero` emulates the PyTorch 1.x integer division `argmax(logits) / num_label` of their
CIFAR encoder (the README's "Pytorch 1"), `argmax` is their code as it runs under torch 2.14.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest
import torch

from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.aral import Aral
from al_bench.training import TrainSettings
from al_bench.training.plugin import Step, TrainContext


def golden_classifier() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(num_classes=10, in_channels=3, width=8)


def golden_batches() -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out: dict[str, list[torch.Tensor]] = {"lab": [], "lab_y": [], "unl": []}
    for _ in range(3):
        out["lab"].append(torch.rand(6, 3, 32, 32, generator=g) * 2 - 1)
        out["lab_y"].append(torch.randint(10, (6,), generator=g))
        out["unl"].append(torch.rand(8, 3, 32, 32, generator=g) * 2 - 1)
    out["probe"] = [torch.rand(4, 3, 32, 32, generator=g) * 2 - 1]
    return out


# their output in float64 (harness under /tmp/golden/aral, see the module docstring)
PINNED = {
    "zero": {"dis": 4.217069506875897, "ge_minus_rec": 1.320324409211045, "smp": 0.0013866442908869324,
             "moved": {"classifier": 4.205983241900666, "generator": 1494.865692243437,
                       "encoder": 1757.5693515915773, "sampler": 295.7726187627041},
             "scores": [0.5019535769920402, 0.5017260849106333, 0.5017249511731557, 0.5013657753051906]},
    "argmax": {"dis": 4.217069506875897, "ge_minus_rec": 1.321264049855006, "smp": 0.001386652015455867,
             "moved": {"classifier": 4.205983241900666, "generator": 1494.865692243437,
                       "encoder": 1758.3713605067858, "sampler": 295.9851357007529},
             "scores": [0.502020391693793, 0.5018138917766033, 0.5018251389938942, 0.5014274718317085]},
}


def one_iteration(encoder_label: str, **options):
    """al-bench's ARAL plugin, one classifier step, on the golden inputs; returns what the harness printed."""
    torch.set_num_threads(1)
    clf = golden_classifier()
    strategy = Aral(encoder_label=encoder_label, **options)
    plugin = strategy.plugin
    pool = types.SimpleNamespace(train_x=torch.zeros(20, 32, 32, 3, dtype=torch.uint8), num_classes=10,
                                 mean=(0.5,) * 3, std=(0.5,) * 3, n_train=20)
    settings = TrainSettings(epochs=10, batch_size=6, precision="fp32", augment=False, progress=False)
    plugin.setup(clf, TrainContext(pool, np.arange(6), settings, 0, torch.Generator(), None), warm_start=False)
    b = golden_batches()
    lab, unl = iter(b["lab"][1:]), iter(b["unl"])
    plugin.generator = torch.Generator().manual_seed(3)  # the harness's torch.manual_seed(3) before _train
    plugin.unlabeled_batch = lambda n: next(unl)
    plugin.fresh = lambda n_l, n_u: (next(lab), next(unl))
    optimizers = {"backbone": torch.optim.Adam(clf.parameters(), lr=6e-4, betas=(0.5, 0.999))}
    optimizers.update({name: spec.factory(spec.params) for name, spec in plugin.optimizers().items()})
    modules = {"classifier": clf, **plugin.modules()}
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in modules.items()}
    clf.train()
    step = Step(model=clf, forward=clf, x=b["lab"][0], y=b["lab_y"][0], index=torch.arange(6), epoch=0,
                optimizers=optimizers, scaler=torch.amp.GradScaler("cpu", enabled=False),
                autocast=contextlib.nullcontext)
    target = plugin.update(step)
    moved = {n: float(sum((p.detach() - q).abs().sum() for p, q in zip(m.parameters(), before[n])))
             for n, m in modules.items()}
    plugin.enc.eval()
    plugin.smp.eval()
    with torch.no_grad():
        scores = plugin.smp(plugin.enc(b["probe"][0])[0]).tolist()
    return {"dis": float(target.mean() + step.logs["plugin_loss"]),
            "ge_minus_rec": float(step.logs["gen_loss"] + step.logs["enc_loss"]), "smp": float(step.logs["smp_loss"]),
            "moved": moved, "scores": scores}


@pytest.mark.parametrize("encoder_label", ["zero", "argmax"])
def test_one_iteration_equals_the_authors_trainer(encoder_label):
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got, want = one_iteration(encoder_label), PINNED[encoder_label]
    finally:
        torch.set_default_dtype(dtype)
    # float32 casts: the trainer's cross-entropy reads the logits in float32 (TrainingPlugin.update), the
    # feature matching the embeddings (the plugin's)
    assert got["dis"] == pytest.approx(want["dis"], rel=1e-6)
    assert got["ge_minus_rec"] == pytest.approx(want["ge_minus_rec"], rel=1e-6)
    assert got["smp"] == pytest.approx(want["smp"], rel=1e-9)
    for name, value in want["moved"].items():
        assert got["moved"][name] == pytest.approx(value, rel=1e-9), name
    assert got["scores"] == pytest.approx(want["scores"], abs=1e-12)
