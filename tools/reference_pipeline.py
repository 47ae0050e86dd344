#!/usr/bin/env python3
"""The PyTorch + scikit-learn lab that tp7 replaces, kept as the reference for parity checks.

    image folder -> VGG16 (torchvision, eval) -> one layer's activations -> L2 rows -> LinearSVC

Usage (use /usr/bin/python3: torch 1.13, torchvision 0.14, scikit-learn 1.2.1, PIL 9.4):
    /usr/bin/python3 tools/reference_pipeline.py --random-init --seed 0 --data data/demo --out out/ref-demo
    /usr/bin/python3 tools/reference_pipeline.py --weights weights/vgg16.safetensors \\
        --data data/15scene --train-per-class 100 --seed 0 --layer relu7 --C 1 --out out/ref-15scene
    ... --split-file split.json        # use the split tp7 wrote instead of making one

Weights: --weights FILE.safetensors holds float32 tensors under torchvision's VGG16 state_dict keys
(read here by a small numpy reader, no safetensors package). --random-init builds torchvision's own
random initialisation after torch.manual_seed(--init-seed, default --seed).

Dataset rules. tp7 lists layout A the same way when each class folder holds only image files, directly;
otherwise it differs: it keeps only the extensions jpg jpeg png bmp gif tif tiff webp (any case), also
looks into subfolders of a class folder, and accepts training/ and testing/ (any case). It splits layout
B with its own generator (SplitMix64 seeded from the seed and the class name, Engine/Data/DatasetLoader.cs)
and refuses a class of exactly N files, so for a parity check use layout A (Tests/PipelineParityTests.cs does).
This script's rules:
  * Layout A: DATA/train/<class>/* and DATA/test/<class>/*. Layout B: DATA/<class>/* plus
    --train-per-class N. Class names are the folder names of DATA/train (A) or DATA (B); every
    test class must also be a train class. Folders and files whose names start with '.' are ignored.
  * Ordering is ordinal: names compare by UTF-16 code units (C#'s string.CompareOrdinal); here
    sorted(key=name.encode('utf-16-be')). Class index = position in that order.
  * Files are every regular file directly inside a class folder; no extension filter. A file PIL
    cannot decode is skipped with a message when its features are extracted, after the split.
  * Split (layout B): rng = numpy.random.RandomState(seed) (MT19937, init_genrand(seed)), created
    once. For each class in class order, with its n files in ordinal order:
        perm = rng.permutation(n)                  # numpy's legacy shuffle, see below
        train = files[sorted(perm[:N])], test = files[sorted(perm[N:])]
    rng.permutation(n) starts from [0..n-1] and for i = n-1 down to 1 swaps a[i] with a[j],
    j uniform in [0, i]: mask = the smallest 2^k - 1 >= i, draw 32-bit MT19937 outputs u until
    (u & mask) <= i, j = u & mask. tools/test_pytools.py pins this against numpy.
    A class with fewer than N files is an error; exactly N leaves it with no test images.
  * The split actually used is written to OUT/split.json and can be given back with --split-file:
      {"format": "tp7-split", "version": 1, "classes": [...],
       "train": [{"path": "bedroom/image_0001.jpg", "label": "bedroom"}, ...], "test": [...]}
    Paths are relative to --data with '/' separators.

Preprocessing (the lab's torchvision pipeline): PIL open, convert("RGB") (grayscale is copied to
three channels), resize((224, 224), BILINEAR) (PIL's filter, which widens its support when
shrinking, i.e. antialiases), ToTensor (/255), Normalize(mean=[0.485, 0.456, 0.406],
std=[0.229, 0.224, 0.225]).

Layers: pool5 = features + avgpool (identity at 224x224) flattened, 25088; fc6 / fc7 = the Linear
outputs before ReLU, 4096; relu6 / relu7 after it; fc8 = logits, 1000. They are computed with the
model's own Linear modules and a non-inplace ReLU, because torchvision's ReLU(inplace=True) would
overwrite a hooked fc6/fc7 output.

SVM: sklearn.svm.LinearSVC(C=C) with its defaults (squared hinge, L2 penalty, dual, tol 1e-4,
intercept_scaling 1, one-vs-rest, max_iter 1000) and random_state=0 so liblinear's coordinate
order, and hence the result, is reproducible.

OUT/ gets: report.json (accuracy, per-class accuracy, confusion matrix [true][predicted], class
names, settings, timings), predictions.csv (path,true,predicted), split.json, train.npy and
test.npy (float32 rows fed to the SVM, i.e. after L2 unless --no-l2), train_labels.npy and
test_labels.npy (int32 class indices), test_scores.npy (float64 decision_function, N x classes).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_weights as cw  # noqa: E402  (the VGG16 shape table)
import tp7_safetensors as st  # noqa: E402  (the safetensors reader shared by the tools)

LAYERS = ("pool5", "fc6", "relu6", "fc7", "relu7", "fc8")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_FORMAT, SPLIT_VERSION = "tp7-split", 1


class PipelineError(Exception):
    """Bad input; main() prints it as one line."""


# ----------------------------------------------------------------------------- safetensors

def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """safetensors file -> {key: float32 array}, through the tools' shared reader (tp7_safetensors), which
    validates the whole header (offsets, byte counts, coverage) before anything is read."""
    try:
        with st.SafetensorsFile(path) as f:
            out = {}
            for key in f.keys():
                if f.dtype(key) not in ("F32", "F16", "F64"):
                    raise PipelineError(f"{path}: tensor '{key}' has dtype {f.dtype(key)}; this reader takes F32, F16 or F64")
                out[key] = f.to_numpy(key).astype(np.float32)
            return out
    except st.SafetensorsError as e:
        raise PipelineError(str(e)) from e


# ----------------------------------------------------------------------------- model

def vgg16_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision VGG16 state_dict keys -> shapes, in state_dict order (convert_weights.py's table)."""
    return dict(cw.VGG16_SHAPES)


def check_vgg16_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    expected = vgg16_shapes()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise PipelineError(f"{path}: not torchvision VGG16 keys; missing {missing[:4]}"
                            f"{'...' if len(missing) > 4 else ''}, unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise PipelineError(f"{path}: tensor '{k}' has shape {list(tensors[k].shape)}, expected {list(shape)}")


def build_model(weights: Path | None, init_seed: int):
    """VGG16 in eval mode: weights from a safetensors file (checked before the model is built),
    or torchvision's random initialisation after torch.manual_seed(init_seed)."""
    import torch
    import torchvision

    if weights is None:
        torch.manual_seed(init_seed)
        return torchvision.models.vgg16(weights=None).eval()
    tensors = read_safetensors(weights)
    check_vgg16_tensors(weights, tensors)
    model = torchvision.models.vgg16(weights=None)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in tensors.items()})
    return model.eval()


def preprocess(path: Path, size: int = 224):
    """File -> (3, size, size) float tensor, exactly the lab's transform chain (size 224)."""
    import torch
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def layer_output(model, x, layer: str):
    """(N, 3, 224, 224) -> (N, D) activations of `layer`; see the header for why not hooks."""
    return layer_outputs(model, x, (layer,))[layer]


def layer_outputs(model, x, layers) -> dict:
    """(N, 3, H, W) -> {layer: (N, D)} for several layers from one forward pass, stopping at the last one needed."""
    import torch

    cls = model.classifier  # [Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear]
    steps = (("pool5", lambda h: h), ("fc6", cls[0]), ("relu6", torch.relu),
             ("fc7", cls[3]),  # Dropout is the identity in eval mode
             ("relu7", torch.relu), ("fc8", cls[6]))
    last = max(LAYERS.index(layer) for layer in layers)
    f = model.features(x)
    # pool5 is the last max pool's output, as tp7's tap is; the adaptive average pool that feeds fc6 is the
    # identity at 224x224 and spreads a smaller map to 7x7 (25088 inputs) at other sizes.
    out = {"pool5": torch.flatten(f, 1)} if "pool5" in layers else {}
    h = torch.flatten(model.avgpool(f), 1)  # (N, 25088)
    for name, step in steps[1:last + 1]:
        h = step(h)
        if name in layers:
            out[name] = h
    return out


def extract(model, root: Path, items: list[tuple[str, int]], layer: str, batch: int, what: str):
    """Features for (relative path, label) items; undecodable files are skipped with a message.
    Returns (float32 (N, D), kept items, skipped [(path, reason)])."""
    feats, kept, skipped = extract_layers(model, root, items, (layer,), batch, what)
    return feats[layer], kept, skipped


def extract_layers(model, root: Path, items: list[tuple[str, int]], layers, batch: int, what: str, size: int = 224):
    """extract() for several layers from one forward pass at input size `size`:
    ({layer: float32 (N, D)}, kept items, skipped)."""
    import torch

    feats, kept, skipped = [], [], []
    pending_x, pending_items = [], []
    started, done = time.perf_counter(), 0

    def flush():
        nonlocal done
        if not pending_x:
            return
        with torch.no_grad():
            out = layer_outputs(model, torch.stack(pending_x), layers)
            feats.append({k: v.numpy().astype(np.float32) for k, v in out.items()})
        kept.extend(pending_items)
        done += len(pending_x)
        pending_x.clear()
        pending_items.clear()
        rate = done / (time.perf_counter() - started)
        print(f"\r  {what}: {done}/{len(items)} images, {rate:.2f} img/s", end="", file=sys.stderr, flush=True)

    for rel, label in items:
        try:
            pending_x.append(preprocess(root / rel, size))
        except Exception as e:  # PIL raises several types for bad files; all mean "skip it"
            print(f"\nskipping {root / rel}: {type(e).__name__}: {e}", file=sys.stderr)
            skipped.append((rel, f"{type(e).__name__}: {e}"))
            continue
        pending_items.append((rel, label))
        if len(pending_x) == batch:
            flush()
    flush()
    print(file=sys.stderr)
    if not feats:
        raise PipelineError(f"{root}: no decodable image in the {what} set")
    return {layer: np.concatenate([f[layer] for f in feats]) for layer in layers}, kept, skipped


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (norm in float64); all-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)))
    norms[norms == 0] = 1.0
    return (x / norms[:, None]).astype(np.float32)


# ----------------------------------------------------------------------------- dataset

def _ordinal(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _visible_dirs(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: _ordinal(p.name))


def _visible_files(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: _ordinal(p.name))


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def list_train_test(train_dir: Path, test_dir: Path, train_root: Path, test_root: Path) -> tuple[list, list, list]:
    """Layout A: (classes, train entries, test entries) from two folders of class folders; entry
    paths are relative to train_root / test_root (for --data both are DATA)."""
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise PipelineError(f"{d}: no such folder")
    classes = [d.name for d in _visible_dirs(train_dir)]
    test_classes = [d.name for d in _visible_dirs(test_dir)]
    unknown = [c for c in test_classes if c not in classes]
    if unknown:
        raise PipelineError(f"{test_dir}: class folders {unknown} have no counterpart in {train_dir}")
    train = [{"path": _rel(f, train_root), "label": c} for c in classes for f in _visible_files(train_dir / c)]
    test = [{"path": _rel(f, test_root), "label": c} for c in test_classes for f in _visible_files(test_dir / c)]
    return classes, train, test


def make_split(root: Path, train_per_class: int | None, seed: int) -> dict:
    """The split for --data, following the rules in the header."""
    if not root.is_dir():
        raise PipelineError(f"{root}: no such folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train, test = list_train_test(root / "train", root / "test", root, root)
    else:
        if train_per_class is None:
            raise PipelineError(f"{root}: no train/ and test/ folders; pass --train-per-class N to split the class folders")
        if train_per_class < 1:
            raise PipelineError(f"--train-per-class must be at least 1, got {train_per_class}")
        rng = np.random.RandomState(seed)
        classes, train, test = [], [], []
        for d in _visible_dirs(root):
            files = _visible_files(d)
            if len(files) < train_per_class:
                raise PipelineError(f"{d}: {len(files)} files, fewer than --train-per-class {train_per_class}")
            perm = rng.permutation(len(files))
            classes.append(d.name)
            train += [{"path": _rel(files[i], root), "label": d.name} for i in sorted(perm[:train_per_class])]
            test += [{"path": _rel(files[i], root), "label": d.name} for i in sorted(perm[train_per_class:])]
    if len(classes) < 2:
        raise PipelineError(f"{root}: {len(classes)} class folder(s); a classifier needs at least 2")
    return {"format": SPLIT_FORMAT, "version": SPLIT_VERSION, "classes": classes, "train": train, "test": test}


def read_split(path: Path, root: Path) -> dict:
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: cannot read split file ({e})") from e
    if not isinstance(split, dict) or split.get("format") != SPLIT_FORMAT:
        raise PipelineError(f"{path}: not a {SPLIT_FORMAT} file (missing \"format\": \"{SPLIT_FORMAT}\")")
    if split.get("version") != SPLIT_VERSION:
        raise PipelineError(f"{path}: split format version {split.get('version')}, this script reads {SPLIT_VERSION}")
    classes = split.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes):
        raise PipelineError(f"{path}: \"classes\" must list at least 2 distinct names")
    for part in ("train", "test"):
        entries = split.get(part)
        if not isinstance(entries, list) or not entries:
            raise PipelineError(f"{path}: \"{part}\" must be a non-empty list")
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("path"), str) or e.get("label") not in classes:
                raise PipelineError(f"{path}: {part}[{i}] = {e!r}; expected {{\"path\": str, \"label\": one of classes}}")
            if not (root / e["path"]).is_file():
                raise PipelineError(f"{path}: {part}[{i}] names {root / e['path']}, which does not exist")
    return split


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="VGG16 weights, float32 safetensors with torchvision keys")
    src.add_argument("--random-init", action="store_true", help="torchvision's random initialisation")
    ap.add_argument("--seed", type=int, default=0, help="split seed, and init seed unless --init-seed (default 0)")
    ap.add_argument("--init-seed", type=int, help="torch.manual_seed for --random-init (default --seed)")
    ap.add_argument("--data", type=Path, required=True, help="train/ + test/ class folders, or one folder of class folders")
    ap.add_argument("--train-per-class", type=int, help="split one folder: N training images per class")
    ap.add_argument("--split-file", type=Path, help="use this tp7-split JSON instead of making a split")
    ap.add_argument("--layer", choices=LAYERS, default="relu7")
    ap.add_argument("--C", type=float, default=1.0, help="LinearSVC C (default 1)")
    ap.add_argument("--no-l2", action="store_true", help="feed raw activations to the SVM")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("out/reference"))
    args = ap.parse_args(argv)
    init_seed = args.seed if args.init_seed is None else args.init_seed

    try:
        return _run(args, init_seed)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, init_seed: int) -> int:
    import sklearn
    import torch
    import torchvision
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    if args.threads:
        torch.set_num_threads(args.threads)
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)
        print(f"[{name}] {timings[name]:.2f} s")

    t0 = time.perf_counter()
    split = read_split(args.split_file, args.data) if args.split_file else make_split(args.data, args.train_per_class, args.seed)
    classes = split["classes"]
    index = {c: i for i, c in enumerate(classes)}
    train_items = [(e["path"], index[e["label"]]) for e in split["train"]]
    test_items = [(e["path"], index[e["label"]]) for e in split["test"]]
    print(f"{args.data}: {len(classes)} classes, {len(train_items)} train / {len(test_items)} test files")
    stage("list", t0)

    t0 = time.perf_counter()
    model = build_model(args.weights, init_seed)
    stage("load_model", t0)

    t0 = time.perf_counter()
    x_train, train_kept, skipped_train = extract(model, args.data, train_items, args.layer, args.batch_size, "train")
    stage("extract_train", t0)
    t0 = time.perf_counter()
    x_test, test_kept, skipped_test = extract(model, args.data, test_items, args.layer, args.batch_size, "test")
    stage("extract_test", t0)
    per_image = (timings["extract_train"] + timings["extract_test"]) / (len(train_kept) + len(test_kept))
    print(f"  {per_image:.3f} s/image for {args.layer} features of width {x_train.shape[1]}")

    if not args.no_l2:
        x_train, x_test = l2_normalise(x_train), l2_normalise(x_test)
    y_train = np.array([l for _, l in train_kept], dtype=np.int32)
    y_test = np.array([l for _, l in test_kept], dtype=np.int32)
    if len(set(y_train.tolist())) < 2:
        raise PipelineError(f"{args.data}: the training set has images of fewer than 2 classes")

    t0 = time.perf_counter()
    svm = LinearSVC(C=args.C, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(x_train, y_train)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged:
        print(f"warning: LinearSVC stopped at max_iter={svm.max_iter} before reaching tol={svm.tol}", file=sys.stderr)
    stage("svm_fit", t0)

    t0 = time.perf_counter()
    scores = svm.decision_function(x_test)
    if scores.ndim == 1:  # binary: sklearn returns the score of class 1 only
        scores = np.stack([-scores, scores], axis=1)
    pred = svm.classes_[np.argmax(scores, axis=1)].astype(np.int32)
    stage("svm_predict", t0)

    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_test, pred), 1)
    accuracy = float(np.mean(pred == y_test))
    per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None) for i, c in enumerate(classes)}

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "train.npy", x_train)
    np.save(out / "test.npy", x_test)
    np.save(out / "train_labels.npy", y_train)
    np.save(out / "test_labels.npy", y_test)
    np.save(out / "test_scores.npy", scores.astype(np.float64))
    (out / "split.json").write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted"])
        for (rel, label), p in zip(test_kept, pred):
            w.writerow([rel, classes[label], classes[p]])
    report = {
        "accuracy": accuracy,
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "class_names": classes,
        "n_train": len(train_kept),
        "n_test": len(test_kept),
        "skipped": [{"path": p, "reason": r} for p, r in skipped_train + skipped_test],
        "settings": {
            "data": str(args.data),
            "weights": str(args.weights) if args.weights else None,
            "random_init_seed": init_seed if args.random_init else None,
            "split_seed": args.seed,
            "train_per_class": args.train_per_class,
            "split_file": str(args.split_file) if args.split_file else None,
            "layer": args.layer,
            "feature_dim": int(x_train.shape[1]),
            "l2": not args.no_l2,
            "C": args.C,
            "svm": "sklearn.svm.LinearSVC(squared_hinge, l2, dual, tol=1e-4, intercept_scaling=1, max_iter=1000, random_state=0)",
            "svm_iterations": int(np.max(svm.n_iter_)),
            "svm_converged": converged,
            "preprocess": "PIL convert(RGB), resize((224,224), BILINEAR), ToTensor, Normalize(ImageNet)",
            "torch": torch.__version__, "torchvision": torchvision.__version__, "sklearn": sklearn.__version__,
            "threads": torch.get_num_threads(),
        },
        "timings_s": timings,
        "seconds_per_image": round(per_image, 4),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    width = max(len(c) for c in classes)
    for c in classes:
        a = per_class[c]
        print(f"  {c:<{width}}  {'n/a' if a is None else f'{100 * a:5.1f}%'}")
    print(f"accuracy {100 * accuracy:.2f}% ({int((pred == y_test).sum())}/{len(y_test)}), layer {args.layer}, "
          f"C={args.C}, {'L2' if not args.no_l2 else 'raw'} features; wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
