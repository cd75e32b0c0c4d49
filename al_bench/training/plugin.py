"""The training-plugin interface: how a method changes training without the trainer knowing it.

In the spirit of DomainBed's `Algorithm.update(minibatches, unlabeled)`: a strategy that changes
training returns a TrainingPlugin from `Strategy.train_plugin()`; the trainer (al_bench.training.fit)
calls it at fixed points and never asks which method runs. A plugin may

- own named modules, trainable or not (`modules()`), built or kept in `setup()` at each cycle,
  saved with the warm-start checkpoint (`state_dict()` / `load_state_dict()`);
- add optimisers for them (`optimizers()`: a factory such as a `_partial_` optimizer node from the
  config, or an {"name": "sgd"|"adam", "lr": ...} spec), following the backbone's lr schedule or not;
- supply the training set (`training_set()`: e.g. pseudo-labelled unlabeled images next to the
  labeled ones; labels of pool images that are not labeled never reach the loop's labeled set);
- ask for an unlabeled batch next to each labeled batch (`unlabeled_batch_size`);
- add a loss to the default update (`loss()`), or replace the per-batch update altogether
  (`update()`: e.g. alternating adversarial steps with several optimisers);
- keep state across steps and epochs (`after_step()`, `after_epoch()`: an EMA copy, per-epoch
  predictions);
- add per-sample outputs to the prediction pass (`outputs()`) and per-cycle metrics (`metrics()`).

The base class is the plain trainer: `TrainingPlugin()` adds nothing, and `update()` is the
default step (cross-entropy, plus `loss()`, one backward pass, every optimiser stepped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from al_bench.data.augment import Normalize, random_crop_flip
from al_bench.data.pool import Pool
from al_bench.training.device import use_channels_last
from al_bench.training.settings import TrainSettings


@dataclass
class OptimizerSpec:
    """An optimiser a plugin asks for: over `params`, built by `factory(params)` (a `_partial_`
    config node) or from `spec` ({"name": "sgd"|"adam", "lr": ..., ...}; missing keys are the
    backbone's), its lr following the trainer's schedule when `scheduled`."""

    params: Any
    spec: dict | None = None
    factory: Callable[..., torch.optim.Optimizer] | None = None
    scheduled: bool = True


@dataclass
class TrainContext:
    """What a plugin may use around training one cycle."""

    pool: Pool  # on the training device
    labeled: np.ndarray  # pool indices labeled this cycle
    settings: TrainSettings
    cycle: int
    generator: torch.Generator  # the cycle's training generator (order, augmentation)
    predict: Callable[[np.ndarray], dict[str, torch.Tensor]]  # eval-mode pass over pool indices

    def batch_maker(self, generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """Pool rows -> a normalised batch with the trainer's augmentation drawn from `generator`: the
        trainer's own recipe (fit makes its batches with it), for plugins' extra batches and views."""
        s, x = self.settings, self.pool.train_x
        normalize = Normalize(self.pool.mean, self.pool.std, x.device, use_channels_last(s.channels_last, x.device))

        def make(rows: torch.Tensor) -> torch.Tensor:
            xb = x[rows]
            if s.augment:
                xb = random_crop_flip(xb, s.crop_padding, s.flip, generator)
            return normalize(xb)

        return make

    @property
    def device(self) -> torch.device:
        return self.pool.train_x.device

    @property
    def unlabeled(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.pool.n_train), self.labeled)


@dataclass
class Step:
    """One training step's inputs and tools, handed to `TrainingPlugin.update`."""

    model: nn.Module
    forward: Callable  # the model's (possibly compiled) forward
    x: torch.Tensor  # normalised, augmented batch on the device
    y: torch.Tensor  # its labels (true, or a plugin's pseudo-labels)
    index: torch.Tensor  # its pool indices
    epoch: int  # 0-based
    optimizers: dict[str, torch.optim.Optimizer]  # "backbone" and the plugin's, by name
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]
    unlabeled_x: torch.Tensor | None = None  # normalised, augmented unlabeled batch when asked for
    unlabeled_index: torch.Tensor | None = None
    logs: dict[str, torch.Tensor] = field(default_factory=dict)

    def apply(self, loss: torch.Tensor) -> None:
        """Backward of `loss` and one step of every optimizer (through the loss scaler)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()


class TrainingPlugin:
    """A method's changes to training; the base class changes nothing (see the module docstring)."""

    unlabeled_batch_size: int = 0  # > 0: each step also gets this many unlabeled images

    def setup(self, model: nn.Module, ctx: TrainContext, warm_start: bool) -> None:
        """Before each cycle's training: build the modules, or keep them (warm start)."""

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        return {}

    def training_set(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(pool indices, labels) to train on this cycle; None = the labeled set with its labels."""
        return None

    def loss(self, out, target_loss: torch.Tensor, step: Step) -> torch.Tensor | None:
        """A loss added to the mean target loss by the default update (None: nothing)."""
        return None

    def update(self, step: Step) -> torch.Tensor:
        """One optimisation step; returns the per-sample target losses (detached). Scalars put in
        `step.logs` are summed over the epoch and checked for NaN/inf like the target loss."""
        with step.autocast():
            out = step.forward(step.x)
            target_loss = nn.functional.cross_entropy(out.logits.float(), step.y, reduction="none")
            loss = target_loss.mean()
            extra = self.loss(out, target_loss, step)
            if extra is not None:
                loss = loss + extra
                step.logs["plugin_loss"] = extra.detach()
        step.apply(loss)
        return target_loss.detach()

    def after_step(self, step: Step) -> None:
        pass

    def after_epoch(self, epoch: int, ctx: TrainContext) -> None:
        pass

    def outputs(self, out, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra per-sample predictions for the prediction pass: `out` the model's output (fp32
        features, eval mode), `x` the normalised input batch (e.g. for a second network)."""
        return {}

    def metrics(self, preds: dict[str, torch.Tensor], targets: torch.Tensor) -> dict[str, float]:
        """Extra per-cycle metrics on the test set, from its prediction pass."""
        return {}

    def describe(self, settings: TrainSettings) -> dict:
        """What the plugin's settings come to under `settings`, for run.json."""
        return {}

    def state_dict(self) -> dict:
        return {name: module.state_dict() for name, module in self.modules().items()}

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
