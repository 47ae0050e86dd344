#!/usr/bin/env python3
"""PyTorch's side of `tp7 finetune --tune head --no-shuffle --dropout 0`: a new Linear(4096, classes)
head trained on VGG16's relu7 features of a dataset folder.

    /usr/bin/python3 tools/reference_finetune.py --write-init out/head-init.safetensors --classes 10 --seed 0
    /usr/bin/python3 tools/reference_finetune.py --data data/demo --weights weights/vgg16-random-seed0-biases.safetensors \\
        --init out/head-init.safetensors --epochs 3 --batch 16 --optimizer sgd --lr 0.01 --momentum 0.9 \\
        --out out/ref-finetune
    ... --train DIR --test DIR        # two folders of class folders instead of --data
    ... --data DIR --split-file split.json | --train-per-class N   # layout B, as reference_pipeline.py

Dataset, image preprocessing and relu7 features are reference_pipeline.py's (imported, not copied;
its header has the listing rules): classes are the train class folders in ordinal order, files in
ordinal order, every file of a class folder, undecodable files skipped with a message; each image is
resized to 224x224 (PIL BILINEAR) and normalised; features come from eval-mode VGG16 without grad.

Training: head = torch.nn.Linear(4096, classes) with weight and bias from --init (classifier.6.weight
(classes, 4096), classifier.6.bias (classes,), F32). Each epoch walks the training features in
listing order in consecutive batches of --batch (the last, partial batch is kept); per batch:
zero_grad, loss = F.cross_entropy(head(x), y) (mean over the batch), backward, optimiser step.
No dropout, no shuffle, no augmentation. SGD/AdamW as in train_reference.py (torch 1.13 defaults).

--write-init FILE --classes N --seed S: torch.manual_seed(S); torch.nn.Linear(4096, N) (PyTorch's
default init), written as classifier.6.weight / classifier.6.bias, for `tp7 finetune --init`.

OUT/ gets:
    predictions.csv   path,true,pred of each test image (path relative to --data, or to --test)
    report.json       accuracy, epoch_loss (per epoch: mean over the training images of the loss
                      before each batch's update, i.e. sum(batch mean * batch size) / N, in float64),
                      batch_loss (per epoch, per batch), class_names, command, per-class accuracy,
                      confusion [true][pred], settings, timings
    head.safetensors  the trained classifier.6.weight / classifier.6.bias, and test_logits
                      (n_test, classes) F32
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_pipeline as rp  # noqa: E402  (listing, preprocessing, VGG16 features)
import tp7_args  # noqa: E402
import tp7_safetensors as st  # noqa: E402
import train_reference as tr  # noqa: E402  (the optimiser arguments and construction)

FEATURES = 4096
LAYER = "relu7"
INIT_KEYS = ("classifier.6.weight", "classifier.6.bias")


def write_init(path: Path, classes: int, seed: int, command: str) -> tuple[int, str]:
    """PyTorch's default Linear(4096, classes) init after torch.manual_seed(seed)."""
    import torch
    torch.manual_seed(seed)
    head = torch.nn.Linear(FEATURES, classes)
    metadata = {"format_version": "1", "script": "tools/reference_finetune.py", "command": command,
                "classes": str(classes), "seed": str(seed),
                "init": f"torch.manual_seed({seed}); torch.nn.Linear({FEATURES}, {classes}) "
                        f"(weight kaiming_uniform_(a=sqrt(5)), bias U(-1/sqrt({FEATURES}), 1/sqrt({FEATURES})))",
                "torch_version": torch.__version__}
    entries = [(k, "F32", tuple(t.shape), lambda t=t: st.from_torch(t.detach())[2])
               for k, t in zip(INIT_KEYS, (head.weight, head.bias))]
    return st.write(str(path), entries, metadata)


def read_init(path: Path, classes: int):
    """(weight (classes, 4096), bias (classes,)) float32 tensors from an --init file."""
    if not Path(path).is_file():
        raise rp.PipelineError(f"{path}: no such file (write one with --write-init FILE --classes {classes} --seed S)")
    try:
        with st.SafetensorsFile(path) as f:
            missing = [k for k in INIT_KEYS if k not in f]
            if missing:
                raise rp.PipelineError(f"{path}: no tensor {missing[0]!r} (an --init file holds {' and '.join(INIT_KEYS)})")
            out = []
            for k, shape in zip(INIT_KEYS, ((classes, FEATURES), (classes,))):
                if f.dtype(k) != "F32" or tuple(f.shape(k)) != shape:
                    raise rp.PipelineError(f"{path}: tensor '{k}' is {f.dtype(k)}{list(f.shape(k))}, expected "
                                           f"F32{list(shape)} for {classes} classes")
                out.append(f.to_torch(k).clone())
            return out
    except (OSError, st.SafetensorsError) as e:
        raise rp.PipelineError(f"{path}: {e}" if isinstance(e, OSError) else str(e)) from e


def train_head(x, y, weight, bias, args):
    """Head training as the header says. x (N, 4096) float32, y (N,) int64 tensors.
    Returns (head, [per-epoch mean loss], [[per-batch loss]])."""
    import torch
    import torch.nn.functional as F
    head = torch.nn.Linear(FEATURES, weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    opt = tr.make_optimizer(list(head.parameters()), args)
    n = x.shape[0]
    epoch_loss, batch_loss = [], []
    for _ in range(args.epochs):
        losses, total = [], 0.0
        for b in range(0, n, args.batch):
            xb, yb = x[b:b + args.batch], y[b:b + args.batch]
            opt.zero_grad()
            loss = F.cross_entropy(head(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            total += loss.item() * xb.shape[0]
        epoch_loss.append(total / n)
        batch_loss.append(losses)
    return head, epoch_loss, batch_loss


def parse_args(argv: list[str]):
    ap = tp7_args.ArgumentParser(prog="reference_finetune.py", description=__doc__)
    ap.add_argument("--write-init", type=Path, metavar="FILE", help="write a head init file and stop")
    ap.add_argument("--classes", type=int, help="with --write-init: number of classes")
    ap.add_argument("--data", type=Path, help="train/ + test/ class folders (or class folders with --train-per-class)")
    ap.add_argument("--train", type=Path, help="training class folders (with --test, instead of --data)")
    ap.add_argument("--test", type=Path, help="test class folders (with --train)")
    ap.add_argument("--train-per-class", type=int, help="layout B: split --data's class folders (reference_pipeline's rule)")
    ap.add_argument("--split-file", type=Path, help="layout B: the tp7-split JSON to use")
    w = ap.add_mutually_exclusive_group()
    w.add_argument("--weights", type=Path, help="VGG16 weights, float32 safetensors with torchvision keys")
    w.add_argument("--random-init", action="store_true", help="torchvision's random init after torch.manual_seed(--seed)")
    ap.add_argument("--seed", type=int, default=0, help="--random-init / --write-init / split seed (default 0)")
    ap.add_argument("--init", type=Path, help="safetensors with the initial classifier.6.weight and classifier.6.bias")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    tr.add_optimizer_args(ap, nesterov=False)
    ap.add_argument("--extract-batch", type=int, default=16, help="images per VGG16 forward (default 16)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--out", type=Path, help="output folder")
    args = ap.parse_args(argv)

    if args.write_init is not None:
        extra = [f"--{k.replace('_', '-')}" for k in ("data", "train", "test", "weights", "init", "out", "split_file")
                 if getattr(args, k) is not None] + (["--random-init"] if args.random_init else [])
        if extra:
            ap.error(f"--write-init takes only --classes and --seed, not {' '.join(extra)}")
        if args.classes is None or args.classes < 2:
            ap.error("--write-init needs --classes N with N >= 2")
        return args
    if args.classes is not None:
        ap.error("--classes applies to --write-init only (training takes the class count from the data)")
    if (args.data is None) == (args.train is None and args.test is None):
        ap.error("give either --data DIR or --train DIR --test DIR")
    if args.data is None and (args.train is None or args.test is None):
        ap.error("--train and --test go together")
    if args.data is None and (args.train_per_class is not None or args.split_file is not None):
        ap.error("--train-per-class and --split-file apply to --data")
    if args.weights is None and not args.random_init:
        ap.error("give --weights FILE or --random-init")
    for k in ("init", "out"):
        if getattr(args, k) is None:
            ap.error(f"--{k} is required for training")
    if args.epochs < 1 or args.batch < 1 or args.extract_batch < 1 or args.threads < 1:
        ap.error("--epochs, --batch, --extract-batch and --threads must be >= 1")
    tr.resolve_optimizer_args(ap, args)
    return args


def listing(args) -> tuple[dict, Path, Path]:
    """(split, train root, test root): entry paths are relative to their root."""
    if args.data is not None:
        if args.split_file is not None:
            return rp.read_split(args.split_file, args.data), args.data, args.data
        return rp.make_split(args.data, args.train_per_class, args.seed), args.data, args.data
    classes, train, test = rp.list_train_test(args.train, args.test, args.train, args.test)
    if len(classes) < 2:
        raise rp.PipelineError(f"{args.train}: {len(classes)} class folder(s); a classifier needs at least 2")
    return {"format": rp.SPLIT_FORMAT, "version": rp.SPLIT_VERSION, "classes": classes, "train": train, "test": test}, \
        args.train, args.test


def run(args, command: str) -> int:
    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    split, train_root, test_root = listing(args)
    classes = split["classes"]
    index = {c: i for i, c in enumerate(classes)}
    weight, bias = read_init(args.init, len(classes))
    train_items = [(e["path"], index[e["label"]]) for e in split["train"]]
    test_items = [(e["path"], index[e["label"]]) for e in split["test"]]
    if not test_items:
        raise rp.PipelineError("the test set is empty")
    print(f"{len(classes)} classes, {len(train_items)} train / {len(test_items)} test files")
    if args.weights is not None and not args.weights.is_file():
        raise rp.PipelineError(f"{args.weights}: no such file")
    model = rp.build_model(args.weights, args.seed)
    timings["load"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    x_train, train_kept, skipped_train = rp.extract(model, train_root, train_items, LAYER, args.extract_batch, "train")
    x_test, test_kept, skipped_test = rp.extract(model, test_root, test_items, LAYER, args.extract_batch, "test")
    del model
    timings["features"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    y_train = torch.tensor([l for _, l in train_kept], dtype=torch.int64)
    y_test = np.array([l for _, l in test_kept], dtype=np.int64)
    head, epoch_loss, batch_loss = train_head(torch.from_numpy(x_train), y_train, weight, bias, args)
    with torch.no_grad():
        logits = head(torch.from_numpy(x_test))
    pred = np.argmax(logits.numpy(), axis=1)  # ties: the lower class index
    timings["train"] = round(time.perf_counter() - t0, 3)

    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_test, pred), 1)
    accuracy = float(np.mean(pred == y_test))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "pred"])
        for (rel, label), p in zip(test_kept, pred):
            w.writerow([rel, classes[label], classes[p]])
    st.write(str(out / "head.safetensors"),
             [(name, "F32", tuple(t.shape), lambda t=t: st.from_torch(t.detach())[2])
              for name, t in (("classifier.6.weight", head.weight), ("classifier.6.bias", head.bias), ("test_logits", logits))],
             {"format_version": "1", "script": "tools/reference_finetune.py", "command": command, "classes": json.dumps(classes)})
    report = {
        "accuracy": accuracy,
        "epoch_loss": epoch_loss,
        "batch_loss": batch_loss,
        "class_names": classes,
        "command": command,
        "per_class_accuracy": {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                               for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
        "n_train": len(train_kept),
        "n_test": len(test_kept),
        "skipped": [{"path": p, "reason": r} for p, r in skipped_train + skipped_test],
        "settings": {
            "data": str(args.data) if args.data else None, "train": str(train_root), "test": str(test_root),
            "split_file": str(args.split_file) if args.split_file else None, "train_per_class": args.train_per_class,
            "weights": str(args.weights) if args.weights else None,
            "random_init_seed": args.seed if args.random_init else None,
            "init": str(args.init), "init_sha256": st.sha256_file(args.init),
            "layer": LAYER, "epochs": args.epochs, "batch": args.batch, "shuffle": False, "dropout": 0,
            **tr.optimizer_settings(args),
            "loss": "cross_entropy mean over each batch; epoch_loss = sum(batch loss * batch size) / n_train",
            "torch": torch.__version__, "torchvision": torchvision.__version__, "threads": torch.get_num_threads(),
        },
        "timings_s": timings,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print("epoch loss " + " ".join(f"{l:.6f}" for l in epoch_loss))
    print(f"accuracy {100 * accuracy:.2f}% ({int((pred == y_test).sum())}/{len(y_test)}); wrote {out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = " ".join(["tools/reference_finetune.py"] + argv)
    try:
        if args.write_init is not None:
            size, sha = write_init(args.write_init, args.classes, args.seed, command)
            print(f"{args.write_init}: Linear({FEATURES}, {args.classes}) init, seed {args.seed}, {size:,} bytes, sha256 {sha}")
            return 0
        return run(args, command)
    except (rp.PipelineError, st.SafetensorsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
