"""Several runs packed onto each GPU: total training throughput for R = 1, 2, 4, 8 runs at once.

Each of R processes trains the CIFAR ResNet-18 with the learning-loss plugin (al-bench's `fit`, its
default precision and memory format) on its own copy of CIFAR-sized synthetic data, on GPU
`gpu_for_job(i, n_gpus)`, the placement a packed sweep uses (docs/cluster.md). After one warm-up
epoch every process waits at a barrier, then trains `--epochs` epochs; printed per R: the images per
second of all runs together (images / wall time of the timed window), per run, and the speed-up over
R = 1.

    python scripts/bench_packed.py                          # R = 1 2 4 8 on the visible GPUs
    python scripts/bench_packed.py --runs 1 2 --epochs 1 --n-labeled 500 --width 16   # a CPU smoke run
    python scripts/bench_packed.py --runs 1 --compile       # torch.compile (its compilation: the warm-up epoch)
    python scripts/bench_packed.py --runs 1 --compile reduce-overhead   # torch.compile with CUDA graphs
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time

import numpy as np
import torch

from al_bench.data.pool import make_pool
from al_bench.models.resnet import ResNet18
from al_bench.strategies.lloss import LearningLoss
from al_bench.training import TrainSettings, fit, train_context
from al_bench.training.device import gpu_for_job


def synthetic_pool(n: int, seed: int):
    rng = np.random.default_rng(seed)
    templates = rng.uniform(30, 225, size=(10, 32, 32, 3))
    y = np.arange(n) % 10
    x = np.clip(np.rint(templates[y] + rng.normal(0, 60, size=(n, 32, 32, 3))), 0, 255).astype(np.uint8)
    return make_pool("synthetic32", x, y, x[:100], y[:100], [str(i) for i in range(10)], 10)


def worker(job: int, args, barrier, results) -> None:
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        device = torch.device("cuda", gpu_for_job(job, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    pool = synthetic_pool(args.n_labeled, seed=job).to(device)
    labeled = np.arange(args.n_labeled)
    torch.manual_seed(job)
    model = ResNet18(10, width=args.width).to(device)
    gen = torch.Generator(device=device).manual_seed(job)

    def train(epochs: int) -> None:
        settings = TrainSettings(epochs=epochs, milestones=[], progress=False, compile=args.compile,
                                 precision=args.precision)
        plugin = LearningLoss().train_plugin()
        plugin.setup(model, train_context(model, pool, labeled, settings, 0, gen, plugin), warm_start=False)
        fit(model, pool, labeled, settings, gen, plugin)

    warm = time.perf_counter()
    train(1)  # warm-up: cuDNN autotuning, allocator, kernels (and torch.compile's compilation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    warm = time.perf_counter() - warm
    barrier.wait()
    start = time.perf_counter()
    train(args.epochs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    results.put((job, str(device), start, time.perf_counter(), args.epochs * args.n_labeled, warm))


def measure(r: int, args) -> dict:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(r), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(j, args, barrier, results)) for j in range(r)]
    for p in procs:
        p.start()
    rows = [results.get() for _ in procs]
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a worker of R={r} failed")
    wall = max(row[3] for row in rows) - min(row[2] for row in rows)
    images = sum(row[4] for row in rows)
    return {"runs": r, "devices": sorted({row[1] for row in rows}), "img_s": images / wall,
            "per_run": [row[4] / (row[3] - row[2]) for row in sorted(rows)], "warm_s": max(row[5] for row in rows)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4, 8], help="runs packed at once (R)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    p.add_argument("--n-labeled", type=int, default=10000, help="images per run (the paper's last cycle: 10,000)")
    p.add_argument("--width", type=int, default=64, help="ResNet-18 first-stage channels (paper: 64)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="trainer.precision (auto: fp32/TF32 on Ampere+ GPUs, fp16 on older ones)")
    p.add_argument("--compile", nargs="?", const=True, default=False,
                   choices=[True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                   help="trainer.compile: torch.compile the backbone (bare: mode default; reduce-overhead: CUDA graphs)")
    args = p.parse_args(argv)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"devices: {n_gpus} GPU(s)" + (f" ({torch.cuda.get_device_name(0)})" if n_gpus else ", CPU only")
          + f"; precision {args.precision}, compile {args.compile}, {args.n_labeled} images x {args.epochs} epochs",
          flush=True)
    base = None
    for r in args.runs:
        row = measure(r, args)
        base = base or row["img_s"]
        per_run = ", ".join(f"{v:.0f}" for v in row["per_run"])
        print(f"R={r}: {row['img_s']:.0f} img/s together ({row['img_s'] / base:.2f}x R=1) on {row['devices']}; "
              f"per run {per_run}; warm-up epoch {row['warm_s']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
