#!/usr/bin/env bash
# The GPU check, prepared for a session whose task has a device machine (which has CUDA and PyTorch but no .NET).
# Here:   bash ../shared/device/pack.sh Cli/Cli.csproj       (builds .devcarry/Cli.tar.xz, self-contained tp7)
# There:  bash tools/gpu_check.sh        (device tool: carry [".devcarry"], timeout ~500 s)
# It unpacks tp7, lists devices, checks every kernel against the host twin on CUDA (VGG16 layer shapes too),
# times our forward pass and our training step with per-layer profiles, and runs PyTorch's anchor on the same GPU in the same call.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/tp7-gpu
[ -x "$dir/Cli/tp7" ] || { mkdir -p "$dir" && tar -xJf .devcarry/Cli.tar.xz -C "$dir"; }
tp7="$dir/Cli/tp7"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$tp7" devices
"$tp7" selftest --device cuda --full
"$tp7" bench forward --device cuda --batch 1,8,64 --reps 5 --profile
python3 .devcarry/torch_vgg16_anchor.py
# Training: our full step (new 15-class head, SGD momentum, fp32) at the anchor's batch 64; the anchor prints
# PyTorch's "vgg16 full train step bs=64 fp32-strict" above, in the same call.
"$tp7" bench train --device cuda --batch 64 --reps 3 --profile
