#!/usr/bin/env python3
"""torch's CPU random stream for the generator tests of Engine/Model/TorchRandom.cs.

    torch_random_reference.py --seed 0 --ops uniform:17:-0.3:0.7,normal:15:0:1 --out FILE
                              [--cpu-capability default|avx2]

After torch.manual_seed(seed), runs each op in order on one float32 tensor of the given size,
all from the same default generator, so that a later op also checks how many numbers the earlier
ones consumed:
    uniform:N:A:B   torch.empty(N).uniform_(A, B)
    normal:N:M:S    torch.empty(N).normal_(M, S)
Writes float32 safetensors: tensor "op<i>" per op, metadata "ops", "seed" and "cpu_capability"
(torch's own report, which says whether the AVX2 or the scalar build of its kernels ran).

--cpu-capability sets ATEN_CPU_CAPABILITY before torch is imported (torch reads it once).
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tp7_safetensors as st  # noqa: E402


def parse_ops(text):
    ops = []
    for item in text.split(","):
        parts = item.split(":")
        if parts[0] not in ("uniform", "normal") or len(parts) != 4:
            raise SystemExit(f"--ops: '{item}' is not uniform:N:A:B or normal:N:MEAN:STD")
        n = int(parts[1])
        if n < 1:
            raise SystemExit(f"--ops: '{item}': size must be at least 1")
        ops.append((parts[0], n, float(parts[2]), float(parts[3])))
    return ops


def cpu_capability(torch):
    m = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ops", required=True, help="comma-separated uniform:N:A:B / normal:N:MEAN:STD")
    parser.add_argument("--cpu-capability", choices=["default", "avx2"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    ops = parse_ops(args.ops)
    if args.cpu_capability:
        os.environ["ATEN_CPU_CAPABILITY"] = args.cpu_capability
    import torch
    torch.manual_seed(args.seed)
    tensors = []
    for i, (kind, n, a, b) in enumerate(ops):
        t = torch.empty(n, dtype=torch.float32)
        if kind == "uniform":
            t.uniform_(a, b)
        else:
            t.normal_(a, b)
        tensors.append((f"op{i}", "F32", (n,), st.from_torch(t)[2]))
    metadata = {"ops": args.ops, "seed": str(args.seed), "cpu_capability": cpu_capability(torch),
                "torch_version": torch.__version__}
    st.write(args.out, tensors, metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
