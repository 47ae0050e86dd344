#!/usr/bin/env python3
"""torch.matmul beside `tp7 bench gemm`: square C = A·B at --size, fp32 in memory, per precision, median of --reps
launches each synchronised, TFLOP/s. fp32 = strict (allow_tf32 off), tf32 = allow_tf32 on, fp16/bf16 = inputs cast
once before timing (as cuBLAS's half GEMMs take them; fp32 accumulation is cuBLAS's default for these).

usage: torch_matmul_bench.py [--size 4096] [--reps 10] [--device cuda]
"""
import argparse
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {os.cpu_count()} threads"
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    n = a.size
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, n, generator=g) * 2 - 1).to(dev)
    y = (torch.rand(n, n, generator=g) * 2 - 1).to(dev)
    print(f"torch.matmul {n}x{n}x{n}, {name}, torch {torch.__version__}, median of {a.reps} launches, each synchronised")
    print(f"{'precision':10} {'median ms':>10} {'TFLOP/s':>9}")
    cases = [("fp32", torch.float32, False), ("tf32", torch.float32, True)]
    if dev.type == "cuda":
        cases += [("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)]
    for label, dtype, tf32 in cases:
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
        elif tf32:
            continue
        xa, ya = x.to(dtype), y.to(dtype)
        torch.matmul(xa, ya)
        sync()
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            torch.matmul(xa, ya)
            sync()
            times.append(time.perf_counter() - t)
        times.sort()
        t = times[len(times) // 2]
        print(f"{label:10} {t * 1e3:10.3f} {2 * n ** 3 / t / 1e12:9.2f}")


if __name__ == "__main__":
    main()
