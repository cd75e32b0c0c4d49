"""The trainer's speed knobs: precision (autocast, GradScaler for fp16), channels_last,
eval_every, and the one-pass prediction that selection shares through SelectionContext."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.training import (
    OptimizerSpec,
    TrainingPlugin,
    TrainSettings,
    autocast_dtype,
    fit,
    predict,
    resolved_knobs,
    use_channels_last,
)
from al_bench.training import device as device_mod

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pool():
    return synthetic(n_train=96, n_test=64, num_classes=4, image_size=8)


def small_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return SmallCNN(4, 3, width=8, dropout=dropout)


def settings(**kw):
    base = dict(epochs=2, batch_size=32, lr=0.05, milestones=[1], progress=False)
    return TrainSettings(**{**base, **kw})


def run_fit(pool, seed=0, hooks=None, **kw):
    model = small_model(seed)
    gen = torch.Generator().manual_seed(seed)
    stats = fit(model, pool, np.arange(64), settings(**kw), gen, hooks)
    return model, stats


def test_precision_and_memory_format_choices(monkeypatch):
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("fp16", CPU) is torch.float16
    monkeypatch.setattr(device_mod, "cpu_has_amx_bf16", lambda: True)
    assert autocast_dtype("auto", CPU) is torch.bfloat16  # measured ~2.7x faster on AMX CPUs
    assert resolved_knobs(TrainSettings(), CPU) == {"precision": "bf16", "channels_last": True}
    monkeypatch.setattr(device_mod, "cpu_has_amx_bf16", lambda: False)
    assert autocast_dtype("auto", CPU) is None  # emulated bf16 is slower than fp32
    assert resolved_knobs(TrainSettings(), CPU) == {"precision": "fp32", "channels_last": True}
    assert resolved_knobs(TrainSettings(precision="fp16", channels_last=False), CPU) == \
        {"precision": "fp16", "channels_last": False}
    assert use_channels_last("auto", CPU) is True and use_channels_last(False, CPU) is False
    cuda = torch.device("cuda", 0)
    for capability, want in [((9, 0), None), ((8, 0), None), ((7, 5), torch.float16), ((7, 0), torch.float16)]:
        # Ampere and newer: fp32 on TF32 tensor cores (faster than bf16 autocast on an H200); older: fp16
        monkeypatch.setattr(device_mod.torch.cuda, "get_device_capability", lambda d, c=capability: c)
        assert autocast_dtype("auto", cuda) is want
    assert autocast_dtype("bf16", cuda) is torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        autocast_dtype("half", CPU)
    with pytest.raises(ConfigError, match="channels_last"):
        use_channels_last("yes", CPU)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains(pool, precision):
    before = small_model().state_dict()
    model, stats = run_fit(pool, precision=precision, epochs=3)
    assert np.isfinite(stats["train_loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


class SpyScaler(torch.amp.GradScaler):
    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = 0
        SpyScaler.made.append(self)

    def step(self, optimizer, *args, **kwargs):
        self.steps += 1
        return super().step(optimizer, *args, **kwargs)


def test_fp16_trains_through_an_enabled_grad_scaler(pool, monkeypatch):
    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    SpyScaler.made.clear()
    run_fit(pool, precision="fp16", epochs=1)
    (scaler,) = SpyScaler.made
    assert scaler.is_enabled() and scaler.steps == 2  # 64 images / batch 32
    assert scaler.get_scale() > 1.0  # the loss really is scaled
    SpyScaler.made.clear()
    run_fit(pool, precision="bf16", epochs=1)
    assert not SpyScaler.made[0].is_enabled()  # bf16 needs no loss scaling


def test_training_is_reproducible_bit_for_bit_with_the_default_precision(pool):
    a, _ = run_fit(pool, epochs=2)
    b, _ = run_fit(pool, epochs=2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_eval_every_evaluates_in_between_without_changing_training(pool):
    epochs_seen = []

    class EpochSpy(TrainingPlugin):
        def after_epoch(self, epoch, ctx):
            epochs_seen.append(epoch)

    model = small_model()
    stats = fit(model, pool, np.arange(64), settings(epochs=5, eval_every=2), torch.Generator().manual_seed(0),
                EpochSpy())
    assert epochs_seen == [0, 1, 2, 3, 4]
    assert [h["epoch"] for h in stats["eval_history"]] == [2, 4]  # the last epoch is the caller's
    assert all(0.0 <= h["test_acc"] <= 1.0 for h in stats["eval_history"])
    assert model.training
    plain, plain_stats = run_fit(pool, epochs=5)
    assert "eval_history" not in plain_stats
    for (k, va), vb in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(va, vb), k


class CountingHooks(TrainingPlugin):
    """A one-parameter auxiliary head: predicts a score from the embedding's mean."""

    def __init__(self):
        self.module = nn.Linear(1, 1)

    def modules(self):
        return {"head": self.module}

    def optimizers(self):
        return {"head": OptimizerSpec(self.module.parameters())}

    def loss(self, out, target_loss, step):
        pred = self.module(out.embedding.float().mean(1, keepdim=True)).squeeze(1)
        return ((pred - target_loss.detach()) ** 2).mean()

    def outputs(self, out, x):
        return {"pred_loss": self.module(out.embedding.float().mean(1, keepdim=True)).squeeze(1)}


def test_hooks_train_and_predict_restores_both_modes(pool):
    hooks = CountingHooks()
    w0 = hooks.module.weight.detach().clone()
    model, _ = run_fit(pool, hooks=hooks, epochs=1)
    assert not torch.equal(w0, hooks.module.weight)  # the module has its own optimiser
    model.train(), hooks.module.train()
    preds = predict(model, pool.test_x, pool.mean, pool.std, 16, hooks, mc_samples=3)
    assert model.training and hooks.module.training
    n = len(pool.test_y)
    assert preds["probs"].shape == (n, 4) and preds["logits"].shape == (n, 4)
    assert preds["embedding"].shape == (n, model.embed_dim) and preds["pred_loss"].shape == (n,)
    assert preds["mc_probs"].shape == (n, 3, 4)
    assert torch.allclose(preds["probs"].sum(1), torch.ones(n), atol=1e-5)


def test_predict_computes_the_head_and_the_hooks_outputs_in_fp32_under_bf16(pool):
    model, hooks = small_model(dropout=0.5), CountingHooks()
    preds = predict(model, pool.test_x, pool.mean, pool.std, 32, hooks, precision="bf16", mc_samples=2)
    assert all(v.dtype == torch.float32 for v in preds.values())
    with torch.no_grad():
        head = model.fc(preds["embedding"])  # eval mode: no dropout
        aux = hooks.module(preds["embedding"].mean(1, keepdim=True)).squeeze(1)
    assert torch.allclose(preds["logits"], head, atol=1e-6)
    assert torch.allclose(preds["pred_loss"], aux, atol=1e-6)
    # not quantised to bf16's 8 mantissa bits: distinct images, distinct scores (no ties for top-k)
    n = len(pool.test_y)
    assert len(torch.unique(preds["probs"].max(1).values)) == n
    assert len(torch.unique(preds["pred_loss"])) == n


class ManyQuantities(Strategy):
    """Asks the context for probabilities, embeddings and a hook extra, separately."""

    def select(self, ctx, candidates, k):
        probs = ctx.predict(candidates)["probs"]
        emb = ctx.predict(candidates)["embedding"]
        extra = ctx.predict(candidates)["pred_loss"]
        score = probs.max(1).values + emb.norm(dim=1) + extra
        return candidates[torch.argsort(score, descending=True)[:k].numpy()]


def test_a_strategy_asking_for_several_quantities_triggers_one_batched_pass(pool):
    model, hooks = small_model(), CountingHooks()
    forwards, calls = [], []
    model.register_forward_hook(lambda m, inp, out: forwards.append(inp[0].shape[0]))

    def predictor(indices, mc_samples=0):
        calls.append(len(indices))
        return predict(model, pool.train_x[torch.as_tensor(indices)], pool.mean, pool.std, 32, hooks,
                       mc_samples=mc_samples)

    ctx = SelectionContext(model=model, pool=pool, labeled=np.arange(10), rng=np.random.default_rng(0),
                           device=CPU, predictor=predictor)
    cands = np.arange(10, 96)
    picks = ManyQuantities().select(ctx, cands, 5)
    assert len(set(picks.tolist())) == 5
    assert calls == [86]
    assert forwards == [32, 32, 22]  # one pass in eval batches over the 86 candidates


@pytest.mark.parametrize("setting, mode", [(True, "default"), ("reduce-overhead", "reduce-overhead"),
                                           ("max-autotune", "max-autotune")])
def test_compile_setting_reaches_torch_compile(pool, monkeypatch, setting, mode):
    """trainer.compile picks torch.compile's mode (reduce-overhead: CUDA graphs) for the training forward;
    false leaves the model uncompiled. torch.compile itself is stubbed (compiling takes 60-90 s here)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, mode: seen.append(mode) or model)
    run_fit(pool, compile=setting, epochs=1)
    assert seen == [mode]
    run_fit(pool, compile=False, epochs=1)
    assert seen == [mode]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AL_BENCH_TEST_COMPILE"),
                    reason="torch.compile takes 60-90 s on a 2-core CPU; set AL_BENCH_TEST_COMPILE=1")
def test_compile_trains_on_cpu(pool):
    model, stats = run_fit(pool, compile=True, epochs=1)
    assert np.isfinite(stats["train_loss"])
