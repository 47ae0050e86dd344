"""Tests for tools/: safetensors I/O, the stdlib .pth converter, make_reference.py.

    /usr/bin/python3 -m unittest tools/test_tools.py -v       (from the repository root; ~1-2 min)

Torch-dependent tests are skipped (with the reason) when torch is not importable.
"""

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import tp7_safetensors as st  # noqa: E402
import convert_weights as cw  # noqa: E402

try:
    import torch
    import torchvision
except ImportError:  # pragma: no cover - the reference stack is installed on dev machines
    torch = None

needs_torch = unittest.skipUnless(torch is not None, "torch/torchvision not importable")
PY = sys.executable


def run_script(*args):
    return subprocess.run([PY, *args], capture_output=True, text=True, cwd=ROOT)


class SafetensorsFormatTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "t.safetensors")

    def tearDown(self):
        self.tmp.cleanup()

    def test_layout_alignment_order_and_round_trip(self):
        a = struct.pack("<6f", *range(6))
        b = struct.pack("<3q", -1, 0, 2**40)
        size, sha = st.write(self.path, [("z.first", "F32", (2, 3), a), ("a.second", "I64", (3,), lambda: b),
                                         ("empty", "F32", (0, 4), b"")], {"k": "v"})
        with open(self.path, "rb") as f:
            raw = f.read()
        self.assertEqual(size, len(raw))
        self.assertEqual(sha, st.sha256_file(self.path))
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual((8 + n) % 8, 0, "data must start 8-byte aligned")
        header = json.loads(raw[8:8 + n])
        self.assertEqual(header["__metadata__"], {"k": "v"})
        self.assertEqual(header["z.first"], {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]})
        self.assertEqual(header["a.second"]["data_offsets"], [24, 48])
        self.assertEqual(raw[8 + n:], a + b)
        with st.SafetensorsFile(self.path) as f:
            self.assertEqual(f.keys(), ["z.first", "a.second", "empty"])
            self.assertEqual(bytes(f.read_bytes("a.second")), b)
            self.assertEqual(f.shape("empty"), (0, 4))
            self.assertEqual(f.metadata, {"k": "v"})
        self.assertEqual(st.sha256_of([("z.first", "F32", (2, 3), a), ("a.second", "I64", (3,), b),
                                       ("empty", "F32", (0, 4), b"")], {"k": "v"}), (size, sha))

    def test_write_rejects_wrong_byte_count_and_leaves_no_file(self):
        with self.assertRaisesRegex(st.SafetensorsError, r"tensor 'x' F32\[2\] needs 8 bytes, got 4"):
            st.write(self.path, [("x", "F32", (2,), b"\0" * 4)])
        self.assertEqual(os.listdir(self.tmp.name), [])

    def _write_raw(self, header, data):
        text = json.dumps(header).encode()
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data)

    def test_reader_rejects_corrupt_files_naming_the_tensor(self):
        cases = [
            ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, r"'b' starts at byte 4.*overlap"),
            ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, r"'a' F32\[3\] needs 12 bytes"),
            ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, r"'a' data_offsets \[0, 16\] fall"),
            ({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, 4, r"'a' has unknown dtype 'Q7'"),
            ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 8, r"data section is 8 bytes but"),
        ]
        for header, nbytes, pattern in cases:
            self._write_raw(header, b"\0" * nbytes)
            with self.assertRaisesRegex(st.SafetensorsError, pattern):
                st.SafetensorsFile(self.path)
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", 1 << 40))
        with self.assertRaisesRegex(st.SafetensorsError, r"t.safetensors: header length"):
            st.SafetensorsFile(self.path)


def small_state_dict():
    torch.manual_seed(1)
    base = torch.randn(6, 5)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3)
    sd["transposed"] = base.t()              # non-contiguous, shares base's storage
    sd["rows"] = base[2:]                    # storage offset into the same storage
    sd["strided"] = base[::2, 1::2]          # non-unit inner stride
    sd["half"] = torch.randn(7).half()
    sd["bf16"] = torch.randn(5).bfloat16()
    sd["double"] = torch.randn(2, 2).double()
    sd["num_batches_tracked"] = torch.tensor(17)  # int64 scalar stays I64
    sd["empty"] = torch.empty(0, 3)
    return sd


def expected_output(v):
    return v.float() if v.is_floating_point() else v


@needs_torch
class PthConversionTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def assert_converts_bit_identical(self, pth, sd, fmt):
        out = os.path.join(self.dir, "out.safetensors")
        # The --from path must not need torch: hide it from the converter's interpreter.
        code = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, sys.argv[1]); "
                "import convert_weights; sys.exit(convert_weights.main(sys.argv[2:]))")
        r = subprocess.run([PY, "-c", code, HERE, "--from", pth, "--out", out, "--any-arch"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"{len(sd)} tensors", r.stdout)
        with st.SafetensorsFile(out) as f:
            self.assertEqual(f.keys(), list(sd))
            self.assertEqual(f.metadata["source_format"], fmt)
            self.assertEqual(f.metadata["source_sha256"], st.sha256_file(pth))
            for k, v in sd.items():
                got, want = f.to_torch(k), expected_output(v)
                self.assertEqual((got.dtype, tuple(got.shape)), (want.dtype, tuple(want.shape)), k)
                self.assertTrue(torch.equal(got, want), f"{k}: values differ")

    def test_zip_format_small_state_dict(self):
        sd = small_state_dict()
        pth = os.path.join(self.dir, "small.pth")
        torch.save(sd, pth)
        self.assert_converts_bit_identical(pth, sd, "pytorch-zip")

    def test_zip_format_any_top_folder_name(self):
        sd = small_state_dict()
        pth = os.path.join(self.dir, "small.pth")
        torch.save(sd, pth)
        renamed = os.path.join(self.dir, "renamed.pth")
        with zipfile.ZipFile(pth) as src, zipfile.ZipFile(renamed, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                dst.writestr("some other name/" + info.filename.split("/", 1)[1], src.read(info))
        self.assert_converts_bit_identical(renamed, sd, "pytorch-zip")

    def test_legacy_format_small_state_dict(self):
        sd = small_state_dict()
        pth = os.path.join(self.dir, "legacy.pth")
        torch.save(sd, pth, _use_new_zipfile_serialization=False)
        self.assertFalse(zipfile.is_zipfile(pth))
        self.assert_converts_bit_identical(pth, sd, "pytorch-legacy")

    def test_legacy_format_with_v1_rebuild_and_view_storage(self):
        # Pre-0.4 files rebuild tensors with torch._utils._rebuild_tensor and may reference a view
        # (view_key, offset, size) into a root storage. torch 1.13 writes neither, so build one.
        values = struct.pack("<10f", *[float(i) * 0.5 for i in range(10)])

        class Ref:
            def __init__(self, pid):
                self.pid = pid

        class Tensor:
            def __init__(self, storage, offset, size, stride):
                self.args = (storage, offset, size, stride)

            def __reduce__(self):
                return torch._utils._rebuild_tensor, self.args

        class LegacyPickler(pickle.Pickler):
            def persistent_id(self, obj):
                return obj.pid if isinstance(obj, Ref) else None

        root = Ref(("storage", torch.FloatStorage, "140", "cpu", 10, None))
        view = Ref(("storage", torch.FloatStorage, "140", "cpu", 10, ("141", 4, 6)))
        sd = collections.OrderedDict([("w", Tensor(root, 0, (2, 5), (5, 1))),
                                      ("v", Tensor(view, 1, (2, 2), (1, 2)))])
        buf = io.BytesIO()
        for header in (cw.LEGACY_MAGIC, cw.LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, buf, protocol=2)
        LegacyPickler(buf, protocol=2).dump(sd)
        pickle.dump(["140"], buf, protocol=2)
        buf.write(struct.pack("<q", 10) + values)
        pth = os.path.join(self.dir, "old.pth")
        with open(pth, "wb") as f:
            f.write(buf.getvalue())
        out = os.path.join(self.dir, "old.safetensors")
        self.assertEqual(cw.main(["--from", pth, "--out", out, "--any-arch"]), 0)
        full = torch.tensor([float(i) * 0.5 for i in range(10)])
        with st.SafetensorsFile(out) as f:
            self.assertTrue(torch.equal(f.to_torch("w"), full.reshape(2, 5)))
            # view starts at element 4; tensor offset 1, stride (1, 2) -> [[5, 7], [6, 8]] of full
            self.assertTrue(torch.equal(f.to_torch("v"), full[torch.tensor([[5, 7], [6, 8]])]))

    def test_real_vgg16_round_trip_through_cli(self):
        torch.manual_seed(3)
        sd = torchvision.models.vgg16().state_dict()
        pth = os.path.join(self.dir, "vgg16-test.pth")
        torch.save(sd, pth)
        out = os.path.join(self.dir, "vgg16.safetensors")
        r = run_script("tools/convert_weights.py", "--from", pth, "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("32 tensors, 138,357,544 parameters", r.stdout)
        self.assertIn(st.sha256_file(out), r.stdout)
        with st.SafetensorsFile(out) as f:
            self.assertEqual(f.keys(), list(cw.VGG16_SHAPES))
            self.assertEqual(f.metadata["arch"], "vgg16")
            for k, v in sd.items():
                self.assertTrue(torch.equal(f.to_torch(k), v), k)

    def test_non_vgg16_state_dict_needs_any_arch(self):
        pth = os.path.join(self.dir, "small.pth")
        torch.save(small_state_dict(), pth)
        out = os.path.join(self.dir, "x.safetensors")
        r = run_script("tools/convert_weights.py", "--from", pth, "--out", out)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"small.pth: not a torchvision vgg16 state_dict: missing \['features.0.weight'")
        self.assertFalse(os.path.exists(out))

    def test_vgg16_shape_check_names_the_tensor(self):
        shapes = dict(cw.VGG16_SHAPES)
        shapes["classifier.0.weight"] = (4096, 9216)
        with self.assertRaisesRegex(cw.ConvertError,
                                    r"f.pth: tensor 'classifier.0.weight' has shape \[4096, 9216\], "
                                    r"expected \[4096, 25088\]"):
            cw.check_vgg16(shapes, "f.pth")
        self.assertEqual(cw.VGG16_PARAMETERS, 138_357_544)


class MaliciousPickleTests(unittest.TestCase):
    """A .pth is a pickle; loading one with torch.load (weights_only=False) runs whatever it names.
    The converter must refuse every global outside the state_dict allow-list before calling it."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.marker = os.path.join(self.tmp.name, "pwned")
        self.command = f"echo pwned > {self.marker}"

    def tearDown(self):
        self.tmp.cleanup()

    def hand_written_os_system(self):
        # GLOBAL 'os system', the argument tuple, REDUCE: what a hostile file would contain.
        cmd = self.command.encode()
        return b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."

    def reduce_based(self):
        class Evil:
            def __reduce__(inner):
                return os.system, (self.command,)
        return pickle.dumps({"features.0.weight": Evil()}, protocol=2)

    def torch_like_zip(self, payload):
        path = os.path.join(self.tmp.name, "evil.pth")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", payload)
            z.writestr("archive/version", "3\n")
            z.writestr("archive/data/0", b"\0" * 16)
        return path

    def legacy(self, headers, payload):
        path = os.path.join(self.tmp.name, "evil-legacy.pth")
        with open(path, "wb") as f:
            for h in headers:
                f.write(h if isinstance(h, bytes) else pickle.dumps(h, protocol=2))
            f.write(payload)
            f.write(pickle.dumps([], protocol=2))
        return path

    def assert_refused(self, path, global_name):
        out = os.path.join(self.tmp.name, "out.safetensors")
        r = run_script("tools/convert_weights.py", "--from", path, "--out", out)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"{path}: refusing to load global '{global_name}' (only state_dict tensors are allowed)",
                      r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertFalse(os.path.exists(self.marker), "the payload ran")
        self.assertFalse(os.path.exists(out))

    def test_zip_with_os_system(self):
        self.assert_refused(self.torch_like_zip(self.hand_written_os_system()), "os.system")

    def test_zip_with_reduce_payload(self):
        self.assert_refused(self.torch_like_zip(self.reduce_based()), f"{os.system.__module__}.system")

    def test_legacy_object_pickle_with_os_system(self):
        headers = [cw.LEGACY_MAGIC, cw.LEGACY_PROTOCOL, {"little_endian": True}]
        self.assert_refused(self.legacy(headers, self.hand_written_os_system()), "os.system")

    def test_legacy_header_pickle_with_os_system(self):
        headers = [cw.LEGACY_MAGIC, cw.LEGACY_PROTOCOL, self.hand_written_os_system()]
        self.assert_refused(self.legacy(headers, b""), "os.system")

    def test_builtins_eval_refused(self):
        payload = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00__import__(\x85R."
        self.assert_refused(self.torch_like_zip(payload), "builtins.eval")

    def test_not_a_checkpoint(self):
        path = os.path.join(self.tmp.name, "junk.pth")
        with open(path, "wb") as f:
            f.write(b"hello, not a pickle at all")
        r = run_script("tools/convert_weights.py", "--from", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{path}: not a PyTorch checkpoint", r.stderr)


class DefaultOutputFolderTests(unittest.TestCase):
    """Without --out: the repository's weights/ inside the checkout, the user cache tp7 searches anywhere else."""

    def test_inside_the_repository(self):
        self.assertEqual(cw.default_weights_dir(os.path.join(ROOT, "tools")), os.path.join(os.path.realpath(ROOT), "weights"))

    def test_outside_the_repository_with_and_without_tp7_cache(self):
        with tempfile.TemporaryDirectory() as elsewhere:
            saved = os.environ.get("TP7_CACHE")
            try:
                os.environ["TP7_CACHE"] = os.path.join(elsewhere, "cache")
                self.assertEqual(cw.default_weights_dir(elsewhere), os.path.join(elsewhere, "cache", "weights"))
                del os.environ["TP7_CACHE"]
                self.assertEqual(cw.default_weights_dir(elsewhere), os.path.join(os.path.expanduser("~"), ".cache", "tp7", "weights"))
            finally:
                if saved is not None:
                    os.environ["TP7_CACHE"] = saved

    @needs_torch
    def test_a_conversion_run_elsewhere_writes_into_the_user_cache(self):
        with tempfile.TemporaryDirectory() as elsewhere:
            pth = os.path.join(elsewhere, "small.pth")
            torch.save(small_state_dict(), pth)
            env = dict(os.environ, TP7_CACHE=os.path.join(elsewhere, "cache"))
            r = subprocess.run([PY, os.path.join(HERE, "convert_weights.py"), "--from", pth, "--any-arch"],
                               capture_output=True, text=True, cwd=elsewhere, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = os.path.join(elsewhere, "cache", "weights", "small.safetensors")
            with st.SafetensorsFile(out) as f:
                self.assertEqual(f.keys(), list(small_state_dict()))


class DownloadTests(unittest.TestCase):
    """--download against a local HTTP server (with Range support) standing in for download.pytorch.org."""

    PAYLOAD = bytes(range(256)) * 4096  # 1 MiB

    @classmethod
    def setUpClass(cls):
        import hashlib
        import http.server
        import threading
        cls.good = f"weights-{hashlib.sha256(cls.PAYLOAD).hexdigest()[:8]}.pth"
        payload = cls.PAYLOAD
        cls.ranges = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                start = 0
                rng = self.headers.get("Range")
                cls.ranges.append(rng)
                if rng:
                    start = int(rng.split("=")[1].rstrip("-"))
                    self.send_response(206)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload) - start))
                self.end_headers()
                self.wfile.write(payload[start:])

            def log_message(self, *args):
                pass

        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.base = f"http://127.0.0.1:{cls.server.server_address[1]}/"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.ranges.clear()

    def tearDown(self):
        self.tmp.cleanup()

    def test_download_checks_hash_prefix_and_renames(self):
        import contextlib
        with contextlib.redirect_stderr(io.StringIO()):
            path = cw.download(self.base + self.good, self.tmp.name)
        self.assertEqual(os.listdir(self.tmp.name), [self.good])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), self.PAYLOAD)

    def test_download_resumes_a_partial_file(self):
        import contextlib
        with open(os.path.join(self.tmp.name, self.good + ".part"), "wb") as f:
            f.write(self.PAYLOAD[:1000])
        with contextlib.redirect_stderr(io.StringIO()):
            path = cw.download(self.base + self.good, self.tmp.name)
        self.assertEqual(self.ranges, ["bytes=1000-"])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), self.PAYLOAD)

    def test_wrong_hash_is_rejected_and_partial_removed(self):
        import contextlib
        with contextlib.redirect_stderr(io.StringIO()):
            with self.assertRaisesRegex(cw.ConvertError, r"weights-0badc0de.pth: SHA-256 [0-9a-f]{64} does not "
                                                         r"start with 0badc0de"):
                cw.download(self.base + "weights-0badc0de.pth", self.tmp.name)
        self.assertEqual(os.listdir(self.tmp.name), [])


@needs_torch
class RandomBiasTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.plain = cw.random_init_model(0)
        cls.biased = cw.random_init_model(0, random_biases=True)

    def test_weights_identical_biases_drawn_in_range_and_seeded(self):
        plain, biased = self.plain.state_dict(), self.biased.state_dict()
        g = torch.Generator().manual_seed(0)
        for k in cw.VGG16_SHAPES:
            if k.endswith(".weight"):
                self.assertTrue(torch.equal(plain[k], biased[k]), f"{k} changed")
                continue
            self.assertTrue(torch.equal(plain[k], torch.zeros_like(plain[k])), f"torchvision's {k} is not zero")
            # The documented rule, in state_dict order from one generator.
            self.assertTrue(torch.equal(biased[k], torch.rand(biased[k].shape, generator=g) * 0.2 - 0.1), k)
            self.assertTrue(biased[k].abs().max() <= 0.1 and biased[k].std() > 0.04, k)
        other = cw.randomise_biases(cw.random_init_model(1), 1).state_dict()
        self.assertFalse(torch.equal(other["classifier.6.bias"], biased["classifier.6.bias"]))

    def test_metadata_records_the_biases_and_plain_file_is_unchanged(self):
        _, plain_meta = cw.random_init_contents(self.plain, 0)
        self.assertNotIn("random_biases", plain_meta)  # old files keep their sha256
        tensors, meta = cw.random_init_contents(self.biased, 0, random_biases=True)
        self.assertIn("U(-0.1, 0.1)", meta["random_biases"])
        self.assertIn("manual_seed(0)", meta["random_biases"])
        self.assertEqual(meta["converter"], "tools/convert_weights.py --random-init --random-biases")
        data = dict((k, d) for k, _, _, d in tensors)
        self.assertEqual(bytes(data["features.0.bias"]()), st.from_torch(self.biased.features[0].bias)[2])
        self.assertTrue(cw.random_init_path("w", 3, True).endswith("vgg16-random-seed3-biases.safetensors"))

    def test_random_biases_without_random_init_is_refused(self):
        r = run_script("tools/convert_weights.py", "--from", "x.pth", "--random-biases")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--random-biases applies to --random-init only", r.stderr)


@needs_torch
class MakeReferenceTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "ref.safetensors")
        # --random-biases: with torchvision's zero biases a dropped bias would pass every check below.
        r = run_script("tools/make_reference.py", "--random-init", "--random-biases", "--seed", "0", "--random-batch",
                       "2", "--size", "32", "--grads", "all", "--labels", "3", "999", "--out", cls.out)
        assert r.returncode == 0, r.stderr
        cls.f = st.SafetensorsFile(cls.out)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.tmp.cleanup()

    def t(self, key):
        return self.f.to_torch(key)

    def test_metadata_and_keys(self):
        m = self.f.metadata
        self.assertEqual(m["format_version"], "1")
        self.assertEqual(m["script"], "tools/make_reference.py")
        self.assertEqual(json.loads(m["taps"])[:3], ["conv1_1", "relu1_1", "conv1_2"])
        self.assertEqual(json.loads(m["labels"]), [3, 999])
        self.assertIn("--random-biases", m["weights"])
        seeded = cw.random_init_path(os.path.join(ROOT, "weights"), 0, random_biases=True)
        if os.path.exists(seeded):  # the reference must name the file convert_weights.py writes
            self.assertEqual(m["weights_sha256"], st.sha256_file(seeded))
        keys = set(self.f.keys())
        for name in json.loads(m["taps"]):
            self.assertIn(f"tap/{name}", keys)
            self.assertIn(f"grad/{name}", keys)
        for k in cw.VGG16_SHAPES:
            self.assertEqual(self.f.shape(f"grad/{k}"), cw.VGG16_SHAPES[k])
        self.assertEqual(self.f.shape("tap/pool5"), (2, 512, 1, 1))
        self.assertEqual(self.f.shape("tap/avgpool"), (2, 512, 7, 7))

    def test_input_is_the_seeded_random_batch(self):
        torch.manual_seed(0)
        self.assertTrue(torch.equal(self.t("input"), torch.randn(2, 3, 32, 32)))

    def test_pre_relu_taps_survive_inplace_relu(self):
        conv = self.t("tap/conv1_1")
        self.assertTrue((conv < 0).any(), "conv tap was overwritten by the in-place ReLU")
        self.assertTrue(torch.equal(self.t("tap/relu1_1"), conv.clamp(min=0)))
        self.assertTrue(torch.equal(self.t("tap/relu6"), self.t("tap/fc6").clamp(min=0)))

    def test_taps_chain_through_the_layers(self):
        conv1 = cw.random_init_model(0, random_biases=True).features[0]  # the weights the reference used
        self.assertTrue((conv1.bias.abs() > 0).all())
        with torch.no_grad():
            torch.testing.assert_close(self.t("tap/conv1_1"), conv1(self.t("input")), rtol=1e-6, atol=1e-6)
        self.assertTrue(torch.equal(self.t("tap/pool1"), torch.nn.functional.max_pool2d(self.t("tap/relu1_2"), 2)))
        self.assertTrue(torch.equal(self.t("tap/avgpool"), self.t("tap/pool5").expand(-1, -1, 7, 7)))
        self.assertTrue(torch.equal(self.t("logits"), self.t("tap/fc8")))

    def test_loss_and_gradients(self):
        logits, labels = self.t("logits"), self.t("labels")
        self.assertTrue(torch.equal(labels, torch.tensor([3, 999])))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        self.assertAlmostEqual(self.t("loss").item(), loss.item(), places=5)
        # d(mean CE)/d logits = (softmax - onehot) / N; fc8's bias gradient sums that over the batch.
        g = (torch.softmax(logits, 1) - torch.nn.functional.one_hot(labels, 1000).float()) / 2
        torch.testing.assert_close(self.t("grad/logits"), g, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(self.t("grad/classifier.6.bias"), g.sum(0), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(self.t("grad/classifier.6.weight"), g.t() @ self.t("tap/relu7"),
                                   rtol=1e-4, atol=1e-7)
        # ReLU backward: the gradient passes where the input was positive.
        self.assertTrue(torch.equal(self.t("grad/conv5_3"),
                                    self.t("grad/relu5_3") * (self.t("tap/conv5_3") > 0)))


if __name__ == "__main__":
    unittest.main()
