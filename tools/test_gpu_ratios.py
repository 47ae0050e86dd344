"""tools/gpu_ratios.py reads each number of a GPU check log from the line that carries it, and says when one is missing."""
import io
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_ratios  # noqa: E402

LOG = """=== PyTorch anchor
sgemm n=4096 tf32=False: 50.0 TFLOP/s
sgemm n=4096 tf32=True: 400.0 TFLOP/s
vgg16 forward bs=1 tf32: 724 img/s (1.38 ms/batch)
vgg16 forward bs=64 fp32-strict: 1228 img/s (52.12 ms/batch)
vgg16 forward bs=64 tf32: 3939 img/s (16.25 ms/batch)
=== our forward pass
vgg16 forward, fp32, 224x224, CUDA: NVIDIA H100 80GB HBM3
batch   ms/batch    img/s    s/img  GFLOP/s
    1        2.0   500.00    0.002  15480.0
   64       40.0  1600.00    0.001  24768.0
vgg16 forward, tf32, 224x224, CUDA: NVIDIA H100 80GB HBM3
    1        1.2   833.33    0.001  25800.0
   64       20.0  3200.00    0.000  49536.0
=== GEMM
│ V3Tiled128 │ fp32   │    3.000 │  45.000 │  67.0 │  67.2 │ ok at 509x515x523 vs V1Naive │
│ V4MmaTf32  │ tf32   │    0.600 │ 229.000 │ 494.5 │  46.3 │ ok at 509x515x523 │
torch.matmul 4096x4096x4096, NVIDIA H100, torch 2.5, median of 20 launches, each synchronised
precision   median ms   TFLOP/s
fp32            2.750     49.98
tf32            0.340    404.00
selftest on NVIDIA H100 80GB HBM3: 150 passed, 0 failed, 0 skipped
"""


class GpuRatiosTests(unittest.TestCase):
    def run_on(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(text)
        try:
            out = io.StringIO()
            with redirect_stdout(out):
                gpu_ratios.main(f.name)
            return out.getvalue()
        finally:
            os.unlink(f.name)

    def row(self, out, start):
        return next(line for line in out.splitlines() if line.startswith("| " + start))

    def test_each_ratio_comes_from_this_runs_lines(self):
        out = self.run_on(LOG)
        self.assertIn("| 1600 img/s | 1228 img/s | 1.30 | >= 1.0x | met |", self.row(out, "VGG16 forward bs=64 img/s, fp32"))
        self.assertIn("| 3200 img/s | 3939 img/s | 0.81 | >= 1.0x | NOT met |", self.row(out, "VGG16 forward bs=64 img/s, TF32"))
        self.assertIn("| 1.2 ms | 1.38 ms | 0.87 | <= 1.0x | met |", self.row(out, "VGG16 batch-1 latency ms, ours tf32"))
        # cuBLAS from torch_matmul_bench.py's table, ahead of the anchor's own sgemm line
        self.assertIn("| 45 TFLOP/s | 49.98 TFLOP/s | 0.90 | >= 0.9x | met |", self.row(out, "SGEMM 4096"))
        self.assertIn("| 229 TFLOP/s | 404 TFLOP/s | 0.57 | >= 0.6x | NOT met |", self.row(out, "GEMM 4096 TFLOP/s, V4MmaTf32"))
        self.assertIn("selftest on NVIDIA H100 80GB HBM3: 150 passed, 0 failed, 0 skipped", out)

    def test_a_missing_step_is_reported_not_guessed(self):
        out = self.run_on(LOG.replace("vgg16 forward, tf32,", "something else,"))
        self.assertIn("| missing | 3939 img/s | - | >= 1.0x | not measured |", self.row(out, "VGG16 forward bs=64 img/s, TF32"))

    def test_a_gemm_version_that_failed_its_check_has_no_speed(self):
        out = self.run_on(LOG.replace("│ 229.000 │ 494.5 │  46.3 │ ok at", "│ 229.000 │ 494.5 │  46.3 │ MISMATCH at"))
        self.assertIn("| missing |", self.row(out, "GEMM 4096 TFLOP/s, V4MmaTf32"))


if __name__ == "__main__":
    unittest.main()
