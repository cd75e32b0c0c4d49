"""Fit, evaluate and predict on device-resident uint8 tensors. No Hydra in here.

Every batch is gathered from the pool tensor on the device, augmented there (random crop with
zero padding + horizontal flip) and normalised there; no DataLoader, no PIL.

Speed knobs (docs/performance.md has the measurements behind the defaults):
precision "auto" = bf16 autocast on CUDA (fp16 + GradScaler on GPUs without bf16) and on CPUs with
AMX-BF16, fp32 on other CPUs; channels_last "auto" = on. Evaluation runs in batches of
`eval_batch_size`, at the end of the cycle only unless `eval_every` asks for more.
Evidence (scripts/bench_train.py, 2-core Sapphire Rapids VM, ResNet-18 + loss-prediction module,
batch 128): a training step takes 0.78 s in bf16 + channels_last against 2.09 s in fp32 NCHW, and
fit() with its defaults trains 2.6-2.7x faster than a PIL + DataLoader + fp32 pipeline (median of
alternating rounds, 1 and 2 threads).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from al_bench import ConfigError
from al_bench.data.augment import Normalize, random_crop_flip
from al_bench.data.pool import Pool
from al_bench.models.base import ModelOutput
from al_bench.strategies.base import TrainHooks

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainSettings:
    """The trainer's knobs (conf/trainer/*.yaml); paper values in conf/trainer/paper.yaml."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [160])  # epochs
    gamma: float = 0.1  # lr factor at each milestone
    # "epoch_end": scheduler stepped after each epoch (lr drops after `milestone` epochs: 160 + 40);
    # "epoch_start": stepped before each epoch, as the public LL4AL code does (159 + 41)
    sched_step: str = "epoch_end"
    augment: bool = True
    crop_padding: int = 4  # pixels
    flip: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler)
    channels_last: bool | str = "auto"  # auto: on (NHWC model and inputs) on every device
    compile: bool = False  # torch.compile the backbone for training
    eval_batch_size: int = 1024  # images per batch at evaluation and selection
    eval_every: int = 0  # epochs; 0 = only at the end of the cycle (by the caller)
    progress: bool = True


def lr_at_epoch(epoch: int, base_lr: float, milestones, gamma: float, sched_step: str) -> float:
    """The learning rate used during 0-based `epoch`.

    "epoch_end" is MultiStepLR stepped after each epoch: lr * gamma^(number of milestones <= epoch).
    "epoch_start" is MultiStepLR stepped once before each epoch (so it has been stepped epoch + 1
    times when the epoch trains): lr * gamma^(number of milestones <= epoch + 1).
    """
    if sched_step not in ("epoch_end", "epoch_start"):
        raise ConfigError(f"trainer.sched_step must be epoch_end or epoch_start, got {sched_step!r}")
    steps = epoch + 1 if sched_step == "epoch_start" else epoch
    return base_lr * gamma ** sum(1 for m in milestones if m <= steps)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown trainer.device={name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use trainer.device=auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported trainer.device={name!r}; use auto, cpu, cuda or cuda:N")
    return device


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX tiles and AVX512-BF16 (Intel Sapphire Rapids and later), where
    oneDNN runs bf16 convolutions on AMX; False where torch cannot tell."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() and cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of trainer.precision on `device`; None = no autocast (fp32).

    "auto": on CUDA bf16 (tensor cores, fp32's exponent range, no loss scaling), fp16 on GPUs that
    lack bf16 (pre-Ampere); on CPU bf16 where the CPU has AMX-BF16 (a ResNet-18 training step
    measured 2.7-2.9x faster than fp32, docs/performance.md), else fp32 (bf16 without AMX is
    emulated and slower).
    """
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_amx_bf16() else None
    if precision not in choices:
        raise ConfigError(f"trainer.precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return choices[precision]


def use_channels_last(setting, device: torch.device) -> bool:
    """trainer.channels_last resolved: "auto" = on, on every device: NHWC is what tensor cores and
    oneDNN's CPU kernels want (measured on CPU, docs/performance.md: ResNet-18 step 1.09-1.16x
    faster in fp32 and 1.12-1.18x in bf16, the small CNN 1.2-1.3x)."""
    if setting == "auto":
        return True
    if isinstance(setting, str):
        raise ConfigError(f"trainer.channels_last must be auto, true or false, got {setting!r}")
    return bool(setting)


def resolved_knobs(settings: TrainSettings, device: torch.device) -> dict:
    """What the "auto" speed knobs became on `device`, for run.json."""
    amp = autocast_dtype(settings.precision, device)
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return {"precision": names[amp], "channels_last": use_channels_last(settings.channels_last, device)}


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    name = spec.get("name", "sgd")
    if name == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec.get("momentum", 0.0),
                               weight_decay=spec.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=spec["lr"], weight_decay=spec.get("weight_decay", 0.0))
    raise ConfigError(f"unknown optimizer {name!r}; use sgd or adam")


def fit(
    model: nn.Module,
    pool: Pool,
    indices: np.ndarray,
    settings: TrainSettings,
    generator: torch.Generator,
    hooks: TrainHooks | None = None,
    on_epoch_end=None,
    desc: str = "train",
) -> dict:
    """Train `model` (and the hooks' module) on pool.train_x[indices] for settings.epochs.

    Returns {"train_loss": mean target loss of the last epoch, "train_time_s": seconds}, plus
    "eval_history" [{"epoch": e, "test_acc": .., "test_loss": ..}, ...] when settings.eval_every > 0:
    the test set is then evaluated after every eval_every-th epoch except the last (whose
    evaluation is the caller's). `on_epoch_end(epoch)` is called after each 0-based epoch.
    Evaluation draws no random numbers, so eval_every does not change the trained weights.
    Raises TrainingDiverged when the loss becomes NaN or infinite.
    """
    device = pool.train_x.device
    amp = autocast_dtype(settings.precision, device)
    channels_last = use_channels_last(settings.channels_last, device)
    normalize = Normalize(pool.mean, pool.std, device, channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    backbone_spec = dict(name="sgd", lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    optimizers = [(make_optimizer(model.parameters(), backbone_spec), settings.lr, True)]
    if hooks is not None and hooks.module is not None:
        spec = dict(backbone_spec, **(hooks.optimizer or {}))
        optimizers.append((make_optimizer(hooks.module.parameters(), spec), spec["lr"], hooks.follow_schedule))
    # fp16 needs loss scaling (its small exponent range underflows gradients); bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    step_fn = torch.compile(model) if settings.compile else model

    idx = torch.as_tensor(np.asarray(indices), device=device)
    n = idx.numel()
    bs = settings.batch_size
    model.train()
    if hooks is not None and hooks.module is not None:
        hooks.module.train()
    start = time.perf_counter()
    epoch_loss = float("nan")
    history = []
    bar = tqdm(range(settings.epochs), desc=desc, unit="ep", disable=None if settings.progress else True,
               leave=False, mininterval=1.0)
    for epoch in bar:
        for opt, base_lr, scheduled in optimizers:
            lr = lr_at_epoch(epoch, base_lr, settings.milestones, settings.gamma, settings.sched_step) if scheduled else base_lr
            for group in opt.param_groups:
                group["lr"] = lr
        order = idx[torch.randperm(n, device=device, generator=generator)]
        total = torch.zeros((), device=device)
        for start_i in range(0, n, bs):
            b = order[start_i:start_i + bs]
            xb = pool.train_x[b]
            if settings.augment:
                xb = random_crop_flip(xb, settings.crop_padding, settings.flip, generator)
            yb = pool.train_y[b]
            with _autocast(device, amp):
                out = step_fn(normalize(xb))
                target_loss = nn.functional.cross_entropy(out.logits.float(), yb, reduction="none")
                loss = target_loss.mean()
                if hooks is not None:
                    loss = loss + hooks.loss(out, target_loss, epoch)
            for opt, _, _ in optimizers:
                opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            for opt, _, _ in optimizers:
                scaler.step(opt)
            scaler.update()
            total += target_loss.detach().sum()
        epoch_loss = float(total) / n
        if not math.isfinite(epoch_loss):
            raise TrainingDiverged(
                f"training loss is {epoch_loss} at epoch {epoch} ({desc}); lower trainer.lr or check the data"
            )
        bar.set_postfix(loss=f"{epoch_loss:.3f}", refresh=False)
        if settings.eval_every > 0 and (epoch + 1) % settings.eval_every == 0 and epoch + 1 < settings.epochs:
            preds = predict(model, pool.test_x, pool.mean, pool.std, settings.eval_batch_size, hooks,
                            precision=settings.precision, channels_last=settings.channels_last)
            history.append({"epoch": epoch + 1, **evaluate(preds, pool.test_y)})
            log.info("%s epoch=%d test_acc=%.4f", desc, epoch + 1, history[-1]["test_acc"])
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    stats = {"train_loss": epoch_loss, "train_time_s": time.perf_counter() - start}
    if settings.eval_every > 0:
        stats["eval_history"] = history
    return stats


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    mean,
    std,
    batch_size: int = 1024,
    hooks: TrainHooks | None = None,
    mc_samples: int = 0,
    precision: str = "auto",
    channels_last="auto",
) -> dict[str, torch.Tensor]:
    """One batched pass over uint8 images x (N, H, W, C) in eval mode. Returns on x's device:
    logits (N, C), probs (N, C), embedding (N, D), the hooks' extras, and with mc_samples > 0
    mc_probs (N, S, C) from S dropout masks on the classifier head (the trunk runs once).
    The trunk runs under the precision's autocast; the classifier head and the hooks' outputs
    in fp32 on the trunk's (upcast) features.
    The train/eval mode of the model and of the hooks' module is restored afterwards."""
    device = x.device
    amp = autocast_dtype(precision, device)
    normalize = Normalize(mean, std, device, use_channels_last(channels_last, device))
    aux = hooks.module if hooks is not None and hooks.module is not None else None
    modes = [(m, m.training) for m in (model, aux) if m is not None]
    for m, _ in modes:
        m.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, x.shape[0], batch_size):
            with _autocast(device, amp):
                out = model(normalize(x[start:start + batch_size]))
            emb = out.embedding.float()
            # The classifier head and the hooks' outputs again in fp32 (small next to the trunk):
            # bf16 scores carry 8 mantissa bits, so scores of different images tie exactly (a
            # random-weight loss-prediction module gave 16 distinct values for 2000 images) and
            # top-k then prefers earlier candidates; MC samples' small differences would blur.
            with torch.autocast(device.type, enabled=False):
                logits = model.classify(emb) if amp is not None else out.logits.float()
                extras = {}
                if hooks is not None:
                    full = out if amp is None else ModelOutput(logits, [s.float() for s in out.stages], emb)
                    extras = hooks.outputs(full)
                    del full
                if mc_samples > 0:
                    extras["mc_probs"] = torch.stack(
                        [torch.softmax(model.classify(emb, mc=True).float(), 1) for _ in range(mc_samples)], 1)
            batch = {"logits": logits.float(), "embedding": emb, **{k: v.float() for k, v in extras.items()}}
            for key, value in batch.items():
                parts.setdefault(key, []).append(value)
            del out, extras, batch  # the stage outputs of a large batch are big: free them before the next
    finally:
        for m, mode in modes:
            m.train(mode)
    result = {k: torch.cat(v) for k, v in parts.items()}
    result["probs"] = torch.softmax(result["logits"], dim=1)
    return result


def evaluate(preds: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, float]:
    """Accuracy (fraction) and mean cross-entropy of a prediction pass."""
    loss = nn.functional.cross_entropy(preds["logits"], targets)
    acc = (preds["logits"].argmax(1) == targets).double().mean()
    return {"test_acc": float(acc), "test_loss": float(loss)}
