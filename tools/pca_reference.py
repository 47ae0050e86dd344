#!/usr/bin/python3
"""Reference PCA for Tests/PcaTests.cs and `tp7 bench pca`: scikit-learn's PCA on an .npy matrix.

Usage: pca_reference.py X.npy OUT_DIR --k K [--solver full|randomized] [--x-test Xt.npy] [--repeat R]
Writes OUT_DIR/mean.npy (D,), components.npy (K, D), explained_variance.npy (K,),
explained_variance_ratio.npy (K,), transformed.npy (N, K) (and transformed_test.npy with --x-test), all float64,
fit_seconds.npy (R,) (wall time of each of R fits), and versions.txt.

The exact solver is the reference: scikit-learn 1.2.1's default svd_solver='auto' switches to a randomized SVD
when max(N, D) > 500 and K < 0.8 min(N, D), whose ratios are only approximate. X is converted to float64 first:
with float32 input scikit-learn runs LAPACK in float32 and the reference would carry float32 rounding.
Signs are scikit-learn's svd_flip(U, Vt) (u-based). Run with /usr/bin/python3 (sklearn 1.2.1).
"""
import argparse
import os
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("x")
    ap.add_argument("out")
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--solver", choices=["full", "randomized"], default="full")
    ap.add_argument("--x-test")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--random-state", type=int, default=0)
    a = ap.parse_args()

    import sklearn
    import scipy
    from sklearn.decomposition import PCA

    X = np.load(a.x)
    if X.ndim != 2:
        sys.exit(f"{a.x}: expected X (N, D), got shape {X.shape}")
    X = X.astype(np.float64)
    times = []
    for _ in range(max(1, a.repeat)):
        pca = PCA(n_components=a.k, svd_solver=a.solver, random_state=a.random_state)
        t0 = time.perf_counter()
        pca.fit(X)
        times.append(time.perf_counter() - t0)
    os.makedirs(a.out, exist_ok=True)

    def save(name, v):
        np.save(os.path.join(a.out, name), np.ascontiguousarray(v, dtype=np.float64))

    save("mean.npy", pca.mean_)
    save("components.npy", pca.components_)
    save("explained_variance.npy", pca.explained_variance_)
    save("explained_variance_ratio.npy", pca.explained_variance_ratio_)
    save("transformed.npy", pca.transform(X))
    if a.x_test:
        save("transformed_test.npy", pca.transform(np.load(a.x_test).astype(np.float64)))
    save("fit_seconds.npy", np.asarray(times))
    with open(os.path.join(a.out, "versions.txt"), "w") as f:
        f.write(f"sklearn {sklearn.__version__} scipy {scipy.__version__} numpy {np.__version__} solver {a.solver}\n")


if __name__ == "__main__":
    main()
