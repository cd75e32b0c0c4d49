#!/usr/bin/env bash
# The GPU checks, in one go on a CUDA machine (each phase under its own time limit, so one that hangs
# cannot eat the others; logs under OUT_DIR):
#   1. the test suite on the GPU (trainer.device=auto puts the runs there; tests/test_cuda.py too),
#   2. scripts/bench_train.py on the GPU (al-bench's trainer against the reference-style pipeline),
#   3. scripts/bench_packed.py: 1, 2, 4, 8 runs packed onto the GPU,
#   4. the paper's preset (experiment=ll4al_cifar10: fp32, 200 epochs) for the first CYCLES cycles on
#      the JPEG copy of CIFAR-10,
#   5. torch.compile against eager (bench_packed.py --runs 1 --compile, and --compile reduce-overhead: CUDA graphs),
#   6. scripts/bench_select.py on the GPU for the strategies that are slow on a CPU, in what time is left.
#
#   bash scripts/gpu_checks.sh CIFAR10_JPEG_TAR OUT_DIR [TOTAL_SECONDS] [CYCLES]
#
# Needs al-bench importable (installed, or PYTHONPATH=repo with al_bench/conf -> ../conf) and python3
# with torch + CUDA. Prints one summary table at the end.
set -u
TAR=${1:?the JPEG CIFAR-10 archive (cifar10-jpeg.tar.gz)}
OUT=${2:?folder for the logs}
TOTAL=${3:-570}
CYCLES=${4:-3}
PY=${PYTHON:-python3}
mkdir -p "$OUT" /tmp/albench_data
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
summary=()

phase() {  # phase NAME SECONDS command...: run with a time limit, log to OUT/NAME.log, keep the status
  local name=$1 limit=$2; shift 2
  local left=$((TOTAL - SECONDS - 5))
  if [ "$left" -lt 20 ]; then summary+=("$name: skipped (no time left)"); return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  echo "=== $name (limit ${limit} s) ==="
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  summary+=("$name: rc $rc in $((SECONDS - t0)) s")
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, al_bench; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee -a "$OUT/gpu.txt"
tar xzf "$TAR" -C /tmp/albench_data
ROOT=/tmp/albench_data/cifar10-jpeg

phase tests 130 $PY -m pytest -q -p no:cacheprovider -n 12 --timeout 120 -rfs
phase bench_train 80 $PY scripts/bench_train.py --tar "$TAR" --data-root "$ROOT" --n-labeled 2000 --epochs 3 \
  --rounds 2 --n-test 2000
phase bench_packed 110 $PY scripts/bench_packed.py --runs 1 2 4 8
phase paper_preset 150 $PY -m al_bench.cli experiment=ll4al_cifar10 dataset=imagefolder dataset.root="$ROOT" \
  budget.cycles="$CYCLES" trainer.progress=false seed=0 hydra.run.dir=/tmp/paper_preset
cp /tmp/paper_preset/metrics.jsonl "$OUT/paper_preset_metrics.jsonl" 2>/dev/null
phase compile 90 $PY scripts/bench_packed.py --runs 1 --compile
phase cudagraphs 120 $PY scripts/bench_packed.py --runs 1 --compile reduce-overhead
phase bench_select 300 $PY scripts/bench_select.py --device cuda --sizes 10000 --time-cap 20 --startup-s 20 \
  --strategies gradnorm dfal gaal asal bait batchbald batch_balance kmeans alfamix discriminative ta_vaal badge

echo "=== summary ==="
printf "%s\n" "${summary[@]}"
