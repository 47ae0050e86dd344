#!/usr/bin/env python3
"""Reference activations and gradients of torchvision's VGG16 (PyTorch, eval mode), for the
engine's layer tests.

    make_reference.py --weights weights/vgg16-random-seed0.safetensors --images a.jpg b.jpg [--size 224]
    make_reference.py --random-init --seed 0 [--random-biases] --random-batch 2 --size 32 [--grads all|activations|none]
    make_reference.py ... [--device cuda] [--precision tf32|fp16|bf16]   (tp7 selftest --reference reads these)

Writes one safetensors file (format_version "1"; see FORMAT below and tools/README.md):
    input            (N,3,S,S) F32  the batch after preprocessing
    tap/<name>       every named activation, conv1_1 ... pool5, avgpool, fc6 ... fc8, logits
    logits           (N,1000) F32   = tap/fc8
    labels           (N,) I64       --labels, or seeded random in [0, 1000)
    loss             (1,) F32       cross-entropy, mean over the batch
    grad/<param>     d loss / d parameter, torchvision state_dict keys   (--grads all)
    grad/<tap>       d loss / d activation                              (--grads all|activations)
    tap_<P>/<name>   with --precision P (tf32, fp16, bf16): every tap of a second, forward-only pass in P
                     (tf32: cuDNN/cuBLAS TF32 allowed; fp16/bf16: model and input cast, taps stored as F32)
On --device cuda the fp32 pass is strict (TF32 off, cuDNN deterministic).
torchvision's ReLUs are in-place; they are made out-of-place here so a conv tap holds the value
before its ReLU.
"""

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tp7_safetensors as st  # noqa: E402
import convert_weights as cw  # noqa: E402

FORMAT_VERSION = "1"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _feature_taps():
    taps = []
    index = 0
    for block, convs in enumerate([2, 2, 3, 3, 3], start=1):
        for c in range(1, convs + 1):
            taps.append((f"conv{block}_{c}", f"features.{index}"))
            taps.append((f"relu{block}_{c}", f"features.{index + 1}"))
            index += 2
        taps.append((f"pool{block}", f"features.{index}"))
        index += 1
    return taps


# The one table from tap names to torchvision modules. classifier.2 and .5 are dropout (identity
# in eval mode) and have no tap. `logits` is fc8 under the name the tests use for the output.
TAPS = _feature_taps() + [
    ("avgpool", "avgpool"),
    ("fc6", "classifier.0"), ("relu6", "classifier.1"),
    ("fc7", "classifier.3"), ("relu7", "classifier.4"),
    ("fc8", "classifier.6"),
]
TAP_NAMES = [name for name, _ in TAPS] + ["logits"]


def load_model(args):
    """(model, weights description, weights sha256). The sha256 is that of the safetensors file
    the weights come from (for --random-init: of the file convert_weights.py --random-init writes)."""
    import torch
    import torchvision
    if args.random_init:
        seed = args.init_seed if args.init_seed is not None else args.seed
        biases = args.random_biases
        model = cw.random_init_model(seed, biases)
        _, sha = st.sha256_of(*cw.random_init_contents(model, seed, biases))
        flag = " --random-biases" if biases else ""
        return model, f"random-init seed {seed}{flag} (= convert_weights.py --random-init --seed {seed}{flag})", sha
    model = torchvision.models.vgg16()
    with st.SafetensorsFile(args.weights) as f:
        expected = model.state_dict()
        missing = [k for k in expected if k not in f]
        extra = [k for k in f.keys() if k not in expected]
        if missing or extra:
            raise cw.ConvertError(f"{args.weights}: not a vgg16 state_dict: missing {missing or 'none'}, "
                                  f"unexpected {extra or 'none'}")
        sd = collections.OrderedDict()
        for k, v in expected.items():
            if tuple(f.shape(k)) != tuple(v.shape) or f.dtype(k) != "F32":
                raise cw.ConvertError(f"{args.weights}: tensor '{k}' is {f.dtype(k)}{list(f.shape(k))}, "
                                      f"expected F32{list(v.shape)}")
            sd[k] = f.to_torch(k)
    model.load_state_dict(sd, strict=True)
    del sd
    return model, args.weights, st.sha256_file(args.weights)


def make_input(args):
    import torch
    if args.images:
        from PIL import Image
        import torchvision.transforms as T
        transform = T.Compose([T.ToTensor(), T.Normalize(mean=MEAN, std=STD)])
        batch = []
        for path in args.images:
            try:
                img = Image.open(path).convert("RGB")
            except (OSError, ValueError) as e:
                raise cw.ConvertError(f"{path}: cannot read image ({e})") from None
            batch.append(transform(img.resize((args.size, args.size), Image.BILINEAR)))
        return torch.stack(batch)
    torch.manual_seed(args.seed)
    return torch.randn(args.random_batch, 3, args.size, args.size)


def make_labels(args, n):
    import torch
    if args.labels is not None:
        if len(args.labels) != n:
            raise cw.ConvertError(f"--labels has {len(args.labels)} values for a batch of {n}")
        if any(not 0 <= y < 1000 for y in args.labels):
            raise cw.ConvertError(f"--labels {args.labels}: each must be in [0, 1000)")
        return torch.tensor(args.labels, dtype=torch.int64)
    g = torch.Generator().manual_seed(args.seed)
    return torch.randint(0, 1000, (n,), generator=g, dtype=torch.int64)


def run(model, x, labels, grads):
    """Forward through the model's own modules, tap by tap, then backward. Returns (taps, loss)."""
    import torch
    import torch.nn.functional as F
    modules = dict(model.named_modules())
    for name, path in TAPS:
        kind = type(modules[path]).__name__
        want = ("Conv2d" if name.startswith("conv") else "ReLU" if name.startswith("relu")
                else "MaxPool2d" if name.startswith("pool") else "AdaptiveAvgPool2d" if name == "avgpool"
                else "Linear")
        if kind != want:
            raise RuntimeError(f"torchvision vgg16 layout changed: {path} is {kind}, expected {want} for {name}")
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False  # keep conv taps as they were before their ReLU
    model.eval()  # dropout off: the gradients are deterministic
    by_path = {path: name for name, path in TAPS}
    taps = collections.OrderedDict()

    def keep(path, value):
        if path in by_path:
            if grads != "none":
                value.retain_grad()
            taps[by_path[path]] = value

    with torch.set_grad_enabled(grads != "none"):
        h = x
        for i, layer in enumerate(model.features):
            h = layer(h)
            keep(f"features.{i}", h)
        h = model.avgpool(h)
        keep("avgpool", h)
        h = torch.flatten(h, 1)
        for i, layer in enumerate(model.classifier):
            h = layer(h)
            keep(f"classifier.{i}", h)
        taps["logits"] = h
        loss = F.cross_entropy(h, labels)  # mean over the batch
        if grads != "none":
            loss.backward()
    # Guard against the tap walk drifting from what the model computes.
    with torch.no_grad():
        full = model(x)
    same = torch.equal(full, taps["logits"].detach()) if x.device.type == "cpu" else \
        (full.float() - taps["logits"].detach().float()).abs().max() <= 1e-3 * full.float().abs().max()
    if not same:  # on a GPU the library may pick other algorithms for the two walks: only a gross drift counts
        raise RuntimeError("tap-by-tap forward differs from model(x); the tap table is out of date")
    return taps, loss


def set_tf32(torch, allowed):
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def reduced_precision_taps(model, x, labels, precision):
    """Every tap of a forward-only pass in `precision`, as float32 on the CPU."""
    import copy
    import torch
    if precision == "tf32":
        set_tf32(torch, True)
        try:
            taps, _ = run(model, x, labels, "none")
        finally:
            set_tf32(torch, False)
    else:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        taps, _ = run(copy.deepcopy(model).to(dtype), x.to(dtype), labels, "none")
    return collections.OrderedDict((k, v.detach().float().cpu()) for k, v in taps.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    w = parser.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="safetensors written by convert_weights.py")
    w.add_argument("--random-init", action="store_true", help="torchvision random init after manual_seed")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="IMG", help="image files (any PIL format)")
    src.add_argument("--random-batch", type=int, metavar="N", help="N standard-normal inputs")
    parser.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for --random-batch inputs, random labels and --random-init (default 0)")
    parser.add_argument("--init-seed", type=int, help="seed for --random-init if it should differ from --seed")
    parser.add_argument("--random-biases", action="store_true",
                        help="with --random-init: the weights of convert_weights.py --random-init --random-biases")
    parser.add_argument("--labels", type=int, nargs="+", help="class index per input (default: seeded random)")
    parser.add_argument("--grads", choices=["all", "activations", "none"], default="all")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where PyTorch runs (default cpu)")
    parser.add_argument("--precision", choices=["fp32", "tf32", "fp16", "bf16"], default="fp32",
                        help="also write every tap of a forward pass in this precision (tap_P/NAME)")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    args = parser.parse_args(argv)
    if args.precision in ("tf32", "fp16") and args.device != "cuda":
        parser.error(f"--precision {args.precision} needs --device cuda (PyTorch's CPU has no {args.precision} convolution)")
    if args.random_batch is not None and args.random_batch < 1:
        parser.error("--random-batch must be >= 1")
    if args.size < 32:
        parser.error("--size must be >= 32 (five 2x2 max-pools)")
    if args.init_seed is not None and not args.random_init:
        parser.error("--init-seed needs --random-init")
    if args.random_biases and not args.random_init:
        parser.error("--random-biases needs --random-init (a --weights file carries its own biases)")

    try:
        import torch
    except ImportError as e:
        print(f"error: make_reference.py needs torch and torchvision ({e})", file=sys.stderr)
        return 1
    t0 = time.time()
    try:
        model, weights, weights_sha = load_model(args)
        x = make_input(args)
        labels = make_labels(args, x.shape[0])
    except (cw.ConvertError, st.SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda: PyTorch sees no CUDA device", file=sys.stderr)
            return 1
        set_tf32(torch, False)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    model, x, labels = model.to(device), x.to(device), labels.to(device)
    taps, loss = run(model, x, labels, args.grads)
    reduced = reduced_precision_taps(model, x, labels, args.precision) if args.precision != "fp32" else {}

    tensors = [("input", x.cpu())]
    tensors += [(f"tap/{name}", t.detach()) for name, t in taps.items()]
    tensors += [(f"tap_{args.precision}/{name}", t) for name, t in reduced.items()]
    # `logits` also at top level (the same values as tap/logits = tap/fc8) for readers that only
    # want the model's output.
    tensors += [("logits", taps["logits"].detach()), ("labels", labels), ("loss", loss.detach().reshape(1).float())]
    if args.grads == "all":
        tensors += [(f"grad/{k}", p.grad) for k, p in model.named_parameters()]
    if args.grads != "none":
        tensors += [(f"grad/{name}", t.grad) for name, t in taps.items()]
    if args.images:
        inputs = {"images": [os.path.basename(p) for p in args.images],
                  "preprocessing": f"PIL Image.open().convert('RGB').resize(({args.size}, {args.size}), "
                                   f"Image.BILINEAR) (PIL's resize filters with support scaled to the "
                                   f"downsampling factor), ToTensor (/255), Normalize(mean={MEAN}, std={STD})"}
    else:
        inputs = {"random_batch": args.random_batch,
                  "preprocessing": f"torch.manual_seed({args.seed}); torch.randn({args.random_batch}, 3, "
                                   f"{args.size}, {args.size}); no normalisation"}
    import PIL
    import torchvision
    metadata = {
        "format_version": FORMAT_VERSION,
        "script": "tools/make_reference.py",
        "command": " ".join(["tools/make_reference.py"] + (argv if argv is not None else sys.argv[1:])),
        "model": "torchvision.models.vgg16, eval mode (dropout off), out-of-place ReLU",
        "weights": weights,
        "weights_sha256": weights_sha,
        "size": str(args.size),
        "seed": str(args.seed),
        "labels": json.dumps(labels.tolist()),
        "loss": "torch.nn.functional.cross_entropy(logits, labels), mean over the batch",
        "grads": args.grads,
        "taps": json.dumps(TAP_NAMES),
        "tap_modules": json.dumps(dict(TAPS)),
        "torch_version": torch.__version__,
        "torch_device": args.device if args.device == "cpu" else f"cuda ({torch.cuda.get_device_name(0)})",
        "precision": args.precision,
        "torchvision_version": torchvision.__version__,
        "pil_version": PIL.__version__,
    }
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in inputs.items()})
    entries = []
    for name, t in tensors:
        if t is None:
            raise RuntimeError(f"no gradient for '{name}'")
        entries.append((name, st.torch_dtype_name(t.dtype), tuple(t.shape), lambda t=t: st.from_torch(t)[2]))
    forward_s = time.time() - t0
    size, sha = st.write(args.out, entries, metadata)
    for name, t in taps.items():
        print(f"  tap/{name:8s} {list(t.shape)}")
    print(f"{args.out}: {len(entries)} tensors, {size:,} bytes ({size / 2**20:.1f} MiB), sha256 {sha}, "
          f"loss {loss.item():.6f}, {forward_s:.1f} s model + {time.time() - t0 - forward_s:.1f} s write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
