#!/usr/bin/env python3
"""Time PyTorch's CPU forward pass of VGG16 (the reference for `tp7-bench forward-cpu`).

    /usr/bin/python3 tools/torch_forward_bench.py --weights weights/vgg16-random-seed0.safetensors --batch 8 --reps 5
    /usr/bin/python3 tools/torch_forward_bench.py --weights W --input x.f32 --batch 8 --logits-out y.f32 --serve

The model is torchvision's vgg16 in eval mode under torch.no_grad(), with torch.set_num_threads(all
cores) unless --threads says otherwise. The batch is (batch, 3, 224, 224) float32: read from --input
(raw little-endian float32, NCHW, as the C# benchmark writes it) or drawn from a seeded normal
distribution. Its logits are written to --logits-out (raw float32, (batch, 1000)) so the caller can
compare engines on the same numbers before it times them.

Standalone: one warm-up pass (the validation pass), then --reps timed passes; prints one JSON line
with the wall seconds of each pass, their median and min, and the CPU seconds per pass.

--serve: prints one JSON line when ready, then answers each stdin line `time` with one timed pass
as a JSON line {"seconds": wall, "cpu_seconds": cpu}, until `quit` or end of input. This lets the
caller interleave PyTorch's passes with other engines' passes so that load from other processes
falls on all engines alike, without reloading the 528 MB model each time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_pipeline import PipelineError, build_model  # noqa: E402

SIZE = 224
CLASSES = 1000


def load_input(path: Path | None, batch: int, seed: int) -> np.ndarray:
    """(batch, 3, 224, 224) float32 from a raw file, or seeded N(0, 1) values."""
    shape = (batch, 3, SIZE, SIZE)
    if path is None:
        return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    expected = int(np.prod(shape)) * 4
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(f"{path}: {actual} bytes, expected {expected} for float32 {list(shape)}")
    return np.fromfile(path, dtype="<f4").reshape(shape)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="float32 safetensors with torchvision VGG16 keys "
                    "(default: torchvision's random initialisation after torch.manual_seed(--seed))")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random init and for a generated input")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5, help="timed passes in standalone mode (default 5)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--input", type=Path, help="raw float32 (batch, 3, 224, 224) input batch")
    ap.add_argument("--logits-out", type=Path, help="write the batch's logits here (raw float32, (batch, 1000))")
    ap.add_argument("--serve", action="store_true", help="answer `time` lines on stdin with one timed pass each")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.reps < 1 or args.threads < 1:
        ap.error("--batch, --reps and --threads must be positive")

    import torch

    torch.set_num_threads(args.threads)
    try:
        t0 = time.perf_counter()
        model = build_model(args.weights, args.seed)
        load_s = time.perf_counter() - t0
        x = torch.from_numpy(load_input(args.input, args.batch, args.seed))
    except (PipelineError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    def timed_pass() -> tuple[float, float, torch.Tensor]:
        c0, w0 = time.process_time(), time.perf_counter()
        with torch.no_grad():
            y = model(x)
        return time.perf_counter() - w0, time.process_time() - c0, y

    # The validation pass doubles as the warm-up (allocator, OpenMP pool, oneDNN primitive cache).
    warm_s, _, logits = timed_pass()
    if logits.shape != (args.batch, CLASSES):
        print(f"error: logits have shape {list(logits.shape)}, expected [{args.batch}, {CLASSES}]", file=sys.stderr)
        return 1
    if args.logits_out is not None:
        logits.numpy().astype("<f4").tofile(args.logits_out)
    header = {"engine": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch": args.batch, "weights": str(args.weights) if args.weights else f"random-init seed {args.seed}",
              "load_s": load_s, "warmup_s": warm_s}

    if args.serve:
        print(json.dumps({"ready": True, **header}), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            if cmd != "time":
                print(json.dumps({"error": f"unknown command '{cmd}' (expected 'time' or 'quit')"}), flush=True)
                continue
            wall, cpu, _ = timed_pass()
            print(json.dumps({"seconds": wall, "cpu_seconds": cpu}), flush=True)
        return 0

    walls, cpus = [], []
    for _ in range(args.reps):
        wall, cpu, _ = timed_pass()
        walls.append(wall)
        cpus.append(cpu)
    print(json.dumps({**header, "reps": args.reps, "times_s": walls, "median_s": statistics.median(walls),
                      "min_s": min(walls), "cpu_s_median": statistics.median(cpus),
                      "s_per_image": statistics.median(walls) / args.batch}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
