#!/usr/bin/env bash
# The GPU checks, on a machine with a GPU and PyTorch but no Rust toolchain: binaries built
# elsewhere (see docs/gpu.md), run from the repository's root.
#
#   xtask/gpu-check.sh [BIN_DIR] [OUT_DIR]     BIN_DIR holds xtask, fm and bench (default .gpu)
#
# 1. `xtask e2e --device cuda`: the seed experiment on the GPU, judged by the quality bar;
# 2. `xtask bench --device cuda`: our library against the PyTorch script, both on the GPU;
# 3. a batch sweep of the seed network's training step (steps/s and samples/s at batch
#    256 … 16,384) for ours, PyTorch eager and PyTorch with the step captured as a CUDA graph.
# Everything printed is also written to OUT_DIR/gpu-check.log (default target/gpu-check).
# DEVICE=cpu BENCH_ARGS=--quick SWEEP_STEPS=50 makes it a dry run on a machine without a GPU;
# SWEEP_BATCHES="4096 16384" picks the batch sizes of the sweep.
set -u -o pipefail
bin=${1:-.gpu}
out=${2:-${OUT:-target/gpu-check}}
device=${DEVICE:-cuda}
bench_args=${BENCH_ARGS:---reps 3}
steps=${SWEEP_STEPS:-3000}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1

torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))') || exit 1
export LIBTORCH=$torch_dir LD_LIBRARY_PATH=$torch_dir/lib:${LD_LIBRARY_PATH:-}
echo "== $(date -u +%FT%TZ) $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch; print("python torch", torch.__version__, torch.cuda.get_device_name(0))'
nproc

echo "== e2e --device $device"
timeout 180 "$bin/xtask" e2e --device "$device" --fm "$bin/fm"
echo "e2e rc=$?"
cp "target/e2e/$device-seed/compare.png" "$out/e2e-$device-compare.png" 2>/dev/null

echo "== bench --device $device"
timeout 300 "$bin/xtask" bench --device "$device" $bench_args --ours "$bin/bench" --python python3 >/dev/null
echo "bench rc=$?"
cp target/bench/latest.md "$out/bench-$device.md" && cat "$out/bench-$device.md"
cp target/bench/latest.json "$out/bench-$device.json"

echo "== batch sweep: training steps/s of the seed network on $device ($steps steps each)"
small="--train-steps $steps --samples 1024 --euler-steps 4 --rk4-steps 1 --lik-points 256 --lik-steps 1 --lik-chunk 256 --device $device"
field() { python3 -c "import json, sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(f\"{r['train_steps_per_s']:.0f} steps/s, {r['train_steps_per_s'] * $1 / 1e6:.2f} M samples/s, final loss {r['final_loss']:.4f}\")"; }
for batch in ${SWEEP_BATCHES:-256 1024 4096 16384}; do
    echo "batch $batch ours:             $(timeout 60 "$bin/bench" run $small --batch "$batch" | field "$batch")"
    echo "batch $batch PyTorch eager:    $(timeout 60 python3 xtask/python/bench_pytorch.py run $small --batch "$batch" | field "$batch")"
    [ "$device" = cuda ] && echo "batch $batch PyTorch graph:    $(timeout 60 python3 xtask/python/bench_pytorch.py run $small --batch "$batch" --cuda-graph | field "$batch")"
done
echo "== done $(date -u +%FT%TZ)"
