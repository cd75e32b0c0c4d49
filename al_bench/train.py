"""Fit, evaluate and predict on device-resident uint8 tensors. No Hydra in here.

Every batch is gathered from the pool tensor on the device, augmented there (random crop with
zero padding + horizontal flip) and normalised there; no DataLoader, no PIL.
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
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool | str = "auto"
    compile: bool = False
    eval_batch_size: int = 1024
    eval_every: int = 0  # epochs; 0 = only at the end of the cycle
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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = no autocast. "auto": bf16 on CUDA (tensor cores, no loss scaling needed), fp32 on
    CPU (CPU autocast to bf16 is slower than fp32 on CPUs without AMX)."""
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision not in choices:
        raise ConfigError(f"trainer.precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    return choices[precision]


def use_channels_last(setting, device: torch.device) -> bool:
    return device.type == "cuda" if setting == "auto" else bool(setting)


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

    Returns {"train_loss": mean target loss of the last epoch, "train_time_s": seconds}.
    Raises TrainingDiverged when the loss becomes NaN or infinite.
    """
    device = pool.train_x.device
    amp = autocast_dtype(settings.precision, device)
    normalize = Normalize(pool.mean, pool.std, device, use_channels_last(settings.channels_last, device))
    if use_channels_last(settings.channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    backbone_spec = dict(name="sgd", lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    optimizers = [(make_optimizer(model.parameters(), backbone_spec), settings.lr, True)]
    if hooks is not None and hooks.module is not None:
        spec = dict(backbone_spec, **(hooks.optimizer or {}))
        optimizers.append((make_optimizer(hooks.module.parameters(), spec), spec["lr"], hooks.follow_schedule))
    step_fn = torch.compile(model) if settings.compile else model

    idx = torch.as_tensor(np.asarray(indices), device=device)
    n = idx.numel()
    bs = settings.batch_size
    model.train()
    if hooks is not None and hooks.module is not None:
        hooks.module.train()
    start = time.perf_counter()
    epoch_loss = float("nan")
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
            loss.backward()
            for opt, _, _ in optimizers:
                opt.step()
            total += target_loss.detach().sum()
        epoch_loss = float(total) / n
        if not math.isfinite(epoch_loss):
            raise TrainingDiverged(
                f"training loss is {epoch_loss} at epoch {epoch} ({desc}); lower trainer.lr or check the data"
            )
        bar.set_postfix(loss=f"{epoch_loss:.3f}", refresh=False)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return {"train_loss": epoch_loss, "train_time_s": time.perf_counter() - start}


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
    mc_probs (N, S, C) from S dropout masks on the classifier head (the trunk runs once)."""
    device = x.device
    amp = autocast_dtype(precision, device)
    normalize = Normalize(mean, std, device, use_channels_last(channels_last, device))
    was_training = model.training
    model.eval()
    if hooks is not None and hooks.module is not None:
        hooks.module.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, x.shape[0], batch_size):
        with _autocast(device, amp):
            out = model(normalize(x[start:start + batch_size]))
            extras = hooks.outputs(out) if hooks is not None else {}
            if mc_samples > 0:
                extras["mc_probs"] = torch.stack(
                    [torch.softmax(model.classify(out.embedding, mc=True).float(), 1) for _ in range(mc_samples)], 1
                )
        batch = {"logits": out.logits.float(), "embedding": out.embedding.float(), **{k: v.float() for k, v in extras.items()}}
        for key, value in batch.items():
            parts.setdefault(key, []).append(value)
    model.train(was_training)
    result = {k: torch.cat(v) for k, v in parts.items()}
    result["probs"] = torch.softmax(result["logits"], dim=1)
    return result


def evaluate(preds: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, float]:
    """Accuracy (fraction) and mean cross-entropy of a prediction pass."""
    loss = nn.functional.cross_entropy(preds["logits"], targets)
    acc = (preds["logits"].argmax(1) == targets).double().mean()
    return {"test_acc": float(acc), "test_loss": float(loss)}
