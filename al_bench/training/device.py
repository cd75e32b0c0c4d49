"""The device and precision policy: which device, which autocast dtype, which memory format.

precision "auto" = fp32 (TF32 convolutions) on Ampere and newer GPUs, fp16 + GradScaler on older
GPUs, bf16 autocast on CPUs with AMX-BF16, fp32 on other CPUs; channels_last "auto" = on.
docs/performance.md has the measurements behind the defaults.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from al_bench import ConfigError

if TYPE_CHECKING:
    from al_bench.training.settings import TrainSettings


def resolve_device(name: str, job_index: int | None = None) -> torch.device:
    """trainer.device as a torch device. "auto" = CUDA when there is a GPU, on GPU
    `job_index mod n_gpus` for the jobs of a sweep (several runs packed onto each visible GPU,
    docs/cluster.md), the current GPU for a single run; else the CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if job_index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cuda", gpu_for_job(job_index, torch.cuda.device_count()))
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown trainer.device={name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported trainer.device={name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use trainer.device=auto or cpu")
    if device.index is None:  # "cuda": the current GPU, with its index (torch.cuda.set_device needs one)
        return torch.device("cuda", torch.cuda.current_device())
    n_gpus = torch.cuda.device_count()
    if device.index >= n_gpus:
        raise ConfigError(f"trainer.device={name} but this machine has {n_gpus} GPU(s): cuda:0 to cuda:{n_gpus - 1}")
    return device


def gpu_for_job(job_index: int, n_gpus: int) -> int:
    """The GPU of a sweep's job: round robin over the visible GPUs, so n_jobs = R x n_gpus parallel
    workers start R runs on each GPU. Deterministic in the job's index (not in which GPU is free), so
    a rerun of the sweep puts each run where it was."""
    if n_gpus < 1:
        raise ValueError(f"no GPU to place job {job_index} on")
    return job_index % n_gpus


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

    "auto": on CUDA GPUs of compute capability 8.0 and newer (Ampere, Hopper...) fp32, whose
    convolutions run on TF32 tensor cores (cuDNN's default): on an H200 a ResNet-18 step at batch 128
    took 0.011 s in fp32 against 0.014 s under bf16 autocast (launch-bound: autocast's casts add
    kernels, docs/performance.md); on older GPUs (V100, T4: no TF32, no native bf16) fp16 with loss
    scaling. On CPU bf16 where the CPU has AMX-BF16 (a ResNet-18 training step measured 2.7-2.9x
    faster than fp32), else fp32 (bf16 without AMX is emulated and slower).
    """
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        if device.type == "cuda":
            return None if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
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


def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
