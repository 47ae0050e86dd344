#!/usr/bin/env python3
"""Every ratio issue 10 asks of the GPU check, read from one tools/gpu_check.sh log (ours and PyTorch's numbers come
from the same run on the same GPU), as a markdown table with the goal and whether it is met.

    python3 tools/gpu_ratios.py $OUT/gpu_check.log

Reads: torch_vgg16_anchor.py ("vgg16 forward bs=64 tf32: 3939 img/s (16.25 ms/batch)", "sgemm n=4096 tf32=False:
52.1 TFLOP/s"), tools/torch_matmul_bench.py's table, `tp7 bench forward` ("vgg16 forward, tf32, 224x224, ..." then
"batch ms/batch img/s ..." rows), `tp7 bench gemm`'s table and the selftest summary lines. A number that is missing
(a step failed or was not run) is reported as missing, never guessed.
"""
import re
import sys


def parse(text):
    anchor_fwd, anchor_gemm, torch_mm, ours_fwd, ours_gemm, selftests = {}, {}, {}, {}, {}, []
    precision = None
    in_torch_mm = False
    for line in text.splitlines():
        m = re.match(r"vgg16 forward bs=(\d+) (\S+): ([\d.]+) img/s \(([\d.]+) ms/batch\)", line)
        if m:
            anchor_fwd[(int(m.group(1)), m.group(2))] = (float(m.group(3)), float(m.group(4)))
            continue
        m = re.match(r"sgemm n=(\d+) tf32=(True|False): ([\d.]+) TFLOP/s", line)
        if m:
            anchor_gemm[(int(m.group(1)), "tf32" if m.group(2) == "True" else "fp32")] = float(m.group(3))
            continue
        if line.startswith("torch.matmul "):
            in_torch_mm = True
            continue
        m = re.match(r"(fp32|tf32|fp16|bf16)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if in_torch_mm and m:
            torch_mm[m.group(1)] = float(m.group(3))
            continue
        m = re.match(r"\S+ forward, (fp32|tf32|fp16|bf16), ", line)
        if m:
            precision, in_torch_mm = m.group(1), False
            continue
        m = re.match(r"\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if precision and m:
            ours_fwd[(int(m.group(1)), precision)] = (float(m.group(3)), float(m.group(2)))
            continue
        if line.startswith("==="):
            precision = None
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 8 and re.match(r"V\d", cells[1]) and re.match(r"[\d.]+$", cells[4] or "x"):
            ours_gemm[cells[1]] = (cells[2], float(cells[4]), cells[7])
            continue
        if line.startswith("selftest") and (" passed, " in line):
            selftests.append(line.strip())
    return anchor_fwd, anchor_gemm, torch_mm, ours_fwd, ours_gemm, selftests


def main(path):
    anchor_fwd, anchor_gemm, torch_mm, ours_fwd, ours_gemm, selftests = parse(open(path, encoding="utf-8").read())
    rows = []

    def ratio(name, ours, theirs, goal, higher_is_better=True, unit=""):
        if ours is None or not theirs:
            rows.append((name, "missing" if ours is None else f"{ours:g}{unit}", "missing" if theirs is None else f"{theirs:g}{unit}",
                         "-", goal, "not measured"))
            return
        r = ours / theirs
        if goal == "-":
            rows.append((name, f"{ours:g}{unit}", f"{theirs:g}{unit}", f"{r:.2f}", goal, "reported"))
            return
        goal_value = float(goal.split()[-1].rstrip("x"))
        met = r >= goal_value if higher_is_better else r <= goal_value
        rows.append((name, f"{ours:g}{unit}", f"{theirs:g}{unit}", f"{r:.2f}", goal, "met" if met else "NOT met"))

    def fwd(batch, precision):
        return ours_fwd.get((batch, precision), (None, None))

    for ours_p, anchor_p, label in (("fp32", "fp32-strict", "fp32 vs PyTorch strict fp32"), ("tf32", "tf32", "TF32 vs PyTorch TF32"),
                                    ("fp16", "fp16-channels_last", "fp16 vs PyTorch fp16 channels-last"),
                                    ("bf16", "fp16-channels_last", "bf16 vs PyTorch fp16 channels-last")):
        ratio(f"VGG16 forward bs=64 img/s, {label}", fwd(64, ours_p)[0], anchor_fwd.get((64, anchor_p), (None,))[0], ">= 1.0x",
              unit=" img/s")
    for ours_p in ("tf32", "fp32"):
        ratio(f"VGG16 batch-1 latency ms, ours {ours_p} vs PyTorch TF32", fwd(1, ours_p)[1], anchor_fwd.get((1, "tf32"), (None, None))[1],
              "<= 1.0x", higher_is_better=False, unit=" ms")
    simt = [v for k, v in ours_gemm.items() if not k.startswith("V4Mma") and v[2].startswith("ok")]
    best_simt = max((v[1] for v in simt), default=None)
    ratio("SGEMM 4096 TFLOP/s, best SIMT fp32 version vs cuBLAS fp32", best_simt, torch_mm.get("fp32") or anchor_gemm.get((4096, "fp32")),
          ">= 0.9x", unit=" TFLOP/s")
    tf32 = ours_gemm.get("V4MmaTf32")
    ratio("GEMM 4096 TFLOP/s, V4MmaTf32 vs cuBLAS TF32", tf32[1] if tf32 and tf32[2].startswith("ok") else None,
          torch_mm.get("tf32") or anchor_gemm.get((4096, "tf32")), ">= 0.6x", unit=" TFLOP/s")
    for v, p in (("V4MmaF16", "fp16"), ("V4MmaBf16", "bf16")):
        g = ours_gemm.get(v)
        ratio(f"GEMM 4096 TFLOP/s, {v} vs cuBLAS {p}", g[1] if g and g[2].startswith("ok") else None, torch_mm.get(p),
              "-", unit=" TFLOP/s")

    print("| measure | ours | PyTorch / cuBLAS | ratio | goal | |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("GEMM versions (tp7 bench gemm):")
    for k, (p, tflops, check) in ours_gemm.items():
        print(f"- {k} ({p}): {tflops} TFLOP/s, {check}")
    print()
    print("Correctness lines:")
    for s in selftests:
        print(f"- {s}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
