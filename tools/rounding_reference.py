#!/usr/bin/env python3
"""Reference roundings of fp32 values to the tensor-core input formats, for Tests/MmaPrecisionTests.cs.

Writes a safetensors file (format_version 1) of int64 tensors, one element per input value:
  input_bits  the fp32 bit pattern of each input
  bf16_bits   torch.tensor(x).to(torch.bfloat16), its 16 bits (round to nearest even)
  fp16_bits   torch.tensor(x).to(torch.float16), its 16 bits (round to nearest even, overflow to inf)
  tf32_bits   the fp32 bit pattern of x rounded to TF32 (10 mantissa bits, same exponent range as fp32) to nearest
              with ties away from zero, as PTX's cvt.rna.tf32.f32 is specified; computed here on exact rationals
              (fractions.Fraction), independently of the bit trick the C# code uses. PyTorch has no TF32 conversion.
The inputs: every special value (zeros, infinities, NaNs, extremes of each format), ties and near-ties of each
format in the normal and subnormal ranges, and random bit patterns over the whole fp32 range (seeded).

usage: rounding_reference.py --out FILE [--random N] [--seed S]
"""
import argparse
import os
import struct
import sys
from fractions import Fraction

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tp7_safetensors  # noqa: E402

FORMAT_VERSION = "1"


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def tf32_round_bits(bits):
    """fp32 bits -> fp32 bits of the TF32 value nearest (ties away from zero), by exact arithmetic."""
    exp = (bits >> 23) & 0xFF
    if exp == 0xFF:
        return bits  # inf stays inf; NaN is compared as NaN only
    sign = -1 if bits >> 31 else 1
    value = abs(Fraction(struct.unpack("<f", struct.pack("<I", bits))[0]))
    if value == 0:
        return bits
    e = max(exp - 127, -126)  # exponent of the binade (subnormals share the smallest normal's spacing)
    ulp = Fraction(2) ** (e - 10)
    q = value / ulp
    r = q.numerator // q.denominator
    if q - r >= Fraction(1, 2):
        r += 1  # ties (exactly 1/2) go away from zero
    rounded = r * ulp
    if rounded >= Fraction(2) ** 128:
        return (bits & 0x80000000) | 0x7F800000
    if rounded == 0:
        return bits & 0x80000000  # a signed zero keeps its sign
    out = f32_bits(float(sign * rounded))
    assert float(sign * rounded) == sign * rounded, "TF32 values are exact in fp64"
    return out


def inputs(n_random, seed):
    special = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,
               0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x80800000, 0x007FFFFF, 0x00000001, 0x80000001, 0x3F800000]
    halves = [65504.0, -65504.0, 65519.996, 65520.0, -65520.0, 65536.0, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08,
              2.9802326e-08, 8.940697e-08, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1e-8, 3e38, -3e38, 1.0e-40, 2048.5, 2049.0]
    bits = list(special) + [f32_bits(v) for v in halves]
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2 ** 32, size=4000, dtype=np.uint64)
    for b in base.tolist():
        b = int(b)
        # exact ties and one ulp either side, for each format's dropped bits
        for low, mask in ((0x1000, 0x1FFF), (0x8000, 0xFFFF)):
            t = (b & ~mask & 0xFFFFFFFF) | low
            bits += [t, t - 1 if t & mask else t, t + 1]
    # fp16 normal-range and subnormal-range ties: values k/2 * 2^(e-10) for e in fp16's binades
    for e in range(-25, 16):
        for k in (2047, 2049, 2051, 1, 3, 5, 1023, 1025):
            v = k * 2.0 ** (e - 11)
            bits += [f32_bits(v), f32_bits(-v)]
            bits += [f32_bits(v) + 1, f32_bits(v) - 1]
    bits += rng.integers(0, 2 ** 32, size=n_random, dtype=np.uint64).tolist()
    return np.array([b & 0xFFFFFFFF for b in bits], dtype=np.uint32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--random", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x_bits = inputs(a.random, a.seed)
    x = torch.from_numpy(x_bits.view(np.float32).copy())
    bf16 = x.to(torch.bfloat16).view(torch.int16).numpy().astype(np.int64) & 0xFFFF
    fp16 = x.to(torch.float16).view(torch.int16).numpy().astype(np.int64) & 0xFFFF
    tf32 = np.array([tf32_round_bits(int(b)) for b in x_bits.tolist()], dtype=np.int64)
    n = len(x_bits)
    tensors = [(name, "I64", [n], arr.astype("<i8").tobytes()) for name, arr in
               (("input_bits", x_bits.astype(np.int64)), ("bf16_bits", bf16), ("fp16_bits", fp16), ("tf32_bits", tf32))]
    tmp = a.out + ".tmp"
    tp7_safetensors.write(tmp, tensors, {"format_version": FORMAT_VERSION, "torch": torch.__version__})
    os.replace(tmp, a.out)
    print(f"{a.out}: {n} values")


if __name__ == "__main__":
    main()
