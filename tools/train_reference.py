#!/usr/bin/env python3
"""PyTorch's side of "N optimiser steps of the full VGG16", for the engine's training tests.

    /usr/bin/python3 tools/train_reference.py --weights weights/vgg16-random-seed0-biases.safetensors \\
        --size 32 --batch 2 --steps 5 --optimizer sgd --lr 0.01 --momentum 0.9 --weight-decay 5e-4 \\
        --out out/train-sgd.safetensors
    ... --optimizer adamw --lr 1e-3 --betas 0.9 0.999 --eps 1e-8 --weight-decay 0.01
    ... --random-init --seed 0 --random-biases     # instead of --weights (= convert_weights.py's file)

Model: torchvision vgg16 in eval mode (dropout off, so every step is deterministic), all
parameters trained. Step i (0-based):
    g = torch.Generator().manual_seed(seed + i)
    x = torch.randn(batch, 3, size, size, generator=g)            # then, from the same generator,
    y = torch.randint(0, 1000, (batch,), generator=g)              # int64 labels
    optimizer.zero_grad(); loss = F.cross_entropy(model(x), y) (mean); loss.backward(); optimizer.step()
Optimiser: torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov) or
torch.optim.AdamW(lr, betas, eps, weight_decay, amsgrad=False), with torch 1.13's default
foreach=None, which 1.13 turns into False: the per-tensor loops _single_tensor_sgd/_adamw run, i.e.
    SGD   d = g + wd*p;  buf = d (first step) else buf = momentum*buf + d;
          d = d + momentum*buf if nesterov else buf (when momentum != 0);  p -= lr*d
    AdamW p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  t = step (from 1)
          p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Writes one safetensors file, __metadata__.format_version "1":
    input/{i}    (batch,3,size,size) F32   step i's input
    labels/{i}   (batch,) I64              step i's labels
    logits/{i}   (batch,1000) F32          step i's forward, before its update
    loss         (steps,) F32              step i's loss, before its update
    loss64       (steps,) F64              the same loss recomputed in float64 from the float32 logits
    update/<key> F32                       final minus initial parameter, every torchvision key
                                           (difference taken in float64, then cast)
"""

import json
import math
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_weights as cw  # noqa: E402
import make_reference as mr  # noqa: E402  (weights loading and its checks)
import tp7_args  # noqa: E402
import tp7_safetensors as st  # noqa: E402

FORMAT_VERSION = "1"
CLASSES = 1000
# torch's own defaults where an optimiser has one (SGD has no default lr in torch; 0.01 here).
DEFAULTS = {"sgd": {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
            "adamw": {"lr": 1e-3, "weight_decay": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8}}


def batch(seed, step, n, size):
    """(inputs, labels) of one step: both drawn from one generator seeded with seed + step."""
    import torch
    g = torch.Generator().manual_seed(seed + step)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g, dtype=torch.int64)
    return x, y


def make_optimizer(params, args):
    import torch
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, dampening=0,
                               weight_decay=args.weight_decay, nesterov=args.nesterov)
    return torch.optim.AdamW(params, lr=args.lr, betas=tuple(args.betas), eps=args.eps,
                             weight_decay=args.weight_decay, amsgrad=False)


def optimizer_settings(args):
    """The optimiser's settings as strings (metadata values, report fields)."""
    h = {"optimizer": args.optimizer, "lr": repr(args.lr), "weight_decay": repr(args.weight_decay)}
    if args.optimizer == "sgd":
        h.update(momentum=repr(args.momentum), dampening="0", nesterov=str(args.nesterov).lower())
    else:
        h.update(betas=json.dumps(list(args.betas)), eps=repr(args.eps), amsgrad="false")
    return h


def add_optimizer_args(ap, nesterov=True):
    """--optimizer --lr --momentum [--nesterov] --weight-decay --betas --eps (reference_finetune.py shares them)."""
    ap.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    ap.add_argument("--lr", type=float, help="learning rate (default 0.01 sgd, 1e-3 adamw)")
    ap.add_argument("--momentum", type=float, help="sgd only (default 0)")
    if nesterov:
        ap.add_argument("--nesterov", action="store_true", help="sgd only; needs --momentum > 0")
    ap.add_argument("--weight-decay", type=float, help="sgd: L2 added to the gradient (default 0); "
                    "adamw: decoupled (default 0.01)")
    ap.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="adamw only (default 0.9 0.999)")
    ap.add_argument("--eps", type=float, help="adamw only (default 1e-8)")


def resolve_optimizer_args(ap, args):
    """Refuse settings of the other optimiser, fill in the defaults, check ranges (ap.error on a bad one)."""
    if not hasattr(args, "nesterov"):
        args.nesterov = False
    other = {"sgd": ("betas", "eps"), "adamw": ("momentum", "nesterov")}[args.optimizer]
    given = [f"--{k}" for k in other if getattr(args, k) not in (None, False)]
    if given:
        ap.error(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --optimizer {args.optimizer}")
    for k, v in DEFAULTS[args.optimizer].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.optimizer == "sgd":
        args.betas = args.eps = None
        if args.nesterov and args.momentum <= 0:
            ap.error("--nesterov needs --momentum > 0")
    if args.lr <= 0 or args.weight_decay < 0 or (args.momentum or 0) < 0 or (args.eps is not None and args.eps <= 0):
        ap.error("--lr and --eps must be > 0, --weight-decay and --momentum >= 0")
    if args.betas is not None and not all(0 <= b < 1 for b in args.betas):
        ap.error(f"--betas {args.betas[0]} {args.betas[1]}: each must be in [0, 1)")


def parse_args(argv):
    ap = tp7_args.ArgumentParser(prog="train_reference.py", description=__doc__)
    w = ap.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="VGG16 safetensors, torchvision keys, F32")
    w.add_argument("--random-init", action="store_true", help="convert_weights.py --random-init's weights")
    ap.add_argument("--init-seed", type=int, help="seed for --random-init (default --seed)")
    ap.add_argument("--random-biases", action="store_true", help="with --random-init: random biases too")
    ap.add_argument("--size", type=int, default=32, help="input height = width (default 32)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    add_optimizer_args(ap)
    ap.add_argument("--seed", type=int, default=0, help="batch seeds are seed + step (default 0)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--out", required=True, help="output .safetensors path")
    args = ap.parse_args(argv)

    if args.size < 32:
        ap.error("--size must be >= 32 (five 2x2 max-pools)")
    if args.batch < 1 or args.steps < 1 or args.threads < 1:
        ap.error("--batch, --steps and --threads must be >= 1")
    if (args.init_seed is not None or args.random_biases) and not args.random_init:
        ap.error("--init-seed and --random-biases need --random-init")
    resolve_optimizer_args(ap, args)
    return args


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"error: train_reference.py needs torch and torchvision ({e})", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        if args.weights is not None and not os.path.isfile(args.weights):
            raise cw.ConvertError(f"{args.weights}: no such file")
        model, weights, weights_sha = mr.load_model(SimpleNamespace(
            random_init=args.random_init, weights=args.weights, seed=args.seed, init_seed=args.init_seed,
            random_biases=args.random_biases))
    except (cw.ConvertError, st.SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    model.eval()  # dropout off: the steps are deterministic
    params = list(model.named_parameters())
    initial = {k: p.detach().clone() for k, p in params}
    opt = make_optimizer([p for _, p in params], args)

    inputs, labels, logits_out, losses, losses64, step_s = [], [], [], [], [], []
    for i in range(args.steps):
        x, y = batch(args.seed, i, args.batch, args.size)
        s0 = time.perf_counter()
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        step_s.append(time.perf_counter() - s0)
        inputs.append(x)
        labels.append(y)
        logits_out.append(logits.detach())
        losses.append(loss.item())
        losses64.append(F.cross_entropy(logits.detach().double(), y).item())
        print(f"step {i}: loss {losses[-1]:.6f} ({step_s[-1]:.2f} s)")
        if not math.isfinite(losses[-1]):
            print(f"error: step {i}: loss is {losses[-1]}; lower --lr", file=sys.stderr)
            return 1
    train_s = time.perf_counter() - t0 - load_s

    tensors = []
    for i in range(args.steps):
        tensors += [(f"input/{i}", inputs[i]), (f"labels/{i}", labels[i]), (f"logits/{i}", logits_out[i])]
    tensors += [("loss", torch.tensor(losses, dtype=torch.float32)), ("loss64", torch.tensor(losses64, dtype=torch.float64))]
    entries = [(name, st.torch_dtype_name(t.dtype), tuple(t.shape), lambda t=t: st.from_torch(t)[2]) for name, t in tensors]
    for k, p in params:
        # One update at a time in float64, so the 528 MB of updates never sit in memory twice.
        entries.append((f"update/{k}", "F32", tuple(p.shape),
                        lambda k=k, p=p: st.from_torch((p.detach().double() - initial[k].double()).float())[2]))

    import torchvision
    foreach = opt.defaults.get("foreach")
    metadata = {
        "format_version": FORMAT_VERSION,
        "script": "tools/train_reference.py",
        "command": " ".join(["tools/train_reference.py"] + argv),
        "model": "torchvision.models.vgg16, eval mode (dropout off), every parameter trained",
        "weights": weights,
        "weights_sha256": weights_sha,
        "batches": "step i: g = torch.Generator().manual_seed(seed + i); x = torch.randn(batch, 3, size, size, "
                   "generator=g); y = torch.randint(0, 1000, (batch,), generator=g)",
        "loss": "torch.nn.functional.cross_entropy(logits, labels), mean over the batch, before the step's update",
        "loss64": "cross_entropy(logits.double(), labels) of the same float32 logits",
        "update": "final minus initial parameter, difference of the float32 values in float64, cast to float32",
        "foreach": "None (torch 1.13's default: the per-tensor _single_tensor_* loop runs)" if foreach is None
                   else str(foreach),
        "threads": str(torch.get_num_threads()),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    metadata.update(optimizer_settings(args))
    metadata.update(steps=str(args.steps), batch=str(args.batch), size=str(args.size), seed=str(args.seed))
    size, sha = st.write(args.out, entries, metadata)
    total = time.perf_counter() - t0
    print(f"{args.out}: {len(entries)} tensors, {size:,} bytes ({size / 2**20:.1f} MiB), sha256 {sha}, "
          f"loss {losses[0]:.6f} -> {losses[-1]:.6f}; {load_s:.1f} s load + {train_s:.1f} s train "
          f"+ {total - load_s - train_s:.1f} s write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
