"""Training: fit / predict / evaluate on device-resident tensors, the device and precision
policy, and the training-plugin interface through which methods change training."""

from al_bench.training.device import autocast_dtype, resolve_device, resolved_knobs, use_channels_last
from al_bench.training.fit import TrainingDiverged, evaluate, fit, make_optimizer, predict, train_context
from al_bench.training.plugin import OptimizerSpec, Step, TrainContext, TrainingPlugin
from al_bench.training.settings import TrainSettings, lr_at_epoch, lr_summary

__all__ = ["OptimizerSpec", "Step", "TrainContext", "TrainSettings", "TrainingDiverged", "TrainingPlugin",
           "autocast_dtype", "evaluate", "fit", "lr_at_epoch", "lr_summary", "make_optimizer", "predict",
           "resolve_device", "resolved_knobs", "train_context", "use_channels_last"]
