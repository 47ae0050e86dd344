#!/usr/bin/env python3
"""The scikit-learn reference of `tp7 sweep` (Engine/Studies/Sweep.cs), for its parity test and its benchmark.

For each (layer, PCA size, C): cross-validation of Pipeline(PCA(svd_solver='full'), LinearSVC) (no PCA step
for size 0) over fixed folds, then a refit at that C on all training rows scored on the test rows.

Features, one of:
    --data DIR --weights W.safetensors [--size S]   PyTorch VGG16 features (reference_pipeline.py's model,
                                                    preprocessing and layers), L2-normalised rows
    --features DIR                                  DIR/<layer>_train.npy, <layer>_test.npy (float32, N x D,
                                                    used as they are), train_labels.npy, test_labels.npy

Folds (the rule tp7 documents, Sweep.FoldOf): the i-th training row of each class, in row order, goes to fold
i mod k; cross_val_score gets the explicit (train, test) index pairs, so nothing is shuffled.
SVM: LinearSVC(C, loss, tol=1e-4, max_iter=1000, random_state=0) with its other defaults (intercept_scaling 1,
one-vs-rest). Mean and std of the fold accuracies are numpy's (ddof=0). Best C per (layer, PCA size): the first
maximum of the CV means over ascending C (GridSearchCV's rule).
PCA inside cross-validation is fitted on each fold's training part, as the Pipeline does; it is fitted once per
fold and reused for every C (a Pipeline refits the same PCA for each C: identical numbers, more time).
Per-layer explained-variance ratios: PCA(largest size) on all training rows.

--n-jobs 1 (default): a plain serial loop, one fit after another (liblinear is single-threaded).
--n-jobs N|-1: GridSearchCV(Pipeline, {C}, cv=the folds, n_jobs, refit=False) per (layer, PCA size), then the
refits in joblib.Parallel(n_jobs); PCA is then refitted for every C as the Pipeline does.

Usage:
    /usr/bin/python3 tools/reference_sweep.py --data data/demo --weights W --size 112 \\
        --layers pool5,fc7 --Cs 0.01,0.1,1 --folds 5 --pca 0,16 --out sweep.json
    /usr/bin/python3 tools/reference_sweep.py --features cache/bench-sweep --layers fc8 --Cs 0.001,0.01 --out t.json

Writes JSON: {"rows": [{layer, pca, C, dim, cv_mean, cv_std, fold_accuracies, selected, test_accuracy,
svm_seconds, pca_seconds, iteration_limit_fits}], "pca": [{layer, dim, explained_variance_ratio, fit_seconds}],
"train_paths", "test_paths" (with --data), "grid_seconds", "n_jobs", "versions"}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_pipeline as rp  # noqa: E402  (PyTorch features: model, preprocessing, layers, listing)


def fold_of(labels: np.ndarray, k: int) -> np.ndarray:
    """The i-th row of each class (row order) -> fold i mod k."""
    seen: dict[int, int] = {}
    fold = np.empty(len(labels), dtype=np.int64)
    for r, label in enumerate(labels.tolist()):
        i = seen.get(label, 0)
        fold[r] = i % k
        seen[label] = i + 1
    return fold


def splits(labels: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    fold = fold_of(labels, k)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def torch_features(args) -> tuple[dict, dict, np.ndarray, np.ndarray, list, list]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    split = rp.make_split(args.data, None, 0)
    index = {c: i for i, c in enumerate(split["classes"])}
    train_items = [(e["path"], index[e["label"]]) for e in split["train"]]
    test_items = [(e["path"], index[e["label"]]) for e in split["test"]]
    model = rp.build_model(args.weights, 0)
    tr, train_kept, _ = rp.extract_layers(model, args.data, train_items, args.layers, args.batch_size, "train", args.size)
    te, test_kept, _ = rp.extract_layers(model, args.data, test_items, args.layers, args.batch_size, "test", args.size)
    train = {l: rp.l2_normalise(tr[l]) for l in args.layers}
    test = {l: rp.l2_normalise(te[l]) for l in args.layers}
    y_train = np.array([l for _, l in train_kept], dtype=np.int64)
    y_test = np.array([l for _, l in test_kept], dtype=np.int64)
    return train, test, y_train, y_test, [p for p, _ in train_kept], [p for p, _ in test_kept]


def npy_features(args) -> tuple[dict, dict, np.ndarray, np.ndarray, list, list]:
    d = args.features
    train = {l: np.load(d / f"{l}_train.npy") for l in args.layers}
    test = {l: np.load(d / f"{l}_test.npy") for l in args.layers}
    return train, test, np.load(d / "train_labels.npy").astype(np.int64), np.load(d / "test_labels.npy").astype(np.int64), [], []


def svc(C: float, loss: str):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=C, loss=loss, tol=1e-4, max_iter=1000, random_state=0)


def fit_counting(model, X, y) -> tuple[object, int]:
    """model.fit; also 1 when liblinear stopped at max_iter (its ConvergenceWarning), else 0."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    return model, int(any(issubclass(w.category, ConvergenceWarning) for w in caught))


def serial_grid(args, Xtr, Xte, ytr, yte, cv) -> tuple[list, float]:
    """One fit after another; PCA once per fold (and once on all rows for the refit) at the largest size."""
    from sklearn.decomposition import PCA

    rows, pca_fit_total = [], 0.0
    sizes = [p for p in args.pca if p > 0]
    k = len(cv)
    parts = [(tr, te) for tr, te in cv] + [(np.arange(len(ytr)), None)]
    # (fold -> (train part rows, evaluation rows, their labels)) per PCA size, transformed once
    spaces, pca_seconds = {0: []}, 0.0
    for f, (tr, te) in enumerate(parts):
        spaces[0].append((Xtr[tr], Xtr[te] if te is not None else Xte, ytr[tr], ytr[te] if te is not None else yte))
    if sizes:
        for p in sizes:
            spaces[p] = []
        for f, (tr, te) in enumerate(parts):
            t0 = time.perf_counter()
            pca = PCA(n_components=max(sizes), svd_solver="full").fit(Xtr[tr])
            pca_seconds += time.perf_counter() - t0
            ztr = pca.transform(Xtr[tr])
            zev = pca.transform(Xtr[te] if te is not None else Xte)
            for p in sizes:
                spaces[p].append((ztr[:, :p], zev[:, :p], ytr[tr], ytr[te] if te is not None else yte))
    for p in args.pca:
        for C in args.Cs:
            acc, seconds, hits = [], 0.0, 0
            for f in range(k + 1):
                xa, xb, ya, yb = spaces[p][f]
                t0 = time.perf_counter()
                model, hit = fit_counting(svc(C, args.loss), xa, ya)
                seconds += time.perf_counter() - t0
                hits += hit
                acc.append(float(np.mean(model.predict(xb) == yb)) if len(yb) else float("nan"))
            rows.append(dict(pca=p, C=C, fold_accuracies=acc[:k], test_accuracy=acc[k], svm_seconds=seconds,
                             pca_seconds=pca_seconds if p else 0.0, iteration_limit_fits=hits))
    return rows, pca_seconds


def parallel_grid(args, Xtr, Xte, ytr, yte, cv) -> tuple[list, float]:
    """GridSearchCV(n_jobs) for the folds, joblib.Parallel(n_jobs) for the refits."""
    from joblib import Parallel, delayed
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    def pipe(p, C):
        steps = [("pca", PCA(n_components=p, svd_solver="full"))] if p else []
        return Pipeline(steps + [("svc", svc(C, args.loss))])

    def refit(p, C):
        t0 = time.perf_counter()
        model, hit = fit_counting(pipe(p, C), Xtr, ytr)
        return float(np.mean(model.predict(Xte) == yte)) if len(yte) else float("nan"), time.perf_counter() - t0, hit

    rows = []
    for p in args.pca:
        gs = GridSearchCV(pipe(p, args.Cs[0]), {"svc__C": list(args.Cs)}, cv=cv, n_jobs=args.n_jobs, refit=False, scoring="accuracy")
        gs.fit(Xtr, ytr)
        refits = Parallel(n_jobs=args.n_jobs)(delayed(refit)(p, C) for C in args.Cs)
        r = gs.cv_results_
        for i, C in enumerate(args.Cs):
            acc = [float(r[f"split{f}_test_score"][i]) for f in range(len(cv))]
            rows.append(dict(pca=p, C=C, fold_accuracies=acc, test_accuracy=refits[i][0],
                             svm_seconds=float(r["mean_fit_time"][i]) * len(cv) + refits[i][1], pca_seconds=0.0,
                             iteration_limit_fits=refits[i][2]))
    return rows, 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="train/ + test/ class folders (PyTorch features)")
    src.add_argument("--features", type=Path, help="folder of <layer>_train.npy, <layer>_test.npy, train_labels.npy, test_labels.npy")
    ap.add_argument("--weights", type=Path, help="VGG16 safetensors (with --data)")
    ap.add_argument("--size", type=int, default=224, help="input height and width (with --data; default 224)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layers", required=True, help="comma-separated, e.g. pool5,fc7,relu7,fc8")
    ap.add_argument("--Cs", required=True, help="comma-separated, ascending")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--pca", default="0", help="comma-separated sizes, 0 = none (default 0)")
    ap.add_argument("--loss", choices=("squared_hinge", "hinge"), default="squared_hinge")
    ap.add_argument("--n-jobs", type=int, default=1, help="1: serial loop (default); N or -1: GridSearchCV(n_jobs)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.layers = [l for l in args.layers.split(",") if l]
    args.Cs = [float(c) for c in args.Cs.split(",")]
    args.pca = [int(p) for p in args.pca.split(",")]
    bad = [l for l in args.layers if l not in rp.LAYERS]
    if bad:
        print(f"error: --layers: unknown {bad}; known {list(rp.LAYERS)}", file=sys.stderr)
        return 1
    if args.data is not None and args.weights is None:
        print("error: --data needs --weights", file=sys.stderr)
        return 1

    import joblib
    import sklearn
    from sklearn.decomposition import PCA

    train, test, ytr, yte, train_paths, test_paths = torch_features(args) if args.data else npy_features(args)
    cv = splits(ytr, args.folds)
    out = dict(rows=[], pca=[], train_paths=train_paths, test_paths=test_paths, n_jobs=args.n_jobs,
               versions=dict(sklearn=sklearn.__version__, numpy=np.__version__, joblib=joblib.__version__))
    t_grid = time.perf_counter()
    for layer in args.layers:
        Xtr, Xte = train[layer], test[layer]
        t0 = time.perf_counter()
        rows, _ = (serial_grid if args.n_jobs == 1 else parallel_grid)(args, Xtr, Xte, ytr, yte, cv)
        best: dict[int, int] = {}
        for i, r in enumerate(rows):
            r.update(layer=layer, dim=r["pca"] or Xtr.shape[1], cv_mean=float(np.mean(r["fold_accuracies"])),
                     cv_std=float(np.std(r["fold_accuracies"])))
            if r["pca"] not in best or r["cv_mean"] > rows[best[r["pca"]]]["cv_mean"]:
                best[r["pca"]] = i
        for i, r in enumerate(rows):
            r["selected"] = best[r["pca"]] == i
        out["rows"] += rows
        print(f"{layer}: {len(rows)} rows in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        sizes = [p for p in args.pca if p > 0]
        if sizes:
            t0 = time.perf_counter()
            pca = PCA(n_components=max(sizes), svd_solver="full").fit(Xtr)
            out["pca"].append(dict(layer=layer, dim=int(Xtr.shape[1]), explained_variance_ratio=pca.explained_variance_ratio_.tolist(),
                                   fit_seconds=time.perf_counter() - t0))
    out["grid_seconds"] = time.perf_counter() - t_grid
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
