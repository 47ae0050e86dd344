#!/usr/bin/env python3
"""The ONNX importer's test fixtures: torchvision models with random weights, random BatchNorm
statistics and random biases, exported by tools/export_onnx.py with their PyTorch reference.

    /usr/bin/python3 tools/make_onnx_fixtures.py                      # all, into weights/onnx-fixtures/
    /usr/bin/python3 tools/make_onnx_fixtures.py DIR --only resnet18-opset13

Each fixture is a directory DIR/NAME holding
    model.onnx       graph input `input` (batch, 3, 224, 224); outputs `logits` then the taps of
                     export_onnx.TAPS[arch] (e.g. `layer1`, `features_30`), batch axis dynamic
    input.npy        (2, 3, 224, 224) float32, the fixed seeded input
    logits.npy, <tap>.npy   PyTorch's eval-mode values for that input, float32, named as the outputs
    manifest.json    arch, opset, seed, batchnorm (folded/kept), every output's name, file and shape;
                     written last, so its presence means the fixture is complete
A fixture is built in a temporary sibling directory and renamed into place, so a test that waits
for DIR/NAME/manifest.json never sees half a fixture. Existing complete fixtures are kept.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = 0

# name -> (arch, opset, keep BatchNormalization nodes). A plain torch.onnx.export folds each BN into
# its conv; the -bn fixture keeps them so the importer's BatchNormalization is tested too.
FIXTURES = {
    "resnet18-opset13": ("resnet18", 13, False),
    "resnet18-opset13-bn": ("resnet18", 13, True),
    "mobilenet_v2-opset11": ("mobilenet_v2", 11, False),
    "vgg16-opset13": ("vgg16", 13, False),  # 528 MB, about a minute
}


def make(out_dir: Path, name: str) -> tuple[bool, float]:
    """Builds DIR/NAME unless it is complete; returns (built, seconds)."""
    final = out_dir / name
    if (final / "manifest.json").exists():
        return False, 0.0
    arch, opset, keep_bn = FIXTURES[name]
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    argv = ["--arch", arch, "--random-init", "--random-stats", "--seed", str(SEED), "--opset", str(opset),
            "--taps", "--out", str(tmp / "model.onnx"), "--reference", str(tmp)]
    if keep_bn:
        argv.append("--keep-batchnorm")
    try:
        if export_onnx.main(argv) != 0:
            raise RuntimeError(f"{name}: tools/export_onnx.py {' '.join(argv)} failed (its error is above)")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete one, without manifest.json
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", type=Path, default=ROOT / "weights" / "onnx-fixtures",
                    help="cache directory (default weights/onnx-fixtures/, git-ignored)")
    ap.add_argument("--only", nargs="+", choices=sorted(FIXTURES), metavar="NAME",
                    help=f"just these fixtures: {', '.join(FIXTURES)}")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.only or FIXTURES:
            built, seconds = make(args.dir, name)
            size = sum(f.stat().st_size for f in (args.dir / name).iterdir())
            print(f"{name}: {'built in ' + format(seconds, '.1f') + ' s' if built else 'already there'}, "
                  f"{size / 1e6:.1f} MB in {args.dir / name}")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
