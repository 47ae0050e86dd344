#!/usr/bin/python3
"""Reference linear SVM for Tests/SvmTests.cs: scikit-learn's LinearSVC (its bundled liblinear) on .npy input.

Usage: svm_reference.py X.npy y.npy OUT_DIR [--x-test X_test.npy] --C 1 --loss squared_hinge --tol 1e-4
       --max-iter 1000 --intercept-scaling 1
Writes OUT_DIR/coef.npy (classifiers, D) float64, intercept.npy (classifiers,) float64, pred.npy (N,) int64
(predictions on the training rows), pred_test.npy (with --x-test), classes.npy (int64), n_iter.npy (int64),
and versions.txt.
Run with /usr/bin/python3 (sklearn 1.2.1), the version the tests were written against.
"""
import argparse
import os
import sys
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("x")
    ap.add_argument("y")
    ap.add_argument("out")
    ap.add_argument("--x-test")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--loss", choices=["squared_hinge", "hinge"], default="squared_hinge")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--intercept-scaling", type=float, default=1.0)
    ap.add_argument("--random-state", type=int, default=0)
    a = ap.parse_args()

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    X = np.load(a.x)
    y = np.load(a.y)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        sys.exit(f"{a.x}, {a.y}: expected X (N, D) and y (N,), got {X.shape} and {y.shape}")
    clf = LinearSVC(C=a.C, loss=a.loss, tol=a.tol, max_iter=a.max_iter, intercept_scaling=a.intercept_scaling,
                    dual=True, penalty="l2", multi_class="ovr", fit_intercept=True, random_state=a.random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        # sklearn converts to float64 internally; doing it here makes that explicit (the values are exact).
        clf.fit(X.astype(np.float64), y)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "coef.npy"), np.ascontiguousarray(clf.coef_, dtype=np.float64))
    np.save(os.path.join(a.out, "intercept.npy"), np.asarray(clf.intercept_, dtype=np.float64).reshape(-1))
    np.save(os.path.join(a.out, "pred.npy"), clf.predict(X.astype(np.float64)).astype(np.int64))
    if a.x_test:
        np.save(os.path.join(a.out, "pred_test.npy"), clf.predict(np.load(a.x_test).astype(np.float64)).astype(np.int64))
    np.save(os.path.join(a.out, "classes.npy"), clf.classes_.astype(np.int64))
    np.save(os.path.join(a.out, "n_iter.npy"), np.asarray(clf.n_iter_, dtype=np.int64).reshape(-1))
    with open(os.path.join(a.out, "versions.txt"), "w") as f:
        f.write(f"sklearn {sklearn.__version__}\nnumpy {np.__version__}\n")
        f.write(f"converged {not any(issubclass(w.category, ConvergenceWarning) for w in caught)}\n")


if __name__ == "__main__":
    main()
