#!/usr/bin/env python3
"""Export VGG16, ResNet18 or MobileNetV2 (torchvision layout) to ONNX, with a PyTorch reference.

    /usr/bin/python3 tools/export_onnx.py --random-init --seed 0            # -> weights/vgg16.onnx
    /usr/bin/python3 tools/export_onnx.py --weights weights/vgg16.safetensors --out weights/vgg16-imagenet.onnx
    /usr/bin/python3 tools/export_onnx.py --arch resnet18 --random-init --random-stats --seed 0 --taps \
        --opset 13 --out F/model.onnx --reference F                          # the importer's fixtures

The graph takes `input` (batch, 3, 224, 224) float32, already normalised with the ImageNet
mean/std, and returns `logits` (batch, 1000); the batch axis is dynamic. Weights come from a
float32 safetensors file with torchvision keys (VGG16 only), or from torchvision's random
initialisation after torch.manual_seed(seed) (for VGG16 the same model tools/reference_pipeline.py
--random-init builds). --random-stats then draws every BatchNorm's statistics and affine and every
conv/linear bias (torchvision leaves them 0/1, which would hide a dropped or misrouted one).

--taps adds, after `logits`, graph outputs for the values in TAPS (named after the torchvision
module path, dots as underscores: `layer1`, `features_30`), taken by forward hooks while the
exporter traces, so each name is exactly the ONNX value of that module's output. --reference DIR
writes, for a fixed seeded input of batch 2, DIR/input.npy, DIR/logits.npy and DIR/<tap>.npy
(float32, .npy 1.0, C order) and DIR/manifest.json (written last) with the names and shapes.
By default the exporter folds each BatchNorm into its conv (TrainingMode.EVAL, as a plain
torch.onnx.export does); --keep-batchnorm exports BatchNormalization nodes.

Verification: with the `onnx` package the file is loaded and checked by onnx.checker; with
`onnxruntime` the runtime's logits are compared with PyTorch's. Without them (the usual case
here) the file is still parsed: a small protobuf wire-format reader checks the top-level
ModelProto and reports its IR version, opset, input/output names, op types and initializer
sizes, so a truncated or mislabelled file is caught either way. The reference is also computed by
the traced graph (what the exporter converts) and compared with eager PyTorch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_pipeline import PipelineError, build_model  # noqa: E402


# ----------------------------------------------------------------------------- protobuf wire format
# Field numbers from onnx/onnx.proto: ModelProto{ir_version=1, graph=7, opset_import=8},
# OperatorSetIdProto{domain=1, version=2}, GraphProto{node=1, initializer=5, input=11, output=12},
# NodeProto{input=1, output=2, name=3, op_type=4}, ValueInfoProto{name=1},
# TensorProto{dims=1, data_type=2, raw_data=9}.

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


def _name(msg: memoryview, field: int = 1) -> str:
    return next((bytes(v).decode() for f, w, v in _fields(msg) if f == field and w == 2), "")


def inspect_onnx(path: Path) -> dict:
    """Parse the ModelProto enough to say what the file holds; raises ValueError if malformed.

    Besides the counts, returns the graph's nodes in order as (op_type, name, inputs, outputs), the
    op_type histogram, and which node produces each value (`producers`: value name -> op_type), so a
    test can check that a named graph output is computed by the graph and not an input or constant.
    """
    buf = memoryview(path.read_bytes())
    info = {"ir_version": None, "opsets": {}, "inputs": [], "outputs": [], "nodes": 0,
            "initializers": 0, "initializer_bytes": 0, "float_initializer_elements": 0,
            "node_list": [], "op_types": {}, "producers": {}}
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
            # NodeProto{input=1, output=2, name=3, op_type=4}
            ins, outs, name, op = [], [], "", ""
            for f, w, v in _fields(value):
                if w != 2:
                    continue
                if f == 1:
                    ins.append(bytes(v).decode())
                elif f == 2:
                    outs.append(bytes(v).decode())
                elif f == 3:
                    name = bytes(v).decode()
                elif f == 4:
                    op = bytes(v).decode()
            info["node_list"].append((op, name, ins, outs))
            info["op_types"][op] = info["op_types"].get(op, 0) + 1
            for o in outs:
                info["producers"][o] = op
        elif field == 5:
            # TensorProto{dims=1, data_type=2 (1 = FLOAT), raw_data=9}
            info["initializers"] += 1
            dims, dtype, raw = [], None, 0
            for f, w, v in _fields(value):
                if f == 1 and w == 0:
                    dims.append(v)
                elif f == 1 and w == 2:  # packed dims
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        dims.append(d)
                elif f == 2 and w == 0:
                    dtype = v
                elif f == 9 and w == 2:
                    raw += len(v)
            info["initializer_bytes"] += raw
            if dtype == 1:
                info["float_initializer_elements"] += int(np.prod(dims, dtype=np.int64)) if dims else 1
        elif field in (11, 12):
            info["inputs" if field == 11 else "outputs"].append(_name(value))
    return info


# ----------------------------------------------------------------------------- models

ARCHS = ("vgg16", "resnet18", "mobilenet_v2")

# Intermediate values a reference records, per architecture: (ONNX output name, module path in
# torchvision's named_modules(), "output" of that module or its "input"). Names are the module path
# with dots replaced by underscores; "flatten" is the input of the head (torch.flatten in the
# model's forward, not a module, so it is read as the head's input).
TAPS = {
    "vgg16": [("features_4", "features.4", "output"),        # pool1
              ("features_30", "features.30", "output"),      # pool5
              ("classifier_4", "classifier.4", "output")],   # relu7
    "resnet18": [("relu", "relu", "output"),                 # stem conv1 -> bn1 -> relu
                 ("maxpool", "maxpool", "output"),
                 ("layer1", "layer1", "output"),
                 ("layer2", "layer2", "output"),
                 ("layer3", "layer3", "output"),
                 ("layer4", "layer4", "output"),
                 ("avgpool", "avgpool", "output"),           # (N, 512, 1, 1)
                 ("flatten", "fc", "input")],                # (N, 512)
    "mobilenet_v2": [("features_0", "features.0", "output"),
                     ("features_3", "features.3", "output"),
                     ("features_18", "features.18", "output"),
                     ("flatten", "classifier", "input")],    # (N, 1280), after the global average pool
}


def randomise_stats(model, seed: int) -> None:
    """Replace the statistics torchvision's initialisation leaves trivial, from one generator seeded
    with `seed`, in named_modules() order: every BatchNorm's running_mean ~ N(0, 0.5),
    running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2); every existing conv/linear bias
    ~ N(0, 0.1) (no bias is created). N(m, s) means mean m and standard deviation s.

    With torchvision's own weights these keep activations O(1) through the depth without any
    rescaling (batch of N(0, 1) images, seed 0: resnet18's layer4 std ~5 and logits std ~3.5,
    mobilenet_v2's logits ~0.3, vgg16's ~0.15); write_reference refuses logits whose std is not.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def build(arch: str, weights: Path | None, seed: int, random_stats: bool):
    """The model in eval mode: VGG16 from weights or random init (tools/reference_pipeline.py's
    build_model), the others from torchvision's random initialisation after torch.manual_seed(seed)."""
    import torch
    import torchvision

    if arch == "vgg16":
        model = build_model(weights, seed)
    else:
        if weights is not None:
            raise ValueError(f"--weights reads VGG16 safetensors only; use --random-init for {arch}")
        torch.manual_seed(seed)
        model = getattr(torchvision.models, arch)(weights=None).eval()
    if random_stats:
        randomise_stats(model, seed)
    return model


@contextlib.contextmanager
def tapped(model, arch: str, clone: bool):
    """While active, model(x) returns (logits, *taps) in TAPS[arch] order. The root module's forward
    hook replaces the output, so the traced graph keeps torchvision's parameter names. With clone=True
    (eager references) each tap is copied when produced, so a later in-place op cannot change it."""
    modules = dict(model.named_modules())
    got: dict[str, object] = {}
    handles = []

    def keep(alias, t):
        if alias in got:
            raise ValueError(f"{arch}: tap '{alias}' was produced twice in one forward (module called twice)")
        got[alias] = t.clone() if clone else t

    try:
        for alias, path, where in TAPS[arch]:
            if path not in modules:
                raise ValueError(f"{arch}: no module '{path}' for tap '{alias}'")
            if where == "output":
                handles.append(modules[path].register_forward_hook(lambda m, i, o, a=alias: keep(a, o)))
            else:
                handles.append(modules[path].register_forward_pre_hook(lambda m, i, a=alias: keep(a, i[0])))
        handles.append(model.register_forward_pre_hook(lambda m, i: got.clear()))
        handles.append(model.register_forward_hook(
            lambda m, i, o: (o, *[got[a] for a, _, _ in TAPS[arch]])))
        yield [a for a, _, _ in TAPS[arch]]
    finally:
        for h in handles:
            h.remove()


def reference_input(seed: int):
    """The fixed input (2, 3, 224, 224) ~ N(0, 1), float32, from its own generator (seed + 1000, so
    it draws nothing the statistics drew)."""
    import torch

    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1000))


# ----------------------------------------------------------------------------- export

def export(model, out: Path, opset: int, taps: list[str] | None = None, keep_batchnorm: bool = False) -> None:
    """taps: extra graph outputs after `logits` (the model must be inside `tapped`). keep_batchnorm:
    export BatchNormalization nodes; by default (TrainingMode.EVAL) the exporter folds each BN into
    the conv before it, as a plain torch.onnx.export does."""
    import torch

    names = ["logits", *(taps or [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, 224, 224)
    mode = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    with torch.no_grad(), warnings.catch_warnings():
        # PRESERVE warns about constant folding in training mode; the model is in eval mode here.
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        torch.onnx.export(model, dummy, str(out), export_params=True, opset_version=opset, training=mode,
                          do_constant_folding=True, input_names=["input"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["input", *names]})


def expected_float_elements(model, keep_batchnorm: bool) -> int:
    """Float32 elements the exported initializers should hold. The exporter stores identical tensors
    once (random init has all-zero biases of equal shapes), so this counts distinct tensors. A BN
    folded into its conv leaves the conv weight's shape and a bias of out_channels; kept, it brings
    weight, bias, running_mean and running_var. In torchvision's models a BN directly follows its conv
    in module registration order."""
    import torch

    bn_type = torch.nn.modules.batchnorm._BatchNorm
    tensors = []
    mods = [m for m in model.modules() if not list(m.children())]
    for k, m in enumerate(mods):
        if isinstance(m, bn_type):
            if keep_batchnorm:
                tensors += [m.weight, m.bias, m.running_mean, m.running_var]
            continue
        follows = mods[k + 1] if k + 1 < len(mods) else None
        if not keep_batchnorm and isinstance(m, torch.nn.Conv2d) and isinstance(follows, bn_type):
            scale = follows.weight / torch.sqrt(follows.running_var + follows.eps)
            b = m.bias if m.bias is not None else torch.zeros(m.out_channels)
            tensors += [m.weight, follows.bias + (b - follows.running_mean) * scale]
            continue
        tensors += list(m.parameters(recurse=False))
    distinct = {(tuple(t.shape), t.detach().numpy().tobytes()) for t in tensors}
    return sum(int(np.prod(shape)) for shape, _ in distinct)


def verify(model, out: Path, taps: list[str] | None = None, keep_batchnorm: bool = False) -> list[str]:
    """Every check that the installed packages allow; returns lines to print."""
    import torch

    lines = []
    info = inspect_onnx(out)
    want_outputs = ["logits", *(taps or [])]
    lines.append(f"parsed: IR {info['ir_version']}, opsets {info['opsets']}, {info['nodes']} nodes, "
                 f"inputs {info['inputs']}, outputs {info['outputs']}, "
                 f"{info['initializers']} initializers, {info['initializer_bytes'] / 1e6:.1f} MB")
    lines.append("ops: " + ", ".join(f"{op} {n}" for op, n in sorted(info["op_types"].items())))
    if info["inputs"][:1] != ["input"] or info["outputs"] != want_outputs:
        raise ValueError(f"{out}: graph inputs {info['inputs']} / outputs {info['outputs']}, expected ['input'] / {want_outputs}")
    unproduced = [o for o in want_outputs if o not in info["producers"]]
    if unproduced:
        raise ValueError(f"{out}: outputs {unproduced} are not computed by any node")
    has_bn = "BatchNormalization" in info["op_types"]
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()) and has_bn != keep_batchnorm:
        raise ValueError(f"{out}: BatchNormalization nodes {'present' if has_bn else 'absent'}, expected them "
                         f"{'kept' if keep_batchnorm else 'folded into the convolutions'}")
    n = expected_float_elements(model, keep_batchnorm)
    if info["float_initializer_elements"] != n:
        raise ValueError(f"{out}: {info['float_initializer_elements']} float32 initializer elements, expected {n} "
                         f"(distinct tensors, BatchNorm {'kept' if keep_batchnorm else 'folded'})")
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
            want = model(torch.from_numpy(x))
            want = (want[0] if isinstance(want, tuple) else want).numpy()
        err = float(np.max(np.abs(got - want)))
        lines.append(f"onnxruntime: batch 2 logits max |diff| vs PyTorch {err:.2e}")
        if err > 1e-3 * max(1.0, float(np.max(np.abs(want)))):
            raise ValueError(f"{out}: onnxruntime logits differ from PyTorch by {err}")
    except ImportError:
        lines.append("onnxruntime package not installed: numeric check skipped (the C# benchmark runs it)")
    return lines


# ----------------------------------------------------------------------------- reference

REFERENCE_FORMAT_VERSION = 1


def _save_npy(path: Path, t) -> list[int]:
    a = np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
    np.save(path, a)  # .npy 1.0, '<f4', C order: what Engine/IO/Npy.cs reads
    return list(a.shape)


def write_reference(model, arch: str, seed: int, ref_dir: Path, onnx_path: Path, opset: int,
                    random_stats: bool, keep_batchnorm: bool, onnx_has_taps: bool) -> list[str]:
    """input.npy, logits.npy and one <tap>.npy per TAPS[arch] entry, then manifest.json last (its
    presence means the directory is complete). Also checks that the traced graph (what the exporter
    converts) reproduces every eager value, so a tap overwritten by a later in-place op is caught."""
    import torch

    ref_dir.mkdir(parents=True, exist_ok=True)
    x = reference_input(seed)
    with torch.no_grad():
        with tapped(model, arch, clone=True) as names:
            logits, *taps = model(x)
        with tapped(model, arch, clone=False):
            traced = torch.jit.trace(model, x, check_trace=False)(x)
    values = {"logits": logits, **dict(zip(names, taps))}
    worst = 0.0
    for name, (want, got) in zip(values, zip(values.values(), traced)):
        if tuple(want.shape) != tuple(got.shape):
            raise ValueError(f"{arch}: traced '{name}' has shape {list(got.shape)}, eager {list(want.shape)}")
        err = float((want - got).abs().max())
        worst = max(worst, err / max(1e-6, float(want.abs().max())))
        if not err <= 1e-4 * max(1.0, float(want.abs().max())):
            raise ValueError(f"{arch}: traced '{name}' differs from eager by {err} (overwritten by an in-place op?)")
    std = float(logits.std())
    if not (np.isfinite(std) and 1e-2 < std < 1e2):
        raise ValueError(f"{arch}: reference logits std {std}, expected O(1) (exploding or vanishing activations)")
    outputs = []
    for name, t in values.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{arch}: reference '{name}' has non-finite values")
        spec = next(((p, w) for a, p, w in TAPS[arch] if a == name), ("", "output"))
        outputs.append({"name": name, "file": f"{name}.npy", "shape": _save_npy(ref_dir / f"{name}.npy", t),
                        "module": spec[0], "hook": spec[1], "std": float(t.std())})
    manifest = {
        "format_version": REFERENCE_FORMAT_VERSION,
        "script": "tools/export_onnx.py",
        "arch": arch, "opset": opset, "seed": seed, "random_stats": random_stats,
        "batchnorm": "kept" if keep_batchnorm else "folded",
        "onnx": os.path.relpath(onnx_path.resolve(), ref_dir.resolve()),
        "onnx_outputs": ["logits", *(names if onnx_has_taps else [])],
        "input": {"name": "input", "file": "input.npy", "shape": _save_npy(ref_dir / "input.npy", x),
                  "how": f"torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed({seed} + 1000))"},
        "outputs": outputs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    tmp = ref_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, ref_dir / "manifest.json")
    return [f"reference: {ref_dir} ({len(outputs)} outputs, logits std {std:.3g}, traced vs eager max rel diff {worst:.1e})"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="float32 safetensors with torchvision VGG16 keys")
    src.add_argument("--random-init", action="store_true", help="torchvision's random initialisation")
    ap.add_argument("--arch", choices=ARCHS, default="vgg16", help="torchvision model (default vgg16)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for --random-init, and the seed of "
                    "--random-stats and of the reference input (default 0)")
    ap.add_argument("--random-stats", action="store_true", help="random BatchNorm statistics and affine, random "
                    "conv/linear biases (see randomise_stats); needs --random-init")
    ap.add_argument("--keep-batchnorm", action="store_true", help="export BatchNormalization nodes instead of "
                    "letting the exporter fold them into the convolutions")
    ap.add_argument("--taps", action="store_true", help="add the reference taps of --arch as graph outputs after logits")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset, 11 to 17 (default 13)")
    ap.add_argument("--out", type=Path, help="ONNX file (default weights/<arch>.onnx)")
    ap.add_argument("--reference", type=Path, metavar="DIR", help="also write input.npy, logits.npy, "
                    "<tap>.npy and manifest.json into DIR")
    args = ap.parse_args(argv)
    if not 11 <= args.opset <= 17:
        ap.error("--opset must be between 11 and 17 (what torch 1.13 exports)")
    if args.random_stats and not args.random_init:
        ap.error("--random-stats applies to --random-init only")
    if args.weights is not None and args.arch != "vgg16":
        ap.error(f"--weights reads VGG16 safetensors only; use --random-init for {args.arch}")
    out = args.out or Path(f"weights/{args.arch}.onnx")

    try:
        t0 = time.perf_counter()
        model = build(args.arch, args.weights, args.seed, args.random_stats)
        t1 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            taps = stack.enter_context(tapped(model, args.arch, clone=False)) if args.taps else None
            export(model, out, args.opset, taps, args.keep_batchnorm)
            t2 = time.perf_counter()
            lines = verify(model, out, taps, args.keep_batchnorm)
        if args.reference is not None:
            lines += write_reference(model, args.arch, args.seed, args.reference, out, args.opset,
                                     args.random_stats, args.keep_batchnorm, args.taps)
        t3 = time.perf_counter()
    except (PipelineError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_params = sum(p.numel() for p in model.parameters())
    has_bn = any("BatchNorm" in type(m).__name__ for m in model.modules())
    bn_note = f"BatchNorm {'kept' if args.keep_batchnorm else 'folded'}, " if has_bn else ""
    source = (f"random init seed {args.seed}{' + random stats' if args.random_stats else ''}"
              if args.random_init else args.weights)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {args.arch}, {n_params:,} parameters, opset {args.opset}, "
          f"{bn_note}{source}); "
          f"model {t1 - t0:.1f} s, export {t2 - t1:.1f} s, checks and reference {t3 - t2:.1f} s")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
