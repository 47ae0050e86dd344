"""Tests for tools/export_onnx.py's ResNet18/MobileNetV2 export with random statistics, and the
fixtures tools/make_onnx_fixtures.py writes for the ONNX importer's tests (VGG16 is left out: 528 MB).

Run:  /usr/bin/python3 -m unittest tools/test_export_onnx.py -v     # ~40 s on a 2-core machine
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

try:
    import torch
    import torchvision  # noqa: F401
except ImportError:  # the reference stack is missing; tools/test.sh installs it
    torch = None

import export_onnx as eo  # noqa: E402

needs_torch = unittest.skipUnless(torch is not None, "torch/torchvision not importable")
BUILT = ["resnet18-opset13", "resnet18-opset13-bn", "mobilenet_v2-opset11"]


def run_script(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=HERE.parent, capture_output=True, text=True)


@needs_torch
class OnnxFixtureTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        r = run_script(HERE / "make_onnx_fixtures.py", cls.dir, "--only", *BUILT)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.stdout = r.stdout
        cls.models = {a: eo.build(a, None, 0, random_stats=True) for a in ("resnet18", "mobilenet_v2")}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def manifest(self, name):
        return json.loads((self.dir / name / "manifest.json").read_text())

    def npy(self, name, value):
        return torch.from_numpy(np.load(self.dir / name / f"{value}.npy"))

    def test_manifest_lists_every_file_with_its_shape(self):
        for name in BUILT:
            m = self.manifest(name)
            arch, opset, keep_bn = __import__("make_onnx_fixtures").FIXTURES[name]
            self.assertEqual((m["arch"], m["opset"], m["seed"], m["random_stats"]), (arch, opset, 0, True), name)
            self.assertEqual(m["batchnorm"], "kept" if keep_bn else "folded")
            self.assertEqual(m["onnx"], "model.onnx")
            names = ["logits", *(a for a, _, _ in eo.TAPS[arch])]
            self.assertEqual([o["name"] for o in m["outputs"]], names)
            self.assertEqual(m["onnx_outputs"], names)
            for entry in [m["input"], *m["outputs"]]:
                a = np.load(self.dir / name / entry["file"])
                self.assertEqual((a.dtype, list(a.shape)), (np.float32, entry["shape"]), f"{name}/{entry['file']}")
            self.assertEqual(sorted(os.listdir(self.dir / name)),
                             sorted(["model.onnx", "manifest.json", "input.npy", *(f"{n}.npy" for n in names)]))
        self.assertEqual(self.manifest("resnet18-opset13")["outputs"][-1]["shape"], [2, 512])
        self.assertEqual(self.manifest("mobilenet_v2-opset11")["outputs"][1]["shape"], [2, 32, 112, 112])

    def test_graph_outputs_are_the_named_values_of_the_right_nodes(self):
        # What produces each output says the name points at the intended module: a hook on the wrong
        # module (or an off-by-one in features.N) would name a value of another op type or shape.
        want = {"resnet18-opset13": {"logits": "Gemm", "relu": "Relu", "maxpool": "MaxPool", "layer1": "Relu",
                                     "layer4": "Relu", "avgpool": "GlobalAveragePool", "flatten": "Flatten"},
                "mobilenet_v2-opset11": {"logits": "Gemm", "features_0": "Clip", "features_3": "Add",
                                         "features_18": "Clip", "flatten": "Flatten"}}
        for name in BUILT:
            info = eo.inspect_onnx(self.dir / name / "model.onnx")
            self.assertEqual(info["inputs"][:1], ["input"])
            self.assertEqual(info["outputs"], self.manifest(name)["onnx_outputs"])
            self.assertEqual(info["opsets"]["ai.onnx"], self.manifest(name)["opset"])
            for value, op in want.get(name.removesuffix("-bn"), {}).items():
                self.assertEqual(info["producers"][value], op, f"{name}: {value}")
            n_bn = info["op_types"].get("BatchNormalization", 0)
            self.assertEqual(n_bn, 20 if name.endswith("-bn") else 0, name)

    def test_reference_is_pytorch_on_the_seeded_input_and_taps_chain(self):
        for name, arch in [("resnet18-opset13", "resnet18"), ("mobilenet_v2-opset11", "mobilenet_v2")]:
            x = self.npy(name, "input")
            self.assertTrue(torch.equal(x, eo.reference_input(0)))
            logits = self.npy(name, "logits")
            self.assertTrue(bool(torch.isfinite(logits).all()))
            self.assertTrue(0.05 < float(logits.std()) < 20, f"{name}: logits std {float(logits.std())}")
            model = self.models[arch]
            with torch.no_grad():
                torch.testing.assert_close(model(x), logits, rtol=1e-5, atol=1e-5)
                head = model.fc if arch == "resnet18" else model.classifier
                torch.testing.assert_close(head(self.npy(name, "flatten")), logits, rtol=1e-5, atol=1e-5)
        r = "resnet18-opset13"
        self.assertTrue(torch.equal(self.npy(r, "flatten"), self.npy(r, "avgpool").flatten(1)))
        torch.testing.assert_close(self.npy(r, "avgpool"), self.npy(r, "layer4").mean((2, 3), keepdim=True))
        self.assertTrue(torch.equal(self.npy(r, "maxpool"),
                                    torch.nn.functional.max_pool2d(self.npy(r, "relu"), 3, 2, 1)))
        with torch.no_grad():
            torch.testing.assert_close(self.models["resnet18"].layer2(self.npy(r, "layer1")), self.npy(r, "layer2"))
        # The BN-kept file is the same model: the same reference.
        self.assertTrue(torch.equal(self.npy(r + "-bn", "logits"), self.npy(r, "logits")))

    def test_batchnorm_statistics_and_biases_are_random_and_reach_the_file(self):
        for arch, model in self.models.items():
            bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            mean = torch.cat([m.running_mean for m in bns])
            var = torch.cat([m.running_var for m in bns])
            w = torch.cat([m.weight.detach() for m in bns])
            b = torch.cat([m.bias.detach() for m in bns])
            self.assertAlmostEqual(float(mean.std()), 0.5, delta=0.05, msg=arch)
            self.assertTrue(0.5 <= float(var.min()) and float(var.max()) <= 2.0 and float(var.std()) > 0.3, arch)
            self.assertTrue(0.5 <= float(w.min()) and float(w.max()) <= 1.5 and float(w.std()) > 0.2, arch)
            self.assertAlmostEqual(float(b.std()), 0.2, delta=0.03, msg=arch)
            # Their convs have no bias and get none; the one Linear's bias is drawn.
            self.assertTrue(all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d)), arch)
            fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
            self.assertAlmostEqual(float(fc.bias.std()), 0.1, delta=0.01, msg=arch)
        # Without --random-stats the logits differ: the statistics matter to the reference.
        with torch.no_grad():
            plain = eo.build("resnet18", None, 0, random_stats=False)(eo.reference_input(0))
        self.assertGreater(float((plain - self.npy("resnet18-opset13", "logits")).abs().max()), 0.5)
        # The kept-BN file stores bn1's random running_var and the folded one fc's random bias, bit for bit.
        r18 = self.models["resnet18"]
        kept = (self.dir / "resnet18-opset13-bn" / "model.onnx").read_bytes()
        self.assertIn(r18.bn1.running_var.numpy().tobytes(), kept)
        self.assertIn(r18.fc.bias.detach().numpy().tobytes(),
                      (self.dir / "resnet18-opset13" / "model.onnx").read_bytes())

    def test_a_complete_fixture_is_kept_and_reported(self):
        r = run_script(HERE / "make_onnx_fixtures.py", self.dir, "--only", "resnet18-opset13")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("resnet18-opset13: already there", r.stdout)
        self.assertEqual([p for p in os.listdir(self.dir) if p.startswith(".")], [])  # no temporary left


class ExportArgumentTests(unittest.TestCase):
    def test_argument_errors(self):
        for args, message in [
            (["--random-init", "--opset", "10"], "--opset must be between 11 and 17"),
            (["--weights", "w.safetensors", "--random-stats"], "--random-stats applies to --random-init only"),
            (["--weights", "w.safetensors", "--arch", "resnet18"], "--weights reads VGG16 safetensors only"),
        ]:
            r = run_script(HERE / "export_onnx.py", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(message, r.stderr)


if __name__ == "__main__":
    unittest.main()
