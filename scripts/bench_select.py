"""Selection cost of every strategy as the candidate pool grows.

Every strategy in conf/strategy/*.yaml (composed by Hydra as `strategy=<word>`, values as shipped)
selects k from pools of 10k, 25k and 50k candidates (and a labeled set of 1,000), on the device, via a
real SelectionContext: a small random-weight backbone (dropout 0.3, so MC-dropout strategies work)
over synthetic 8x8 uint8 images, whose prediction pass returns realistic-size tensors: probs
(N, 10), embedding (N, 512), mc_probs (N, S, 10), stage outputs of 64/128/256/512 channels for
the training plugin (learning loss). Strategies with a training plugin get their auxiliary module
with random weights.

Per strategy and pool size, printed: select_s (the strategy's own time: the call minus the time
inside the predictor), predict_s (the prediction passes it asked for beyond the ones warmed up
before timing: the candidates and the labeled set, with and without MC samples), and peak_mb (the
resident-memory peak during the call above the resident memory before it: Linux VmHWM reset
through /proc/self/clear_refs; with MALLOC_MMAP_THRESHOLD_ set so freed blocks leave the process).
Each strategy runs in its own process; one that fails, or exceeds --time-cap seconds on a size,
is reported as such and skipped on the larger sizes.

    python scripts/bench_select.py                      # every strategy, 10k/25k/50k, k = 1000
    python scripts/bench_select.py --strategies coreset badge --sizes 10000 50000 --time-cap 300
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
        width on 8x8 inputs (stages at 4/2/1/1 pixels), ~0.2 MMACs per image."""

        def __init__(self, num_classes=10, in_channels=3, dropout=0.3):
            super().__init__(dropout)
            self.stage_channels, self.embed_dim = (64, 128, 256, 512), 512
            self.convs = nn.ModuleList([nn.Conv2d(in_channels, 64, 3, 2, 1), nn.Conv2d(64, 128, 1, 2),
                                        nn.Conv2d(128, 256, 1, 2), nn.Conv2d(256, 512, 1)])
            self.fc = nn.Linear(512, num_classes)

        def features(self, x):
            stages = []
            for conv in self.convs:
                x = torch.relu(conv(x))
                stages.append(x)
            return stages, torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

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
        x = np.clip(templates[y] + rng.normal(0, 50, (n_pool, 8, 8, 3)), 0, 255).astype(np.uint8)
        pool = make_pool("bench", x, y, x[:256], y[:256], [str(i) for i in range(10)], 10).to(device)
        labeled = np.arange(args.n_labeled)
        candidates = np.arange(args.n_labeled, n_pool)
        model = TinyBackbone().to(device).eval()
        strategy = instantiate(node, _convert_="all")
        plugin = strategy.train_plugin()
        if plugin is not None:
            plugin.setup(model, train_context(model, pool, labeled, TrainSettings(), 0,
                                              torch.Generator(device=device), plugin), False)
        spent = [0.0]

        def predictor(indices, mc_samples=0, model=model, pool=pool, plugin=plugin, spent=spent):
            t0 = time.perf_counter()
            idx = torch.as_tensor(indices, device=device)
            out = predict(model, pool.train_x[idx], pool.mean, pool.std, 1024, plugin, mc_samples=mc_samples)
            spent[0] += time.perf_counter() - t0
            return out

        ctx = SelectionContext(model=model, pool=pool, labeled=labeled, device=device, predictor=predictor,
                               rng=np.random.default_rng(1), cycle=0)
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
                          "peak_mb": peak, "valid": ok}), flush=True)
        del ctx, pool, model, strategy, plugin


# --- parent ----------------------------------------------------------------------------------

def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own group (start_new_session), by id
    except ProcessLookupError:
        pass


def run_strategy(word: str, args) -> dict[int, dict | str]:
    """{size: result dict or a failure string} for one strategy, sizes in increasing order."""
    cmd = [sys.executable, __file__, "--child", word, "--k", str(args.k), "--n-labeled", str(args.n_labeled),
           "--threads", str(args.threads), "--device", args.device, "--sizes", *map(str, args.sizes)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    errfile = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child must never block
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env,
                            start_new_session=True)  # its own process group: a kill takes its helpers too
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    results: dict[int, dict | str] = {}
    pending = list(args.sizes)
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
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = sorted(args.sizes)
    if args.child:
        child(args)
        return 0
    words = args.strategies or strategy_words(CONF)
    print(f"k={args.k}, labeled={args.n_labeled}, candidates {', '.join(map(str, args.sizes))}; "
          f"time cap {args.time_cap:.0f} s per size; load average {os.getloadavg()[0]:.1f}")
    head = f"{'strategy':<26}" + "".join(f"{'N=' + str(n):>34}" for n in args.sizes)
    print(head)
    print(f"{'':<26}" + "".join(f"{'select_s predict_s  peak_mb':>34}" for _ in args.sizes))
    for word in words:
        res = run_strategy(word, args)
        cells = []
        for n in args.sizes:
            r = res.get(n, "not run")
            if isinstance(r, dict):
                flag = "" if r["valid"] else " INVALID"
                cells.append(f"{r['select_s']:>10.2f} {r['predict_s']:>9.2f} {r['peak_mb']:>8.0f}{flag}".rjust(34))
            else:
                cells.append(r[:33].rjust(34))
        print(f"{word:<26}" + "".join(cells), flush=True)
        for n in args.sizes:
            r = res.get(n)
            if isinstance(r, str) and r.startswith("failed"):
                print(f"    {word} N={n}: {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
