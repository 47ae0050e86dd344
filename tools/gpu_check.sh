#!/usr/bin/env bash
# The GPU check of issue 10, prepared for a session whose task has a device machine (CUDA and PyTorch, no .NET).
# Here:   bash ../shared/device/pack.sh Cli/Cli.csproj      (self-contained tp7 into .devcarry/, about 35 MB)
# There:  bash tools/gpu_check.sh                           (device tool: carry [".devcarry"], timeout_s 560)
# One run, in this order: devices; every kernel version against its host twin at VGG16's shapes (selftest --full);
# every VGG16 tap against PyTorch on the same GPU, in fp32 and in each reduced precision against PyTorch in it
# (make_reference.py --device cuda, selftest --reference); PyTorch's anchor; our forward at batch 1 and 64 in each
# precision; GEMM 4096^3 per kernel version beside torch.matmul; tp7 profile with its Chrome trace; our training step.
# Output: $OUT/gpu_check.log (everything), $OUT/trace.json, $OUT/ratios.md (tools/gpu_ratios.py: every ratio the
# issue asks for, from this one run). Without $OUT (another machine) they go to /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}
work=/tmp/gpu_check_work
mkdir -p "$out" "$work"
exec > >(tee "$out/gpu_check.log") 2>&1
[ -f .devcarry/Cli.tar.xz ] || { echo "gpu_check: .devcarry/Cli.tar.xz missing: run ../shared/device/pack.sh Cli/Cli.csproj here, carry .devcarry"; exit 2; }
tp7() { bash .devcarry/run.sh tp7 "$@"; }
section() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
weights=$work/vgg16-random-seed0-biases.safetensors
status=0
run() { "$@" || { echo "gpu_check: FAILED ($?): $*"; status=1; }; }

section devices
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"
run tp7 devices

section "selftest --full: every kernel version against its host twin (tensor-core versions included on cc >= 8.0)"
run timeout 240 bash .devcarry/run.sh tp7 selftest --device cuda --full

section "every VGG16 tap against PyTorch on this GPU (random weights with random biases, batch 2, 224x224)"
run python3 tools/convert_weights.py --random-init --seed 0 --random-biases --out "$weights"
for p in tf32 fp16 bf16; do
  run python3 tools/make_reference.py --weights "$weights" --random-batch 2 --size 224 --seed 3 --grads none \
      --device cuda --precision $p --out "$work/ref-$p.safetensors" > "$work/ref-$p.txt" && tail -1 "$work/ref-$p.txt"
done
run tp7 selftest --device cuda --reference "$work/ref-tf32.safetensors" --weights "$weights"
for p in tf32 fp16 bf16; do
  run tp7 selftest --device cuda --precision $p --reference "$work/ref-$p.safetensors" --weights "$weights"
done

section "PyTorch anchor (same GPU, same call)"
run python3 .devcarry/torch_vgg16_anchor.py

section "our forward pass, batch 1 and 64, each precision"
for p in fp32 tf32 fp16 bf16; do
  run tp7 bench forward --device cuda --precision $p --weights "$weights" --batch 1,64 --reps 20
done

section "GEMM 4096^3: every kernel version against cuBLAS (torch.matmul)"
run tp7 bench gemm --device cuda --size 4096 --reps 20 --versions v2,v3,mma-tf32,mma-f16,mma-bf16
run python3 tools/torch_matmul_bench.py --size 4096 --reps 20

section "tp7 profile, batch 64, fp32 (trace: \$OUT/trace.json)"
run tp7 profile --device cuda --weights "$weights" --batch 64 --reps 3 --trace "$out/trace.json"
run tp7 profile --device cuda --weights "$weights" --batch 64 --reps 3 --precision tf32 --trace "$work/trace-tf32.json" --top 8

section "training step, batch 64, fp32"
run tp7 bench train --device cuda --weights "$weights" --batch 64 --reps 3

section "ratios (tools/gpu_ratios.py)"
python3 tools/gpu_ratios.py "$out/gpu_check.log" | tee "$out/ratios.md"
exit $status
