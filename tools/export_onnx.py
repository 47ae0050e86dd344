#!/usr/bin/env python3
"""Export VGG16 (torchvision layout) to ONNX for the benchmark against ONNX Runtime.

    /usr/bin/python3 tools/export_onnx.py --random-init --seed 0            # -> weights/vgg16.onnx
    /usr/bin/python3 tools/export_onnx.py --weights weights/vgg16.safetensors --out weights/vgg16-imagenet.onnx

The graph takes `input` (batch, 3, 224, 224) float32, already normalised with the ImageNet
mean/std, and returns `logits` (batch, 1000); the batch axis is dynamic. Weights come from a
float32 safetensors file with torchvision keys, or from torchvision's random initialisation after
torch.manual_seed(seed) (the same model tools/reference_pipeline.py --random-init builds).

Verification: with the `onnx` package the file is loaded and checked by onnx.checker; with
`onnxruntime` the runtime's logits are compared with PyTorch's. Without them (the usual case
here) the file is still parsed: a small protobuf wire-format reader checks the top-level
ModelProto and reports its IR version, opset, input/output names and initializer bytes, so a
truncated or mislabelled file is caught either way.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_pipeline import PipelineError, build_model  # noqa: E402


# ----------------------------------------------------------------------------- protobuf wire format
# Field numbers from onnx/onnx.proto: ModelProto{ir_version=1, graph=7, opset_import=8},
# OperatorSetIdProto{domain=1, version=2}, GraphProto{node=1, initializer=5, input=11, output=12},
# ValueInfoProto{name=1}, TensorProto{raw_data=9}.

def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) for one message; value is int or memoryview."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError(f"field {field} claims {n} bytes, {len(buf) - i} left")
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {field}")
        if i > len(buf):
            raise ValueError("message truncated")
        yield field, wire, value


def inspect_onnx(path: Path) -> dict:
    """Parse the ModelProto enough to say what the file holds; raises ValueError if malformed."""
    buf = memoryview(path.read_bytes())
    info = {"ir_version": None, "opsets": {}, "inputs": [], "outputs": [], "nodes": 0,
            "initializers": 0, "initializer_bytes": 0}
    graph = None
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 0:
            info["ir_version"] = value
        elif field == 7 and wire == 2:
            graph = value
        elif field == 8 and wire == 2:
            domain, version = "", None
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    domain = bytes(v).decode()
                elif f == 2 and w == 0:
                    version = v
            info["opsets"][domain or "ai.onnx"] = version
    if graph is None:
        raise ValueError("no graph in the ModelProto")
    for field, wire, value in _fields(graph):
        if wire != 2:
            continue
        if field == 1:
            info["nodes"] += 1
        elif field == 5:
            info["initializers"] += 1
            info["initializer_bytes"] += sum(len(v) for f, w, v in _fields(value) if f == 9 and w == 2)
        elif field in (11, 12):
            name = next((bytes(v).decode() for f, w, v in _fields(value) if f == 1 and w == 2), "")
            info["inputs" if field == 11 else "outputs"].append(name)
    return info


# ----------------------------------------------------------------------------- export

def export(model, out: Path, opset: int) -> None:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        torch.onnx.export(model, dummy, str(out), export_params=True, opset_version=opset,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def verify(model, out: Path) -> list[str]:
    """Every check that the installed packages allow; returns lines to print."""
    import torch

    lines = []
    info = inspect_onnx(out)
    # The exporter stores identical tensors once (random init has all-zero biases of equal
    # shapes), so the expected size counts distinct parameter tensors.
    distinct = {(tuple(p.shape), p.detach().numpy().tobytes()) for p in model.parameters()}
    n_params = sum(int(np.prod(shape)) for shape, _ in distinct)
    lines.append(f"parsed: IR {info['ir_version']}, opsets {info['opsets']}, {info['nodes']} nodes, "
                 f"inputs {info['inputs']}, outputs {info['outputs']}, "
                 f"{info['initializers']} initializers, {info['initializer_bytes'] / 1e6:.1f} MB")
    if info["inputs"][:1] != ["input"] or info["outputs"] != ["logits"]:
        raise ValueError(f"{out}: graph inputs {info['inputs']} / outputs {info['outputs']}, expected ['input'] / ['logits']")
    if info["initializer_bytes"] != 4 * n_params:
        raise ValueError(f"{out}: {info['initializer_bytes']} initializer bytes, expected {4 * n_params} (float32 x {n_params} in distinct tensors)")
    try:
        import onnx
        onnx.checker.check_model(str(out))
        lines.append("onnx.checker: ok")
    except ImportError:
        lines.append("onnx package not installed: onnx.checker skipped")
    try:
        import onnxruntime as ort
        x = np.random.RandomState(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        err = float(np.max(np.abs(got - want)))
        lines.append(f"onnxruntime: batch 2 logits max |diff| vs PyTorch {err:.2e}")
        if err > 1e-3 * max(1.0, float(np.max(np.abs(want)))):
            raise ValueError(f"{out}: onnxruntime logits differ from PyTorch by {err}")
    except ImportError:
        lines.append("onnxruntime package not installed: numeric check skipped (the C# benchmark runs it)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="float32 safetensors with torchvision VGG16 keys")
    src.add_argument("--random-init", action="store_true", help="torchvision's random initialisation")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for --random-init (default 0)")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset, 13 or later (default 13)")
    ap.add_argument("--out", type=Path, default=Path("weights/vgg16.onnx"))
    args = ap.parse_args(argv)
    if args.opset < 13:
        ap.error("--opset must be 13 or later")

    try:
        t0 = time.perf_counter()
        model = build_model(args.weights, args.seed)
        t1 = time.perf_counter()
        export(model, args.out, args.opset)
        t2 = time.perf_counter()
        lines = verify(model, args.out)
    except (PipelineError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, "
          f"{'random init seed ' + str(args.seed) if args.random_init else args.weights}); "
          f"model {t1 - t0:.1f} s, export {t2 - t1:.1f} s")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
