"""Training throughput: al-bench's trainer against a reference-style PIL + DataLoader pipeline.

Both train the CIFAR ResNet-18 with the loss-prediction module of Yoo & Kweon 2019 (ranking loss,
lambda = 1, margin 1) on the same labeled subset, batch 128, SGD lr 0.1 momentum 0.9 wd 5e-4:

  al-bench   al_bench.training.fit with its defaults (uint8 images on the device, batched crop/flip and
             normalisation there, precision and channels_last "auto") and the learning-loss plugin;
  reference  a torchvision-style dataset over the same uint8 images, PIL RandomCrop(32, padding=4) +
             RandomHorizontalFlip + ToTensor + Normalize, a DataLoader with a random subset sampler,
             fp32, NCHW: the public LL4AL code's pipeline.

The two alternate on the same device, `--rounds` times (round r: both start from the same
initial weights, seed r; which goes first alternates), so machine noise hits both alike. Printed:
images/s of each per round, their ratio, the median ratio, achieved FLOP/s against the device's
nominal peak, the test accuracy of both after the same epochs (mean +- std over rounds), and a
breakdown of where the time goes.

    python scripts/bench_train.py                       # JPEG CIFAR-10 copy, 1000 images, 2 epochs
    python scripts/bench_train.py --synthetic           # no data needed
    python scripts/bench_train.py --n-labeled 2000 --epochs 10 --rounds 3 --n-test 10000

Evidence (docs/performance.md; 2-core Sapphire Rapids VM shared with other jobs, JPEG CIFAR-10,
1000 images, 2 epochs): al-bench 148 img/s, reference 58 img/s, median ratio 2.57 (2 threads) and
2.69 (1 thread); at width 16 over 12 seeds, 15 epochs: ratio ~2.0-2.1, test accuracy 0.3145 +- 0.022
(al-bench) vs 0.3161 +- 0.027 (reference). On CPU the gain is bf16 on AMX + channels_last; the
device-side data path is cheap (5 ms per batch against 40 ms of PIL transforms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from al_bench.data.augment import Normalize, random_crop_flip
from al_bench.data.pool import Pool, make_pool
from al_bench.models.lossnet import LossPredictionModule
from al_bench.models.resnet import ResNet18
from al_bench.strategies.lloss import LearningLoss, ranking_loss
from al_bench.training import TrainSettings, evaluate, fit, predict, resolve_device, resolved_knobs, train_context

# The JPEG copy of CIFAR-10 beside the repository (../shared/data), or --tar.
TAR = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz")

# Nominal dense peaks in FLOP/s (vendor data sheets; SXM parts), by substring of the device name.
GPU_PEAKS = {  # name: (fp32 non-tensor, bf16/fp16 tensor, tf32 tensor or None)
    "H200": (67e12, 989e12, 495e12), "H100": (67e12, 989e12, 495e12), "A100": (19.5e12, 312e12, 156e12),
    "L40S": (91.6e12, 362e12, 183e12), "A10": (31.2e12, 125e12, 62.5e12), "V100": (15.7e12, 125e12, None),
    "T4": (8.1e12, 65e12, None),
}


# --- data ------------------------------------------------------------------------------------

def load_pool(args) -> Pool:
    if args.synthetic:
        rng = np.random.default_rng(0)
        templates = rng.uniform(30, 225, size=(10, 32, 32, 3))
        def draw(n):
            y = np.arange(n) % 10
            x = templates[y] + rng.normal(0, 60, size=(n, 32, 32, 3))
            return np.clip(np.rint(x), 0, 255).astype(np.uint8), y
        (tx, ty), (vx, vy) = draw(50000), draw(10000)
        return make_pool("synthetic32", tx, ty, vx, vy, [str(i) for i in range(10)], 10)
    from al_bench.data.imagefolder import imagefolder

    root = Path(args.data_root)
    if not (root / "train").is_dir():
        print(f"extracting {args.tar} into {root.parent} ...", flush=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.tar) as tar:
            tar.extractall(root.parent, filter="data")
    return imagefolder(str(root), cache_dir=args.cache_dir, name="cifar10-jpeg")


class UInt8Dataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL -> transform."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


# --- the learning-loss plugin ------------------------------------------------------------------

def learning_loss_plugin(model, pool_dev, labeled, settings, gen):
    """The project's learning-loss training plugin (al_bench/strategies/lloss.py), set up for one cycle."""
    plugin = LearningLoss().train_plugin()
    plugin.setup(model, train_context(model, pool_dev, labeled, settings, 0, gen, plugin), warm_start=False)
    return plugin


# --- the two pipelines -----------------------------------------------------------------------

def new_model(args, seed, device):
    torch.manual_seed(seed)
    model = ResNet18(10, width=args.width).to(device)
    module = LossPredictionModule(model.stage_channels).to(device)
    return model, module


def run_albench(args, pool_dev, labeled, seed, device, evaluate_too=True):
    model, module = new_model(args, seed, device)
    settings = TrainSettings(epochs=args.epochs, milestones=[], progress=False)  # every other knob: the defaults
    if args.precision is not None:  # a control run only; the benchmark itself uses the defaults
        settings.precision = args.precision
    if args.channels_last is not None:
        settings.channels_last = args.channels_last == "true"
    gen = torch.Generator(device=device).manual_seed(seed)
    plugin = learning_loss_plugin(model, pool_dev, labeled, settings, gen)
    plugin.module.load_state_dict(module.state_dict())  # the same module weights as the reference
    sync(device)
    t0 = time.perf_counter()
    fit(model, pool_dev, labeled, settings, gen, plugin)
    sync(device)
    train_s = time.perf_counter() - t0
    if not evaluate_too:
        return train_s, 0.0, float("nan")
    t0 = time.perf_counter()
    preds = predict(model, pool_dev.test_x, pool_dev.mean, pool_dev.std, settings.eval_batch_size, plugin,
                    precision=settings.precision, channels_last=settings.channels_last)
    acc = evaluate(preds, pool_dev.test_y)["test_acc"]
    sync(device)
    return train_s, time.perf_counter() - t0, acc


def run_reference(args, pool, labeled, seed, device, evaluate_too=True):
    model, module = new_model(args, seed, device)
    norm = T.Normalize(pool.mean, pool.std)
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.ToTensor(), norm])
    train_set = UInt8Dataset(pool.train_x.numpy(), pool.train_y.numpy(), train_tf)
    test_set = UInt8Dataset(pool.test_x.numpy(), pool.test_y.numpy(), test_tf)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the transforms draw from the global generator
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, sampler=torch.utils.data.SubsetRandomSampler(labeled.tolist(), gen),
        num_workers=args.ref_workers, pin_memory=device.type == "cuda", persistent_workers=False)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for m in (model, module)]
    rank = ranking_loss
    data_s = 0.0
    sync(device)
    t0 = time.perf_counter()
    model.train(), module.train()
    for _ in range(args.epochs):
        t_data = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            data_s += time.perf_counter() - t_data
            out = model(x)
            target = nn.functional.cross_entropy(out.logits, y, reduction="none")
            loss = target.mean() + rank(module(out.stages), target)
            for o in opts:
                o.zero_grad()
            loss.backward()
            for o in opts:
                o.step()
            t_data = time.perf_counter()
    sync(device)
    train_s = time.perf_counter() - t0
    if not evaluate_too:
        return train_s, 0.0, float("nan"), data_s
    t0 = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test_set, batch_size=1000, num_workers=args.ref_workers):
            correct += int((model(x.to(device)).logits.argmax(1).cpu() == y).sum())
    sync(device)
    return train_s, time.perf_counter() - t0, correct / len(test_set), data_s


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- FLOPs and peaks -------------------------------------------------------------------------

def forward_macs(model: nn.Module, device) -> float:
    """Multiply-accumulates of one 32x32 forward pass, counted from the conv and linear layers."""
    macs = []

    def count(m, inp, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            macs.append(out.numel() * m.in_features)

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32, device=device))
    for h in handles:
        h.remove()
    return float(sum(macs))


def cpu_ghz() -> float | None:
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
        return max(mhz) / 1000 if mhz else None
    except OSError:
        return None


def device_peak(device, precision: str) -> tuple[float | None, str]:
    """Nominal dense peak FLOP/s of what the pipeline can use, and how it was obtained."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (fp32, tensor, tf32) in GPU_PEAKS.items():
            if key in name:
                if precision != "fp32":
                    return tensor, f"{name} data sheet"
                if tf32 is not None and torch.backends.cudnn.allow_tf32:  # cuDNN's default: fp32 convs on TF32
                    return tf32, f"{name} data sheet, TF32 tensor cores (cudnn.allow_tf32)"
                return fp32, f"{name} data sheet"
        return None, f"{name}: peak unknown"
    ghz, threads = cpu_ghz(), torch.get_num_threads()
    if ghz is None:
        return None, "CPU clock unknown"
    flags = open("/proc/cpuinfo").read()
    if precision == "bf16" and "amx_bf16" in flags:
        per_cycle, what = 1024, "AMX-BF16 1024 FLOP/cycle/core"
    elif "avx512f" in flags:
        per_cycle, what = 64, "2 AVX-512 FMA units, 64 fp32 FLOP/cycle/core"
    else:
        per_cycle, what = 32, "2 AVX2 FMA units, 32 fp32 FLOP/cycle/core"
    return ghz * 1e9 * threads * per_cycle, f"nominal: {threads} cores x {ghz:.2f} GHz x {what}"


# --- where the time goes ---------------------------------------------------------------------

def data_path_costs(pool, pool_dev, labeled, args, device, channels_last) -> dict:
    """Seconds per batch of the two data paths alone: al-bench's gather + crop/flip + normalise on
    the device, and the reference's PIL transforms + collation (one DataLoader batch, 0 workers)."""
    gen = torch.Generator(device=device).manual_seed(0)
    idx = torch.as_tensor(labeled[:args.batch_size], device=device)
    normalize = Normalize(pool.mean, pool.std, device, channels_last)
    reps = 20
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        normalize(random_crop_flip(pool_dev.train_x[idx], 4, True, gen))
    sync(device)
    ours = (time.perf_counter() - t0) / reps
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(pool.mean, pool.std)])
    ds = UInt8Dataset(pool.train_x.numpy(), pool.train_y.numpy(), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=labeled[:args.batch_size * 4].tolist())
    t0 = time.perf_counter()
    n = 0
    for _ in loader:
        n += 1
    ref = (time.perf_counter() - t0) / n
    return {"albench_data_s_per_batch": ours, "reference_data_s_per_batch": ref}


def step_costs(args, device, reps: int = 3) -> dict:
    """Seconds per training step (batch 128, forward + backward + SGD, model + loss module) of
    fp32/bf16 x NCHW/channels_last on random inputs, alternating; the min over reps."""
    model, module = new_model(args, 0, device)
    opt = torch.optim.SGD(list(model.parameters()) + list(module.parameters()), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    rank = ranking_loss
    configs = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    times = {c: [] for c in configs}
    for _ in range(reps):
        for prec, cl in configs:
            model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            xx = x.contiguous(memory_format=torch.channels_last) if cl else x
            amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=prec == "bf16")
            for i in range(2):  # the first step of a configuration warms oneDNN's primitive cache
                sync(device)
                t0 = time.perf_counter()
                with amp:
                    out = model(xx)
                    target = nn.functional.cross_entropy(out.logits.float(), y, reduction="none")
                    loss = target.mean() + rank(module(out.stages).float(), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sync(device)
                if i:
                    times[(prec, cl)].append(time.perf_counter() - t0)
    return {f"{p}{' channels_last' if cl else ' NCHW'}": min(v) for (p, cl), v in times.items()}


# --- main ------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synthetic", action="store_true", help="CIFAR-sized random-template data instead of the JPEG copy")
    p.add_argument("--tar", default=TAR, help="the JPEG CIFAR-10 archive, extracted once next to --data-root")
    p.add_argument("--data-root", default="/tmp/albench_data/cifar10-jpeg", help="train/<class>/*.jpg, test/<class>/*.jpg")
    p.add_argument("--cache-dir", default="/tmp/albench_data/cache", help="decoded-image cache of the image folder")
    p.add_argument("--n-labeled", type=int, default=1000, help="labeled subset size (images)")
    p.add_argument("--n-test", type=int, default=1000, help="test images evaluated (first N of a fixed shuffle)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; round r uses seed first_seed + r")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=64, help="ResNet-18 first-stage channels (paper: 64)")
    p.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers of the reference (LL4AL code: 0)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="override al-bench's precision (control runs)")
    p.add_argument("--channels-last", choices=["true", "false"],
                   help="override al-bench's channels_last (control runs)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the where-the-time-goes measurements")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    pool = load_pool(args)
    order = np.random.default_rng(0).permutation(len(pool.test_y))[:args.n_test]
    pool = Pool(pool.name, pool.train_x, pool.train_y, pool.test_x[order], pool.test_y[order],
                pool.num_classes, pool.mean, pool.std, pool.classes)
    labeled = np.sort(np.random.default_rng(0).choice(pool.n_train, size=args.n_labeled, replace=False))
    pool_dev = pool.to(device)
    cl = "auto" if args.channels_last is None else args.channels_last == "true"
    knobs = resolved_knobs(TrainSettings(precision=args.precision or "auto", channels_last=cl), device)
    macs = forward_macs(ResNet18(10, width=args.width).to(device), device)
    train_flop_per_img = 3 * 2 * macs  # forward + backward ~ 3 forwards; 2 FLOP per MAC

    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"data: {pool.name}, labeled {args.n_labeled}, test {len(pool.test_y)}, epochs {args.epochs}, "
          f"batch {args.batch_size}, ResNet-18 width {args.width} ({macs / 1e9:.3f} GMACs/image forward)")
    overridden = args.precision is not None or args.channels_last is not None
    print(f"al-bench {'OVERRIDDEN' if overridden else 'defaults'} here: precision={knobs['precision']} "
          f"channels_last={knobs['channels_last']} "
          f"eval_batch_size={TrainSettings().eval_batch_size}; reference: PIL transforms, DataLoader "
          f"workers={args.ref_workers}, fp32, NCHW")
    n_img = args.n_labeled * args.epochs
    # Untimed warm-up of both pipelines (one epoch on two batches): one-time costs of the process
    # (the first optimizer step imports torch._dynamo, ~4 s here; oneDNN builds its kernels per
    # shape and format) would otherwise all fall on whichever pipeline runs first.
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    run_albench(warm, pool_dev, labeled[:2 * args.batch_size], 0, device, evaluate_too=False)
    run_reference(warm, pool, labeled[:2 * args.batch_size], 0, device, evaluate_too=False)
    rows = []
    for r in range(args.first_seed, args.first_seed + args.rounds):
        res = {}
        first_ours = r % 2 == 0
        for which in (("albench", "reference") if first_ours else ("reference", "albench")):
            if which == "albench":
                res[which] = run_albench(args, pool_dev, labeled, r, device)
            else:
                res[which] = run_reference(args, pool, labeled, r, device)
        a, ref = res["albench"], res["reference"]
        rows.append((a, ref))
        print(f"round {r}: al-bench {n_img / a[0]:7.1f} img/s (test_acc {a[2]:.4f}, eval {len(pool.test_y) / a[1]:.0f} img/s) | "
              f"reference {n_img / ref[0]:7.1f} img/s (test_acc {ref[2]:.4f}, eval {len(pool.test_y) / ref[1]:.0f} img/s, "
              f"data {100 * ref[3] / ref[0]:.0f}% of its time) | ratio {ref[0] / a[0]:.2f}", flush=True)
    ratios = [ref[0] / a[0] for a, ref in rows]
    a_rate = statistics.median(n_img / a[0] for a, _ in rows)
    r_rate = statistics.median(n_img / ref[0] for _, ref in rows)
    print(f"median: al-bench {a_rate:.1f} img/s, reference {r_rate:.1f} img/s, ratio {statistics.median(ratios):.2f} "
          f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")
    for name, rate, prec in (("al-bench", a_rate, knobs["precision"]), ("reference", r_rate, "fp32")):
        peak, how = device_peak(device, prec)
        if peak:
            frac = f" = {100 * rate * train_flop_per_img / peak:.1f}% of {peak / 1e12:.2f} TFLOP/s ({prec}; {how})"
        else:
            frac = f" ({how})"
        print(f"achieved {name}: {rate * train_flop_per_img / 1e12:.3f} TFLOP/s{frac}")
    acc_a = [a[2] for a, _ in rows]
    acc_r = [ref[2] for _, ref in rows]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
    print(f"test_acc after {args.epochs} epochs: al-bench {statistics.mean(acc_a):.4f} +- {sd(acc_a):.4f}, "
          f"reference {statistics.mean(acc_r):.4f} +- {sd(acc_r):.4f} (mean +- std over {args.rounds} rounds)")
    if not args.no_breakdown:
        costs = data_path_costs(pool, pool_dev, labeled, args, device, knobs["channels_last"])
        steps = step_costs(args, device)
        print(f"where the time goes (s per batch of {args.batch_size}): data path al-bench "
              f"{costs['albench_data_s_per_batch']:.4f}, reference {costs['reference_data_s_per_batch']:.4f}; "
              f"training step " + ", ".join(f"{k} {v:.3f}" for k, v in steps.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
