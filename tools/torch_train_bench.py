#!/usr/bin/env python3
"""Time PyTorch's CPU training step of VGG16 (the reference for `tp7-bench train-cpu`).

    /usr/bin/python3 tools/torch_train_bench.py --batch 8 --size 224 --reps 3 --warmup 1
    /usr/bin/python3 tools/torch_train_bench.py --weights weights/vgg16-random-seed0.safetensors --batch 8

The model is torchvision's vgg16 (random init after torch.manual_seed(--seed), or --weights) in
train mode, dropout as torchvision has it (p=0.5 after fc6 and fc7), with
torch.optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4), torch.set_num_threads(all cores) unless
--threads says otherwise (Debian's build starts with one thread). The batch is fixed: seeded N(0, 1)
inputs (batch, 3, size, size) and seeded labels in [0, 1000).

One step = zero_grad, forward, cross-entropy (mean), backward, optimiser step. The warm-up steps
(allocator, OpenMP pool, oneDNN primitives, momentum buffers) also validate: each loss must be
finite. Then --reps timed steps. The last stdout line is one JSON object:
    {"engine", "torch_version", "threads", "batch", "size", "weights", "warmup", "reps",
     "seconds_per_step": [...], "median_s", "min_s", "cpu_s_median", "images_per_s",
     "losses": [...], "peak_rss_bytes"}
peak_rss_bytes is resource.getrusage(RUSAGE_SELF).ru_maxrss * 1024 after the timed steps (Linux
reports KiB): the model, its gradients, the momentum buffers and the activations of one step.
"""
from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_pipeline import PipelineError, build_model  # noqa: E402
import tp7_args  # noqa: E402

CLASSES = 1000
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def main(argv: list[str] | None = None) -> int:
    ap = tp7_args.ArgumentParser(prog="torch_train_bench.py", description=__doc__)
    ap.add_argument("--weights", type=Path, help="float32 safetensors with torchvision VGG16 keys "
                    "(default: torchvision's random initialisation after torch.manual_seed(--seed))")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random init, the batch and dropout")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    ap.add_argument("--reps", type=int, default=3, help="timed steps (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.reps < 1 or args.threads < 1 or args.warmup < 0:
        ap.error("--batch, --reps and --threads must be >= 1, --warmup >= 0")
    if args.size < 32:
        ap.error("--size must be >= 32 (five 2x2 max-pools)")

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    try:
        if args.weights is not None and not args.weights.is_file():
            raise PipelineError(f"{args.weights}: no such file")
        t0 = time.perf_counter()
        model = build_model(args.weights, args.seed).train()
        load_s = time.perf_counter() - t0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g, dtype=torch.int64)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    torch.manual_seed(args.seed)  # the dropout masks

    def step() -> tuple[float, float, float]:
        c0, w0 = time.process_time(), time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return time.perf_counter() - w0, time.process_time() - c0, loss.item()

    losses, warm = [], []
    for _ in range(args.warmup):
        wall, _, loss = step()
        warm.append(wall)
        losses.append(loss)
    walls, cpus = [], []
    for _ in range(args.reps):
        wall, cpu, loss = step()
        walls.append(wall)
        cpus.append(cpu)
        losses.append(loss)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if not all(math.isfinite(l) for l in losses):
        print(f"error: non-finite training loss {losses}", file=sys.stderr)
        return 1
    median = statistics.median(walls)
    print(json.dumps({
        "engine": "pytorch", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "batch": args.batch, "size": args.size,
        "weights": str(args.weights) if args.weights else f"random-init seed {args.seed}",
        "optimizer": f"SGD(lr={LR}, momentum={MOMENTUM}, weight_decay={WEIGHT_DECAY})", "dropout": "torchvision (p=0.5, train mode)",
        "load_s": load_s, "warmup": args.warmup, "warmup_s": warm, "reps": args.reps,
        "seconds_per_step": walls, "median_s": median, "min_s": min(walls), "cpu_s_median": statistics.median(cpus),
        "images_per_s": args.batch / median, "losses": losses, "peak_rss_bytes": peak_rss,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
