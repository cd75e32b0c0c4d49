"""The trainer's settings (conf/trainer/*.yaml) and the learning-rate schedule they define.

Every field's type and range is declared here once (`Annotated` constraints); al_bench.config
validates the composed config against it before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Lt

from al_bench.schema import PositiveFloat, PositiveInt


@dataclass
class TrainSettings:
    """How each cycle trains; paper values in conf/trainer/paper.yaml."""

    epochs: PositiveInt = 200
    batch_size: PositiveInt = 128
    optimizer: Literal["sgd", "adam"] = "sgd"  # the backbone's; adam ignores momentum
    lr: PositiveFloat = 0.1
    momentum: Annotated[float, Ge(0), Lt(1)] = 0.9
    weight_decay: Annotated[float, Ge(0)] = 5e-4
    milestones: list[PositiveInt] = field(default_factory=lambda: [160])  # epochs; each < epochs
    gamma: Annotated[float, Gt(0)] = 0.1  # lr factor at each milestone
    # "epoch_end": scheduler stepped after each epoch (lr drops after `milestone` epochs: 160 + 40);
    # "epoch_start": stepped before each epoch, as the public LL4AL code does (159 + 41)
    sched_step: Literal["epoch_end", "epoch_start"] = "epoch_end"
    warm_start: bool = False  # keep training one model across cycles instead of a fresh one per cycle
    augment: bool = True
    # per-channel normalisation of pixel values in [0, 1]; None = the training set's own statistics
    norm_mean: list[float] | None = None
    norm_std: list[PositiveFloat] | None = None
    crop_padding: Annotated[int, Ge(0)] = 4  # pixels
    flip: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Annotated[int, Ge(1)] | None = None  # CPU threads for torch; None = torch's default
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # autocast; fp16 with a GradScaler
    channels_last: bool | Literal["auto"] = "auto"  # auto: on (NHWC model and inputs) on every device
    # torch.compile the backbone for training: true = torch's "default" mode; "reduce-overhead" adds CUDA
    # graphs (on a GPU: what attacks a launch-bound step); the other names are torch.compile's modes
    compile: bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = False
    eval_batch_size: PositiveInt = 1024  # images per batch at evaluation and selection
    eval_every: Annotated[int, Ge(0)] = 0  # epochs; 0 = only at the end of the cycle (by the caller)
    progress: bool = True

    def check(self) -> None:
        """Checks across fields (ranges of single fields are in the annotations)."""
        from al_bench import ConfigError

        late = [m for m in self.milestones if m >= self.epochs]
        if late:
            raise ConfigError(f"trainer.milestones={self.milestones} must lie inside trainer.epochs={self.epochs} "
                              f"(epoch counts after which the lr drops); set e.g. trainer.milestones="
                              f"[{max(1, int(self.epochs * 0.8))}], or [] for a constant lr")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"trainer.device={self.device!r} is not accepted: expected auto, cpu, cuda or cuda:N")
        if (self.norm_mean is None) != (self.norm_std is None) or \
                self.norm_mean is not None and len(self.norm_mean) != len(self.norm_std):
            raise ConfigError(f"trainer.norm_mean={self.norm_mean} and trainer.norm_std={self.norm_std} must be given "
                              f"together, one value per channel (or both null: the training set's statistics)")
        if self.eval_every > self.epochs:
            raise ConfigError(f"trainer.eval_every={self.eval_every} is larger than trainer.epochs={self.epochs}")


def lr_at_epoch(epoch: int, base_lr: float, milestones, gamma: float, sched_step: str) -> float:
    """The learning rate used during 0-based `epoch`.

    "epoch_end" is MultiStepLR stepped after each epoch: lr * gamma^(number of milestones <= epoch).
    "epoch_start" is MultiStepLR stepped once before each epoch (so it has been stepped epoch + 1
    times when the epoch trains): lr * gamma^(number of milestones <= epoch + 1).
    """
    steps = epoch + 1 if sched_step == "epoch_start" else epoch
    return base_lr * gamma ** sum(1 for m in milestones if m <= steps)


def lr_summary(settings: TrainSettings) -> str:
    """E.g. "0.1 x160, 0.01 x40": the per-epoch lr actually used, run-length encoded."""
    runs: list[list] = []
    for epoch in range(settings.epochs):
        lr = lr_at_epoch(epoch, settings.lr, settings.milestones, settings.gamma, settings.sched_step)
        if runs and abs(runs[-1][0] - lr) <= 1e-12 * max(abs(lr), 1.0):
            runs[-1][1] += 1
        else:
            runs.append([lr, 1])
    return ", ".join(f"{lr:g} x{n}" for lr, n in runs)
