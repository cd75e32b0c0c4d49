"""Selection cost of every strategy as the candidate pool grows.

Every strategy in conf/strategy/*.yaml (composed by Hydra as `strategy=<word>`, values as shipped)
selects k from pools of 10k, 25k and 50k candidates (and a labeled set of 1,000), on the device, via a
real SelectionContext: a small random-weight backbone (dropout 0.3, so MC-dropout strategies work)
over synthetic 8x8 uint8 images, whose prediction pass returns realistic-size tensors: probs
(N, 10), embedding (N, 512), mc_probs (N, S, 10), stage outputs of 64/128/256/512 channels for
the training plugin (learning loss). Strategies with a training plugin get their auxiliary module
with random weights, and its after-epoch hooks are called as for a 200-epoch training without
steps (history records its predictions there). Image-space strategies (aral, vaal, gaal, asal,
vae_recon) see 8x8 images here: their 32x32 cost is 16x or more (the module docstrings say).

Realistic inputs: the images are 10 class templates plus noise, so the 512-D embeddings are
post-ReLU averages (non-negative, ResNet-18 avgpool-like: few exact zeros, class-clustered); the
classifier head is fitted to them, not random: a nearest-class-mean head on the labeled set's
embeddings with a temperature chosen so that the labeled set's mean top-class probability is about
0.75 (a partly trained model: confident and uncertain candidates, not uniform probabilities). The
first line of each size reports the embeddings' spread (mean norm, fraction of zeros, head accuracy).

Per strategy and pool size, printed: select_s (the strategy's own time: the call minus the time
inside the predictor), predict_s (the prediction passes it asked for beyond the ones warmed up
before timing: the candidates and the labeled set, with and without MC samples), and peak_mb (the
resident-memory peak during the call above the resident memory before it: Linux VmHWM reset
through /proc/self/clear_refs). The times come from a process with the C library's default
allocator, as a user's run has; the peak from a second process (the memory pass, same inputs and
seed) with MALLOC_MMAP_THRESHOLD_=65536, so that freed blocks leave the process and the peak is the
call's own. The two cannot share a process: under that threshold every block over 64 KB is a fresh
mmap whose pages fault in on first touch, which made strategies that allocate per step up to 2-4x
slower (dfal 10.8 s against 4.8 s at 10k); `--no-memory-pass` skips the second process and reports
the default allocator's peak from the timing process (approximate, marked "~": the allocator may
reuse blocks it kept from the warm-up passes, or keep freed ones).
Each strategy runs in its own process; one that fails, or exceeds --time-cap seconds on a size,
is reported as such and skipped on the larger sizes. `target` is the selection-time target at 10k
candidates (10 s; 60 s for bait, batchbald and batch_balance, see docs/performance.md) and `x_tgt` select_s over it.
Load from other processes inflates the times: compare strategies within one run, on a quiet machine.

    python scripts/bench_select.py                      # every strategy, 10k/25k/50k, k = 1000
    python scripts/bench_select.py --strategies coreset badge --sizes 10000 50000 --time-cap 300
    python scripts/bench_select.py --threads 2 --sizes 10000   # the 10k target on 2 threads
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf" / "strategy"
TARGET_S = {"bait": 60.0, "batchbald": 60.0, "batch_balance": 60.0}  # selection-time targets at 10k candidates; 10 s otherwise


def strategy_words(conf_dir: Path) -> list[str]:
    if not conf_dir.is_dir():  # installed without the source tree: the packaged configs
        import al_bench.conf

        conf_dir = Path(al_bench.conf.__file__).parent / "strategy"
    return sorted(p.stem for p in conf_dir.glob("*.yaml"))


# --- child: one strategy, every size ---------------------------------------------------------

def _status_mb(key: str) -> float:
    text = open("/proc/self/status").read()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args) -> None:
    import numpy as np
    import torch
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch import nn

    from al_bench.data.pool import make_pool
    from al_bench.models.base import Backbone
    from al_bench.strategies.base import SelectionContext
    from al_bench.training import TrainSettings, predict, resolve_device, train_context

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    class TinyBackbone(Backbone):
        """Random-weight stand-in for a trained ResNet-18: the same stage channels and embedding
        width on 8x8 inputs (stages at 4/2/2/2 pixels, the embedding an average over 2x2 positions as
        ResNet-18's over 4x4), ~0.7 MMACs per image."""

        def __init__(self, num_classes=10, in_channels=3, dropout=0.3):
            super().__init__(dropout)
            self.stage_channels, self.embed_dim = (64, 128, 256, 512), 512
            self.convs = nn.ModuleList([nn.Conv2d(in_channels, 64, 3, 2, 1), nn.Conv2d(64, 128, 1, 2),
                                        nn.Conv2d(128, 256, 1, 1), nn.Conv2d(256, 512, 1)])
            self.fc = nn.Linear(512, num_classes)

        def features(self, x):
            stages = []
            for conv in self.convs:
                x = torch.relu(conv(x))
                stages.append(x)
            return stages, torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    @torch.no_grad()
    def fit_head(model, pool, labeled, device):
        """A nearest-class-mean head on the labeled embeddings, its temperature set so that the labeled
        set's mean top-class probability is about 0.75; returns the embeddings' spread."""
        idx = torch.as_tensor(labeled, device=device)
        emb = predict(model, pool.train_x[idx], pool.mean, pool.std, 1024)["embedding"]
        y = pool.train_y[idx].long()
        means = torch.zeros(10, emb.shape[1], device=device).index_add_(0, y, emb)
        means /= torch.bincount(y, minlength=10).clamp_min(1)[:, None]
        w = means - means.mean(0)
        b = -0.5 * (means.pow(2).sum(1) - means.pow(2).sum(1).mean())  # w.x + b = -||x - m||^2 / 2 + const
        lo, hi = 1e-4, 1e2
        for _ in range(40):  # bisect the temperature on the mean top-class probability
            t = (lo * hi) ** 0.5
            top = torch.softmax(t * (emb @ w.T + b), 1).max(1).values.mean()
            lo, hi = (t, hi) if top < 0.75 else (lo, t)
        model.fc.weight.copy_(t * w)
        model.fc.bias.copy_(t * b)
        acc = float((model.fc(emb).argmax(1) == y).double().mean())
        return {"emb_norm": float(emb.norm(dim=1).mean()), "emb_zero": float((emb == 0).double().mean()),
                "head_acc": acc}

    with initialize_config_module(version_base="1.3", config_module="al_bench.conf"):
        cfg = compose("config", overrides=[f"strategy={args.child}"])  # applies the file's defaults list
    node = OmegaConf.to_container(cfg.strategy, resolve=True)
    node.pop("name", None)
    for n in args.sizes:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        n_pool = args.n_labeled + n
        y = rng.integers(0, 10, n_pool)
        templates = rng.integers(0, 256, (10, 8, 8, 3))
        x = np.clip(templates[y] + rng.normal(0, 130, (n_pool, 8, 8, 3)), 0, 255).astype(np.uint8)  # overlapping classes
        pool = make_pool("bench", x, y, x[:256], y[:256], [str(i) for i in range(10)], 10).to(device)
        labeled = np.arange(args.n_labeled)
        candidates = np.arange(args.n_labeled, n_pool)
        model = TinyBackbone().to(device).eval()
        spread = fit_head(model, pool, labeled, device)
        strategy = instantiate(node, _convert_="all")
        plugin = strategy.train_plugin()
        if plugin is not None:
            settings = TrainSettings()
            tctx = train_context(model, pool, labeled, settings, 0, torch.Generator(device=device), plugin)
            plugin.setup(model, tctx, False)
            for epoch in range(settings.epochs):  # what a plugin records during training (history), without steps
                plugin.after_epoch(epoch, tctx)
        spent = [0.0]

        def predict_images(images, mc_samples=0, model=model, pool=pool, plugin=plugin, spent=spent):
            t0 = time.perf_counter()
            out = predict(model, images, pool.mean, pool.std, 1024, plugin, mc_samples=mc_samples)
            spent[0] += time.perf_counter() - t0
            return out

        def predictor(indices, mc_samples=0, pool=pool, predict_images=predict_images):
            return predict_images(pool.train_x[torch.as_tensor(indices, device=device)], mc_samples)

        ctx = SelectionContext(model=model, pool=pool, labeled=labeled, device=device, predictor=predictor,
                               rng=np.random.default_rng(1), cycle=0, image_predictor=predict_images)
        mc = int(getattr(strategy, "mc_samples", 0) or 0)
        for m in sorted({0, mc}):
            ctx.predict(candidates, mc_samples=m)
        ctx.predict(labeled)
        warm_s, spent[0] = spent[0], 0.0
        del x, y
        exact_peak = _reset_peak()
        base = _status_mb("VmRSS")
        t0 = time.perf_counter()
        picks = np.asarray(strategy.select(ctx, candidates, args.k))
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
        peak = _status_mb("VmHWM") - base if exact_peak else float("nan")
        ok = picks.shape == (args.k,) and len(np.unique(picks)) == args.k and bool(np.isin(picks, candidates).all())
        print(json.dumps({"n": n, "select_s": total - spent[0], "predict_s": spent[0], "warm_predict_s": warm_s,
                          "peak_mb": peak, "valid": ok, **spread}), flush=True)
        del ctx, pool, model, strategy, plugin


# --- parent ----------------------------------------------------------------------------------

def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own group (start_new_session), by id
    except ProcessLookupError:
        pass


def run_strategy(word: str, args, sizes: list[int], memory: bool = False) -> dict[int, dict | str]:
    """{size: result dict or a failure string} for one strategy, sizes in increasing order; `memory`:
    the memory pass (freed blocks over 64 KB returned to the system at once)."""
    cmd = [sys.executable, __file__, "--child", word, "--k", str(args.k), "--n-labeled", str(args.n_labeled),
           "--threads", str(args.threads), "--device", args.device, "--sizes", *map(str, sizes)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if memory:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    errfile = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child must never block
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env,
                            start_new_session=True)  # its own process group: a kill takes its helpers too
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    results: dict[int, dict | str] = {}
    pending = list(sizes)
    deadline = time.monotonic() + args.time_cap + args.startup_s  # the first size also pays imports
    buf = ""
    while pending:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(timeout=left):
            _kill(proc)
            results[pending[0]] = f"timeout (> {args.time_cap:.0f} s)"
            for n in pending[1:]:
                results[n] = "skipped (smaller pool timed out)"
            break
        chunk = proc.stdout.readline()
        if not chunk:  # the child ended
            proc.wait()
            errfile.seek(0)
            err = [line for line in errfile.read().strip().splitlines() if line.strip()]
            why = err[-1][:160] if err else f"exit code {proc.returncode}"
            results[pending[0]] = f"failed: {why}"
            for n in pending[1:]:
                results[n] = "skipped (smaller pool failed)"
            break
        buf += chunk
        if not chunk.endswith("\n"):
            continue
        try:
            row = json.loads(buf)
        except json.JSONDecodeError:
            buf = ""
            continue
        buf = ""
        results[row["n"]] = row
        pending.remove(row["n"])
        deadline = time.monotonic() + args.time_cap
    proc.stdout.close()
    errfile.close()
    _kill(proc)
    proc.wait()
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", nargs="*", help="CLI words (default: every conf/strategy/*.yaml)")
    p.add_argument("--sizes", nargs="+", type=int, default=[10000, 25000, 50000], help="candidate pool sizes")
    p.add_argument("--k", type=int, default=1000, help="images selected")
    p.add_argument("--n-labeled", type=int, default=1000)
    p.add_argument("--time-cap", type=float, default=120.0, help="seconds per strategy and pool size")
    p.add_argument("--startup-s", type=float, default=60.0, help="extra seconds for a child's imports and data")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--memory-pass", action=argparse.BooleanOptionalAction, default=True,
                   help="peak_mb from a second process with MALLOC_MMAP_THRESHOLD_=65536 (default); "
                        "--no-memory-pass: from the timing process (default allocator, approximate)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = sorted(args.sizes)
    if args.child:
        child(args)
        return 0
    words = args.strategies or strategy_words(CONF)
    print(f"k={args.k}, labeled={args.n_labeled}, candidates {', '.join(map(str, args.sizes))}; "
          f"time cap {args.time_cap:.0f} s per size; load average {os.getloadavg()[0]:.1f}; times with the default "
          f"allocator, peak_mb " + ("from the memory pass" if args.memory_pass else "~ from the same process"))
    width = 42
    head = f"{'strategy':<26}{'target':>7}" + "".join(f"{'N=' + str(n):>{width}}" for n in args.sizes)
    print(head)
    print(f"{'':<33}" + "".join(f"{'select_s predict_s  peak_mb  x_tgt':>{width}}" for _ in args.sizes))
    spread_shown = False
    for word in words:
        res = run_strategy(word, args, args.sizes)
        done = [n for n in args.sizes if isinstance(res.get(n), dict)]
        if args.memory_pass and done:
            mem = run_strategy(word, args, done, memory=True)
            for n in done:
                m = mem.get(n)
                res[n]["peak_mb"] = m["peak_mb"] if isinstance(m, dict) else float("nan")
        else:
            for n in done:
                res[n]["approx_peak"] = True
        target = TARGET_S.get(word, 10.0)
        cells = []
        for n in args.sizes:
            r = res.get(n, "not run")
            if isinstance(r, dict):
                flag = "" if r["valid"] else " INVALID"
                peak = ("~" if r.get("approx_peak") else "") + f"{r['peak_mb']:.0f}"
                cells.append(f"{r['select_s']:>10.2f} {r['predict_s']:>9.2f} {peak:>8} "
                             f"{r['select_s'] / target:>6.2f}{flag}".rjust(width))
            else:
                cells.append(r[:width - 1].rjust(width))
        if not spread_shown:
            rows = [(n, r) for n, r in res.items() if isinstance(r, dict) and "emb_norm" in r]
            for n, r in rows:
                print(f"    inputs N={n}: embedding mean norm {r['emb_norm']:.1f}, zeros {100 * r['emb_zero']:.1f} %, "
                      f"head accuracy on the labeled set {100 * r['head_acc']:.0f} %")
            spread_shown = bool(rows)
        print(f"{word:<26}{target:>7.0f}" + "".join(cells), flush=True)
        for n in args.sizes:
            r = res.get(n)
            if isinstance(r, str) and r.startswith("failed"):
                print(f"    {word} N={n}: {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
