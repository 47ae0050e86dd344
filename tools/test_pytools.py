"""Tests for the Python tools: fetch_15scene, make_demo_data, reference_pipeline.

Run:  /usr/bin/python3 -m unittest discover -s tools -p 'test_pytools.py'
No network: downloads go to a local HTTP server started by the test.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import struct
import sys
import tarfile
import tempfile
import threading
import unittest
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fetch_15scene as fs  # noqa: E402


def _jpeg_bytes(value: int) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (8, 6), value).save(buf, format="JPEG")
    return buf.getvalue()


def _make_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload; honours `Range: bytes=N-` unless the server says not to."""
    payload = b""
    honour_range = True
    seen_ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        rng = self.headers.get("Range")
        type(self).seen_ranges.append(rng)
        data, status = self.payload, 200
        if rng and self.honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            data, status = data[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(payload: bytes, honour_range: bool = True):
    handler = type("H", (_RangeHandler,), {"payload": payload, "honour_range": honour_range, "seen_ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/scene_categories.zip", handler
    finally:
        server.shutdown()
        server.server_close()


class FetchExtractTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_zip_with_top_level_class_folders_extracts_and_counts(self):
        archive = self.dir / "a.zip"
        _make_zip(archive, {
            "bedroom/image_0001.jpg": _jpeg_bytes(10),
            "bedroom/image_0002.jpg": _jpeg_bytes(20),
            "MITcoast/image_0001.jpg": _jpeg_bytes(30),
            "MITcoast/notes.txt": b"not an image",
        })
        dest = self.dir / "out"
        written = fs.safe_extract(archive, dest)
        self.assertEqual(len(written), 4)
        self.assertEqual((dest / "bedroom/image_0002.jpg").read_bytes(), _jpeg_bytes(20))
        root = fs.find_class_root(dest)
        self.assertEqual(root, dest)
        # Ordinal order: upper-case 'M' sorts before lower-case 'b'.
        self.assertEqual(list(fs.class_counts(root).items()), [("MITcoast", 1), ("bedroom", 2)])

    def test_tar_with_wrapper_folder_finds_class_root_below_it(self):
        archive = self.dir / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as t:
            for name, value in [("15-Scene/00/1.jpg", 1), ("15-Scene/01/2.jpg", 2), ("15-Scene/01/3.jpg", 3)]:
                data = _jpeg_bytes(value)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        dest = self.dir / "out"
        fs.safe_extract(archive, dest)
        root = fs.find_class_root(dest)
        self.assertEqual(root.name, "15-Scene")
        self.assertEqual(fs.class_counts(root), {"00": 1, "01": 2})

    def _assert_refused(self, archive: Path, fragment: str):
        dest = self.dir / "out"
        with self.assertRaises(fs.FetchError) as cm:
            fs.safe_extract(archive, dest)
        self.assertIn(fragment, str(cm.exception))
        # Nothing is written before every member has been checked.
        self.assertFalse(dest.exists() and any(dest.rglob("*")), "files were written before the check failed")
        self.assertFalse((self.dir / "evil.txt").exists())

    def test_zip_member_with_dotdot_is_refused_before_anything_is_written(self):
        archive = self.dir / "a.zip"
        _make_zip(archive, {"good/ok.jpg": _jpeg_bytes(1), "good/../../evil.txt": b"x"})
        self._assert_refused(archive, "'..'")

    def test_zip_member_with_absolute_path_is_refused(self):
        archive = self.dir / "a.zip"
        # zipfile.writestr strips nothing from a ZipInfo name, so this stays absolute.
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("good/ok.jpg", b"1")
            z.writestr(zipfile.ZipInfo("/tmp/evil.txt"), b"x")
        self._assert_refused(archive, "absolute path")

    def test_zip_member_with_windows_drive_is_refused(self):
        archive = self.dir / "a.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(zipfile.ZipInfo("C:\\evil.txt"), b"x")
        self._assert_refused(archive, "absolute path")

    def test_tar_symlink_is_refused(self):
        archive = self.dir / "a.tar"
        with tarfile.open(archive, "w") as t:
            info = tarfile.TarInfo("classA/link.jpg")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            t.addfile(info)
        self._assert_refused(archive, "link or special file")

    def test_tar_dotdot_is_refused(self):
        archive = self.dir / "a.tar"
        with tarfile.open(archive, "w") as t:
            info = tarfile.TarInfo("../evil.txt")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        self._assert_refused(archive, "'..'")

    def test_not_an_archive_names_the_file(self):
        bogus = self.dir / "bogus.zip"
        bogus.write_bytes(b"hello, not an archive")
        with self.assertRaises(fs.FetchError) as cm:
            fs.safe_extract(bogus, self.dir / "out")
        self.assertIn("bogus.zip", str(cm.exception))


class FetchDownloadTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.payload = os.urandom(300_000)
        self.md5 = hashlib.md5(self.payload).hexdigest()

    def tearDown(self):
        self.tmp.cleanup()

    def test_download_with_matching_md5_lands_under_final_name(self):
        with _serve(self.payload) as (url, _):
            path = fs.fetch_archive([url], self.dir, "x.zip", self.md5, quiet=True)
        self.assertEqual(path, self.dir / "x.zip")
        self.assertEqual(path.read_bytes(), self.payload)
        self.assertFalse((self.dir / ".download").exists())

    def test_md5_mismatch_discards_the_file_and_says_both_sums(self):
        wrong = "0" * 32
        with _serve(self.payload) as (url, _):
            with self.assertRaises(fs.FetchError) as cm:
                fs.fetch_archive([url], self.dir, "x.zip", wrong, quiet=True)
        self.assertIn(self.md5, str(cm.exception))
        self.assertIn(wrong, str(cm.exception))
        self.assertFalse((self.dir / "x.zip").exists())
        self.assertFalse((self.dir / ".download" / "x.zip.part").exists())

    def test_partial_download_resumes_with_range(self):
        part = self.dir / ".download" / "x.zip.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(self.payload[:123_456])
        with _serve(self.payload) as (url, handler):
            path = fs.fetch_archive([url], self.dir, "x.zip", self.md5, quiet=True)
        self.assertEqual(handler.seen_ranges, ["bytes=123456-"])
        self.assertEqual(path.read_bytes(), self.payload)

    def test_server_ignoring_range_restarts_from_zero(self):
        part = self.dir / ".download" / "x.zip.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"garbage that must not be kept")
        with _serve(self.payload, honour_range=False) as (url, _):
            path = fs.fetch_archive([url], self.dir, "x.zip", self.md5, quiet=True)
        self.assertEqual(path.read_bytes(), self.payload)

    def test_dead_mirror_falls_through_to_next_url(self):
        with _serve(self.payload) as (url, _):
            dead = "http://127.0.0.1:9/nothing.zip"  # discard port: connection refused
            path = fs.fetch_archive([dead, url], self.dir, "x.zip", self.md5, quiet=True)
        self.assertEqual(path.read_bytes(), self.payload)

    def test_main_with_local_archive_prints_layout_and_command(self):
        archive = self.dir / "scene_categories.zip"
        _make_zip(archive, {"kitchen/a.jpg": _jpeg_bytes(1), "store/b.jpg": _jpeg_bytes(2), "store/c.jpg": _jpeg_bytes(3)})
        dest = self.dir / "15scene"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = fs.main(["--archive", str(archive), "--md5", hashlib.md5(archive.read_bytes()).hexdigest(),
                          "--dest", str(dest), "--train-per-class", "1"])
        self.assertEqual(rc, 0)
        text = out.getvalue()
        self.assertIn("store                  2 images", text)
        self.assertIn(f"tp7 run --data {dest.resolve()} --train-per-class 1 --seed 0", text)

    def test_main_with_wrong_md5_fails_with_one_line(self):
        archive = self.dir / "scene_categories.zip"
        _make_zip(archive, {"kitchen/a.jpg": b"1"})
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = fs.main(["--archive", str(archive), "--dest", str(self.dir / "d")])
        self.assertEqual(rc, 1)
        self.assertIn(fs.EXPECTED_MD5, err.getvalue())
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)


if __name__ == "__main__":
    unittest.main()


# ============================================================================= make_demo_data

import make_demo_data as md  # noqa: E402


def _write_idx(folder: Path, stem: str, images: "np.ndarray", labels: "np.ndarray") -> None:
    n, r, c = images.shape
    with gzip.open(folder / f"{stem.split('|')[0]}.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, r, c) + images.tobytes())
    with gzip.open(folder / f"{stem.split('|')[1]}.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())


def _quiet_md(argv):
    with contextlib.redirect_stdout(io.StringIO()):
        return md.main(argv)


class MakeDemoDataTests(unittest.TestCase):
    def setUp(self):
        import numpy as np
        self.np = np
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        src = self.dir / "src"
        src.mkdir()
        rng = np.random.RandomState(1)
        # 6 images per class; each image's pixels encode its index so the test can trace it.
        for split, n in (("train-images-idx3-ubyte|train-labels-idx1-ubyte", 60),
                         ("t10k-images-idx3-ubyte|t10k-labels-idx1-ubyte", 40)):
            labels = np.repeat(np.arange(10, dtype=np.uint8), n // 10)
            rng.shuffle(labels)
            images = (np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8))
            _write_idx(src, split, images, labels)
        self.src = src

    def tearDown(self):
        self.tmp.cleanup()

    def test_writes_balanced_traceable_pngs_and_readme(self):
        from PIL import Image
        out = self.dir / "demo"
        rc = _quiet_md(["--source", str(self.src), "--out", str(out), "--train-per-class", "3", "--test-per-class", "2"])
        self.assertEqual(rc, 0)
        labels = md.read_idx_labels(self.src / "train-labels-idx1-ubyte.gz")
        for name in md.CLASS_NAMES:
            train = sorted((out / "train" / name).iterdir())
            self.assertEqual(len(train), 3)
            self.assertEqual(len(list((out / "test" / name).iterdir())), 2)
            for png in train:
                index = int(png.stem.split("-")[-1])
                im = Image.open(png)
                self.assertEqual((im.mode, im.size), ("L", (28, 28)))
                self.assertEqual(im.getpixel((5, 5)), index)           # pixels are that IDX image
                self.assertEqual(md.CLASS_NAMES[labels[index]], name)  # and it has this label
        readme = (out / "README.md").read_text()
        self.assertIn("--train-per-class 3 --test-per-class 2 --seed 0", readme)
        self.assertIn("MIT License", readme)

    def test_same_seed_same_bytes_other_seed_other_images(self):
        def run(seed, name):
            out = self.dir / name
            _quiet_md(["--source", str(self.src), "--out", str(out), "--train-per-class", "2",
                     "--test-per-class", "1", "--seed", str(seed)])
            return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}
        a, b, c = run(0, "a"), run(0, "b"), run(5, "c")
        self.assertEqual(a, b)
        self.assertNotEqual(sorted(a), sorted(c))

    def test_refuses_to_overwrite_without_force(self):
        out = self.dir / "demo"
        args = ["--source", str(self.src), "--out", str(out), "--train-per-class", "1", "--test-per-class", "1"]
        self.assertEqual(_quiet_md(args), 0)
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(_quiet_md(args), 2)
        self.assertEqual(_quiet_md(args + ["--force"]), 0)

    def test_too_few_images_names_the_class(self):
        with self.assertRaises(ValueError) as cm:
            _quiet_md(["--source", str(self.src), "--out", str(self.dir / "d"), "--train-per-class", "7"])
        self.assertIn("has 6 images, 7 requested", str(cm.exception))

    def test_bad_idx_magic_names_the_file(self):
        bad = self.dir / "bad-idx3-ubyte"
        bad.write_bytes(struct.pack(">IIII", 1234, 0, 28, 28))
        with self.assertRaises(ValueError) as cm:
            md.read_idx_images(bad)
        self.assertIn("bad-idx3-ubyte: IDX magic 1234", str(cm.exception))


# ============================================================================= reference_pipeline

import numpy as np  # noqa: E402
import reference_pipeline as rp  # noqa: E402


class _MT19937:
    """Executable spec of the split's random numbers, for porting to C#:
    MT19937 with init_genrand(seed), and numpy's legacy permutation (masked rejection)."""

    def __init__(self, seed: int):
        self.mt = [0] * 624
        self.mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            self.mt[i] = (1812433253 * (self.mt[i - 1] ^ (self.mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self.index = 624

    def next_u32(self) -> int:
        if self.index >= 624:
            for i in range(624):
                y = (self.mt[i] & 0x80000000) | (self.mt[(i + 1) % 624] & 0x7FFFFFFF)
                self.mt[i] = self.mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.index = 0
        y = self.mt[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)

    def permutation(self, n: int) -> list[int]:
        a = list(range(n))
        for i in range(n - 1, 0, -1):
            mask = i
            for s in (1, 2, 4, 8, 16):
                mask |= mask >> s
            while True:
                j = self.next_u32() & mask
                if j <= i:
                    break
            a[i], a[j] = a[j], a[i]
        return a


def _write_safetensors(path: Path, tensors: dict, dtype: str = "F32", corrupt_key: str | None = None) -> None:
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for k, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype="<f4" if dtype == "F32" else "<f2").tobytes()
        end = offset + len(raw) + (4 if k == corrupt_key else 0)
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, end]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _image(path: Path, value: int, size=(40, 30), mode="L") -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(value)
    arr = (rng.rand(size[1], size[0]) * 255).astype(np.uint8)
    Image.fromarray(arr, "L").convert(mode).save(path)


class SplitRuleTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_numpy_permutation_matches_the_written_rule(self):
        for seed in (0, 1, 42, 2**32 - 1):
            ours, theirs = _MT19937(seed), np.random.RandomState(seed)
            for n in (1, 2, 7, 100, 410, 1000):  # one generator across calls, as in the split
                self.assertEqual(ours.permutation(n), theirs.permutation(n).tolist(), f"seed {seed}, n {n}")

    def test_one_folder_split_follows_the_rule_with_ordinal_order(self):
        names = {"Zeta": ["b.jpg", "B.jpg", "a.jpg", "_1.jpg", "10.jpg", "9.jpg"], "alpha": ["x1", "x2", "x3", ".hidden"]}
        for c, files in names.items():
            for f in files:
                (self.dir / c).mkdir(exist_ok=True)
                (self.dir / c / f).write_bytes(b"")
        split = rp.make_split(self.dir, 2, seed=3)
        self.assertEqual(split["classes"], ["Zeta", "alpha"])  # 'Z' (0x5A) < 'a' (0x61)
        rng = _MT19937(3)
        expected_train, expected_test = [], []
        for c, files in (("Zeta", ["10.jpg", "9.jpg", "B.jpg", "_1.jpg", "a.jpg", "b.jpg"]), ("alpha", ["x1", "x2", "x3"])):
            perm = rng.permutation(len(files))
            expected_train += [f"{c}/{files[i]}" for i in sorted(perm[:2])]
            expected_test += [f"{c}/{files[i]}" for i in sorted(perm[2:])]
        self.assertEqual([e["path"] for e in split["train"]], expected_train)
        self.assertEqual([e["path"] for e in split["test"]], expected_test)
        self.assertTrue(all(e["label"] == e["path"].split("/")[0] for e in split["train"] + split["test"]))

    def test_too_few_files_names_the_class_folder(self):
        for i in range(3):
            (self.dir / "a").mkdir(exist_ok=True)
            (self.dir / "a" / f"{i}.jpg").write_bytes(b"")
            (self.dir / "b").mkdir(exist_ok=True)
            (self.dir / "b" / f"{i}.jpg").write_bytes(b"")
        with self.assertRaises(rp.PipelineError) as cm:
            rp.make_split(self.dir, 4, 0)
        self.assertIn(f"{self.dir / 'a'}: 3 files, fewer than --train-per-class 4", str(cm.exception))

    def test_train_test_layout_and_unknown_test_class(self):
        for p in ("train/cat/1.png", "train/dog/2.png", "test/dog/3.png"):
            (self.dir / p).parent.mkdir(parents=True, exist_ok=True)
            (self.dir / p).write_bytes(b"")
        split = rp.make_split(self.dir, None, 0)
        self.assertEqual(split["classes"], ["cat", "dog"])
        self.assertEqual(split["test"], [{"path": "test/dog/3.png", "label": "dog"}])
        (self.dir / "test/cow").mkdir()
        with self.assertRaises(rp.PipelineError) as cm:
            rp.make_split(self.dir, None, 0)
        self.assertIn("['cow']", str(cm.exception))

    def test_split_file_is_validated(self):
        (self.dir / "a").mkdir()
        (self.dir / "a/1.jpg").write_bytes(b"")
        good = {"format": "tp7-split", "version": 1, "classes": ["a", "b"],
                "train": [{"path": "a/1.jpg", "label": "a"}], "test": [{"path": "a/1.jpg", "label": "a"}]}
        f = self.dir / "split.json"
        f.write_text(json.dumps(good))
        self.assertEqual(rp.read_split(f, self.dir), good)
        for broken, fragment in [({**good, "version": 2}, "version 2"),
                                 ({**good, "test": [{"path": "a/missing.jpg", "label": "a"}]}, "does not exist"),
                                 ({**good, "train": [{"path": "a/1.jpg", "label": "zebra"}]}, "train[0]")]:
            f.write_text(json.dumps(broken))
            with self.assertRaises(rp.PipelineError) as cm:
                rp.read_split(f, self.dir)
            self.assertIn(fragment, str(cm.exception))


class SafetensorsReaderTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_round_trip_f32_and_f16(self):
        t = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5, "b": np.array([1e-3], np.float32)}
        _write_safetensors(self.dir / "x.safetensors", t)
        got = rp.read_safetensors(self.dir / "x.safetensors")
        self.assertEqual(sorted(got), ["a.weight", "b"])
        np.testing.assert_array_equal(got["a.weight"], t["a.weight"])
        _write_safetensors(self.dir / "h.safetensors", t, dtype="F16")
        np.testing.assert_array_equal(rp.read_safetensors(self.dir / "h.safetensors")["a.weight"], t["a.weight"])

    def test_offsets_not_matching_shape_name_the_tensor(self):
        _write_safetensors(self.dir / "x.safetensors", {"k1": np.zeros(3, np.float32), "k2": np.zeros(2, np.float32)}, corrupt_key="k2")
        with self.assertRaises(rp.PipelineError) as cm:
            rp.read_safetensors(self.dir / "x.safetensors")
        self.assertIn("tensor 'k2'", str(cm.exception))

    def test_truncated_header(self):
        (self.dir / "t.safetensors").write_bytes(struct.pack("<Q", 1000) + b"{}")
        with self.assertRaises(rp.PipelineError) as cm:
            rp.read_safetensors(self.dir / "t.safetensors")
        self.assertIn("header length 1000", str(cm.exception))

    def test_wrong_vgg_keys_and_shapes_are_named(self):
        _write_safetensors(self.dir / "w.safetensors", {"fc.weight": np.zeros((2, 2), np.float32)})
        with self.assertRaises(rp.PipelineError) as cm:
            rp.build_model(self.dir / "w.safetensors", 0)
        self.assertIn("missing ['features.0.weight'", str(cm.exception))
        self.assertIn("unexpected ['fc.weight']", str(cm.exception))
        _write_safetensors(self.dir / "s.safetensors", {k: np.zeros(1, np.float32) for k in _VGG_KEYS})
        with self.assertRaises(rp.PipelineError) as cm:
            rp.build_model(self.dir / "s.safetensors", 0)
        self.assertIn("tensor 'features.0.weight' has shape [1], expected [64, 3, 3, 3]", str(cm.exception))


_VGG_KEYS = list(rp.vgg16_shapes())


class VggReferenceTests(unittest.TestCase):
    """One random-init VGG16 shared by the tests: building it takes seconds on a shared CPU."""

    @classmethod
    def setUpClass(cls):
        import torch
        cls.torch = torch
        cls.model = rp.build_model(None, 0)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_shape_table_matches_torchvision_state_dict(self):
        self.assertEqual({k: tuple(v.shape) for k, v in self.model.state_dict().items()}, rp.vgg16_shapes())
        self.assertEqual(list(self.model.state_dict()), _VGG_KEYS)

    def test_layer_taps_agree_with_torchvision_forward_and_are_pre_relu(self):
        torch = self.torch
        _image(self.dir / "g.png", 1)
        _image(self.dir / "c.jpg", 2, size=(300, 200), mode="RGB")
        x = torch.stack([rp.preprocess(self.dir / "g.png"), rp.preprocess(self.dir / "c.jpg")])
        self.assertEqual(tuple(x.shape), (2, 3, 224, 224))
        with torch.no_grad():
            taps = {name: rp.layer_output(self.model, x, name) for name in rp.LAYERS}
            logits = self.model(x)
        self.assertEqual({k: tuple(v.shape) for k, v in taps.items()},
                         {"pool5": (2, 25088), "fc6": (2, 4096), "relu6": (2, 4096), "fc7": (2, 4096), "relu7": (2, 4096), "fc8": (2, 1000)})
        torch.testing.assert_close(taps["fc8"], logits, rtol=1e-5, atol=1e-6)
        self.assertTrue((taps["fc6"] < 0).any() and (taps["fc7"] < 0).any(), "fc6/fc7 must be taken before ReLU")
        torch.testing.assert_close(taps["relu6"], torch.relu(taps["fc6"]))
        torch.testing.assert_close(taps["relu7"], torch.relu(taps["fc7"]))

    def test_preprocess_matches_torchvision_transforms(self):
        from PIL import Image
        from torchvision import transforms
        _image(self.dir / "p.png", 3, size=(97, 61))
        lab = transforms.Compose([transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BILINEAR),
                                  transforms.ToTensor(), transforms.Normalize(rp.IMAGENET_MEAN, rp.IMAGENET_STD)])
        want = lab(Image.open(self.dir / "p.png").convert("RGB"))
        self.torch.testing.assert_close(rp.preprocess(self.dir / "p.png"), want, rtol=0, atol=1e-6)

    def test_end_to_end_writes_report_predictions_and_features(self):
        data = self.dir / "data"
        for c, v in (("dark", 0), ("light", 1)):
            for i in range(3):
                _image(data / c / f"{i}.png", 10 * v + i)
        # Make the classes separable: overwrite 'light' with bright images.
        from PIL import Image
        for i in range(3):
            Image.new("L", (32, 32), 200 + 10 * i).save(data / "light" / f"{i}.png")
        (data / "dark" / "broken.png").write_bytes(b"not a png")
        out = self.dir / "out"
        original = rp.build_model
        rp.build_model = lambda weights, seed: self.model
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                rc = rp.main(["--random-init", "--data", str(data), "--train-per-class", "2", "--seed", "0",
                              "--layer", "fc7", "--out", str(out), "--batch-size", "3"])
                # Handing the written split back must reproduce the run exactly.
                rc_again = rp.main(["--random-init", "--data", str(data), "--split-file", str(out / "split.json"),
                                    "--layer", "fc7", "--out", str(self.dir / "again"), "--batch-size", "3"])
        finally:
            rp.build_model = original
        self.assertEqual((rc, rc_again), (0, 0))
        self.assertEqual((out / "predictions.csv").read_text(), (self.dir / "again" / "predictions.csv").read_text())
        np.testing.assert_array_equal(np.load(out / "test.npy"), np.load(self.dir / "again" / "test.npy"))
        report = json.loads((out / "report.json").read_text())
        split = json.loads((out / "split.json").read_text())
        n_test_listed = len(split["test"])
        self.assertEqual(report["class_names"], ["dark", "light"])
        skipped = [s["path"] for s in report["skipped"]]
        self.assertEqual(skipped, ["dark/broken.png"])
        self.assertIn("skipping", err.getvalue())
        self.assertEqual(report["n_train"] + report["n_test"], 6)
        rows = (out / "predictions.csv").read_text().strip().splitlines()
        self.assertEqual(rows[0], "path,true,predicted")
        self.assertEqual(len(rows) - 1, report["n_test"])
        self.assertLessEqual(report["n_test"], n_test_listed)
        train, test = np.load(out / "train.npy"), np.load(out / "test.npy")
        self.assertEqual((train.dtype, train.shape[1], test.shape[0]), (np.float32, 4096, report["n_test"]))
        np.testing.assert_allclose(np.linalg.norm(train, axis=1), 1.0, rtol=1e-5)
        confusion = np.array(report["confusion"])
        self.assertEqual(confusion.sum(), report["n_test"])
        self.assertAlmostEqual(report["accuracy"], np.trace(confusion) / confusion.sum())
        self.assertEqual(report["settings"]["layer"], "fc7")


# ============================================================================= export_onnx

class OnnxInspectTests(unittest.TestCase):
    def test_parser_reads_names_opset_and_initializer_bytes_of_a_real_export(self):
        import torch
        import export_onnx as eo
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "tiny.onnx"
            model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5)).eval()
            torch.onnx.export(model, torch.zeros(1, 3, 6, 6), str(path), opset_version=13, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            info = eo.inspect_onnx(path)
            self.assertEqual(info["inputs"][:1], ["input"])
            self.assertEqual(info["outputs"], ["logits"])
            self.assertEqual(info["opsets"]["ai.onnx"], 13)
            self.assertEqual(info["initializer_bytes"], 4 * sum(p.numel() for p in model.parameters()))
            truncated = Path(d) / "cut.onnx"
            truncated.write_bytes(path.read_bytes()[:-100])
            with self.assertRaises(ValueError):
                eo.inspect_onnx(truncated)


# ============================================================================= training references

import reference_finetune as rf  # noqa: E402
import torch_train_bench as ttb  # noqa: E402
import train_reference as tr  # noqa: E402

_TOOLS = Path(__file__).resolve().parent


def _quiet(fn, argv):
    """fn(argv) with stdout/stderr captured: (return code or SystemExit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = fn(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


class TrainingToolArgumentTests(unittest.TestCase):
    """Bad arguments and bad files: exit code 2 (arguments) or 1 (files), one line on stderr."""

    def test_argument_errors_are_one_line_naming_the_problem(self):
        w = ["--weights", "w.safetensors", "--out", "o.safetensors"]
        cases = [
            (tr.main, ["--out", "o"], "one of the arguments --weights --random-init is required"),
            (tr.main, w + ["--optimizer", "adamw", "--momentum", "0.9"], "--momentum does not apply to --optimizer adamw"),
            (tr.main, w + ["--betas", "0.9", "0.99"], "--betas does not apply to --optimizer sgd"),
            (tr.main, w + ["--nesterov"], "--nesterov needs --momentum > 0"),
            (tr.main, w + ["--size", "16"], "--size must be >= 32"),
            (tr.main, w + ["--optimizer", "adamw", "--betas", "0.9", "1.0"], "each must be in [0, 1)"),
            (rf.main, [], "give either --data DIR or --train DIR --test DIR"),
            (rf.main, ["--write-init", "f.safetensors"], "--write-init needs --classes N"),
            (rf.main, ["--write-init", "f", "--classes", "3", "--data", "d"], "not --data"),
            (rf.main, ["--data", "d", "--weights", "w", "--out", "o"], "--init is required"),
            (rf.main, ["--train", "a", "--weights", "w", "--init", "i", "--out", "o"], "--train and --test go together"),
            (rf.main, ["--data", "d", "--init", "i", "--out", "o"], "give --weights FILE or --random-init"),
            (ttb.main, ["--batch", "0"], "--batch, --reps and --threads must be >= 1"),
        ]
        for fn, argv, fragment in cases:
            rc, _, err = _quiet(fn, argv)
            self.assertEqual(rc, 2, (fn.__module__, argv, err))
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(fragment, err, (fn.__module__, argv))

    def test_missing_files_are_one_line_with_exit_code_1(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            for p in ("train/a/1.png", "train/b/2.png", "test/a/3.png"):
                (d / p).parent.mkdir(parents=True, exist_ok=True)
                (d / p).write_bytes(b"")
            cases = [
                (tr.main, ["--weights", str(d / "none.safetensors"), "--out", str(d / "o")], "none.safetensors: no such file"),
                (rf.main, ["--data", str(d), "--random-init", "--init", str(d / "init.safetensors"), "--out", str(d / "o")],
                 "init.safetensors: no such file (write one with --write-init FILE --classes 2"),
                (ttb.main, ["--weights", str(d / "w.safetensors")], "w.safetensors: no such file"),
            ]
            for fn, argv, fragment in cases:
                rc, _, err = _quiet(fn, argv)
                self.assertEqual(rc, 1, (fn.__module__, err))
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn(fragment, err)
            self.assertFalse((d / "o").exists())


class WriteInitTests(unittest.TestCase):
    def test_write_init_is_pytorchs_seeded_linear_and_deterministic(self):
        import torch
        with tempfile.TemporaryDirectory() as d:
            a, b, c = (Path(d) / f"{n}.safetensors" for n in "abc")
            for path, seed in ((a, 7), (b, 7), (c, 8)):
                rc, out, _ = _quiet(rf.main, ["--write-init", str(path), "--classes", "3", "--seed", str(seed)])
                self.assertEqual(rc, 0)
            import tp7_safetensors as st

            def tensors(path):
                with st.SafetensorsFile(path) as f:
                    return [f.read_bytes(k) for k in f.keys()]
            self.assertEqual(tensors(a), tensors(b))  # the metadata differs: it records the command
            self.assertNotEqual(tensors(a), tensors(c))
            torch.manual_seed(7)
            want = torch.nn.Linear(4096, 3)
            with st.SafetensorsFile(a) as f:
                self.assertEqual(f.keys(), ["classifier.6.weight", "classifier.6.bias"])
                self.assertEqual((f.shape("classifier.6.weight"), f.shape("classifier.6.bias")), ((3, 4096), (3,)))
                self.assertTrue(torch.equal(f.to_torch("classifier.6.weight"), want.weight.detach()))
                self.assertTrue(torch.equal(f.to_torch("classifier.6.bias"), want.bias.detach()))
                self.assertEqual((f.metadata["classes"], f.metadata["seed"]), ("3", "7"))
            with self.assertRaises(rp.PipelineError) as cm:
                rf.read_init(a, 4)
            self.assertIn("tensor 'classifier.6.weight' is F32[3, 4096], expected F32[4, 4096] for 4 classes", str(cm.exception))


def _fake_vgg():
    """Just the attributes reference_pipeline.layer_output uses, small enough to build in a blink."""
    import torch.nn as nn
    m = nn.Module()
    m.features = nn.Sequential(nn.AdaptiveAvgPool2d(2))  # (N, 3, 2, 2)
    m.avgpool = nn.Identity()
    m.classifier = nn.Sequential(nn.Linear(12, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
                                 nn.Dropout(), nn.Linear(4096, 1000))
    return m.eval()


class ReferenceFinetuneTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import torch
        torch.manual_seed(0)
        cls.model = _fake_vgg()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        data = cls.dir / "data"
        from PIL import Image
        for part, n in (("train", 3), ("test", 2)):
            for c, base in (("light", 180), ("Dark", 20)):  # 'D' < 'l': Dark is class 0
                (data / part / c).mkdir(parents=True)
                for i in range(n):
                    Image.new("RGB", (30, 20), (base + 9 * i, base + 20 * (part == "test"), base)).save(data / part / c / f"{i}.png")
        (data / "train" / "light" / "1_broken.png").write_bytes(b"not a png")  # skipped, listed between 1 and 2
        cls.data = data
        cls.init = cls.dir / "init.safetensors"
        assert _quiet(rf.main, ["--write-init", str(cls.init), "--classes", "2", "--seed", "3"])[0] == 0

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _run(self, source: list[str], out: Path, extra: list[str]):
        original = rp.build_model
        rp.build_model = lambda weights, seed: self.model
        try:
            rc, stdout, err = _quiet(rf.main, source + ["--random-init", "--init", str(self.init), "--out", str(out)] + extra)
        finally:
            rp.build_model = original
        self.assertEqual(rc, 0, err)
        return stdout, err

    def test_head_training_matches_sgd_with_momentum_written_out(self):
        import torch
        import tp7_safetensors as st
        out = self.dir / "sgd"
        lr, mom, wd = 0.002, 0.9, 1e-3
        stdout, err = self._run(["--data", str(self.data)], out, ["--epochs", "2", "--batch", "4", "--lr", str(lr),
                                                                  "--momentum", str(mom), "--weight-decay", str(wd)])
        self.assertIn("skipping", err)
        report = json.loads((out / "report.json").read_text())
        self.assertEqual(report["class_names"], ["Dark", "light"])
        self.assertEqual((report["n_train"], report["n_test"]), (6, 4))
        self.assertEqual([s["path"] for s in report["skipped"]], ["train/light/1_broken.png"])
        # The features in listing order, then SGD (torch's rule: d = g + wd*w; buf = d, then mom*buf + d)
        # in float64, batches [0:4] and the partial [4:6].
        order = [f"train/Dark/{i}.png" for i in range(3)] + [f"train/light/{i}.png" for i in range(3)]
        with torch.no_grad():
            x = rp.layer_output(self.model, torch.stack([rp.preprocess(self.data / p) for p in order]), "relu7").double()
            xt = rp.layer_output(self.model, torch.stack([rp.preprocess(self.data / f"test/{c}/{i}.png")
                                                          for c in ("Dark", "light") for i in range(2)]), "relu7").double()
        y = torch.tensor([0, 0, 0, 1, 1, 1])
        with st.SafetensorsFile(self.init) as f:
            w, b = f.to_torch("classifier.6.weight").double(), f.to_torch("classifier.6.bias").double()
        buf, epoch_loss = None, []
        for _ in range(2):
            total = 0.0
            for s in (slice(0, 4), slice(4, 6)):
                logits = x[s] @ w.T + b
                total += torch.nn.functional.cross_entropy(logits, y[s]).item() * logits.shape[0]
                d = (torch.softmax(logits, 1) - torch.nn.functional.one_hot(y[s], 2)) / logits.shape[0]
                g = [d.T @ x[s] + wd * w, d.sum(0) + wd * b]
                buf = g if buf is None else [mom * m + gi for m, gi in zip(buf, g)]
                w, b = w - lr * buf[0], b - lr * buf[1]
            epoch_loss.append(total / 6)
        self.assertGreater(min(epoch_loss), 0.01)  # not saturated, so the comparison means something
        np.testing.assert_allclose(report["epoch_loss"], epoch_loss, rtol=1e-5)
        self.assertEqual([len(e) for e in report["batch_loss"]], [2, 2])
        with st.SafetensorsFile(out / "head.safetensors") as f:
            torch.testing.assert_close(f.to_torch("classifier.6.weight").double(), w, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(f.to_torch("classifier.6.bias").double(), b, rtol=1e-4, atol=1e-6)
            logits = f.to_torch("test_logits").double()
        torch.testing.assert_close(logits, xt @ w.T + b, rtol=1e-4, atol=1e-5)
        rows = (out / "predictions.csv").read_text().strip().splitlines()
        self.assertEqual(rows[0], "path,true,pred")
        pred = logits.argmax(1).tolist()
        self.assertEqual(rows[1:], [f"test/{c}/{i}.png,{c},{['Dark', 'light'][pred[2 * k + i]]}"
                                    for k, c in enumerate(("Dark", "light")) for i in range(2)])
        self.assertAlmostEqual(report["accuracy"], float(np.mean(np.array(pred) == np.array([0, 0, 1, 1]))))
        self.assertIn(f"accuracy {100 * report['accuracy']:.2f}%", stdout)
        self.assertIn("--momentum 0.9", report["command"])

    def test_train_test_folders_give_the_same_head_as_data(self):
        a, b = self.dir / "a", self.dir / "b"
        extra = ["--epochs", "1", "--batch", "5", "--optimizer", "adamw", "--lr", "1e-3"]
        self._run(["--data", str(self.data)], a, extra)
        self._run(["--train", str(self.data / "train"), "--test", str(self.data / "test")], b, extra)
        import tp7_safetensors as st
        with st.SafetensorsFile(a / "head.safetensors") as fa, st.SafetensorsFile(b / "head.safetensors") as fb:
            for k in ("classifier.6.weight", "classifier.6.bias", "test_logits"):
                self.assertEqual(fa.read_bytes(k), fb.read_bytes(k), k)
        rows_a = (a / "predictions.csv").read_text().splitlines()
        rows_b = (b / "predictions.csv").read_text().splitlines()
        self.assertEqual([r.removeprefix("test/") for r in rows_a], rows_b)  # --test paths are relative to it


class TrainReferenceTests(unittest.TestCase):
    """One real 2-step VGG16 run at 32x32, batch 1 (writes a ~530 MB file)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.path = Path(cls.tmp.name) / "train.safetensors"
        cls.lr = 0.02
        rc, cls.stdout, err = _quiet(tr.main, ["--random-init", "--random-biases", "--seed", "4", "--size", "32",
                                               "--batch", "1", "--steps", "2", "--lr", str(cls.lr), "--out", str(cls.path)])
        assert rc == 0, err
        import tp7_safetensors as st
        cls.f = st.SafetensorsFile(cls.path)

    @classmethod
    def tearDownClass(cls):
        cls.f.close()
        cls.tmp.cleanup()

    def test_keys_shapes_and_metadata(self):
        f = self.f
        steps = [f"{k}/{i}" for i in range(2) for k in ("input", "labels", "logits")]
        self.assertEqual(f.keys(), steps + ["loss", "loss64"] + [f"update/{k}" for k in _VGG_KEYS])
        self.assertEqual([f.shape(k) for k in ("input/1", "labels/1", "logits/1", "loss", "loss64")],
                         [(1, 3, 32, 32), (1,), (1, 1000), (2,), (2,)])
        self.assertEqual([f.dtype(k) for k in ("input/0", "labels/0", "loss", "loss64")], ["F32", "I64", "F32", "F64"])
        for k, shape in rp.vgg16_shapes().items():
            self.assertEqual((f.dtype(f"update/{k}"), f.shape(f"update/{k}")), ("F32", shape))
        m = f.metadata
        self.assertEqual((m["format_version"], m["script"], m["optimizer"], m["lr"], m["momentum"], m["nesterov"]),
                         ("1", "tools/train_reference.py", "sgd", repr(self.lr), "0.0", "false"))
        self.assertEqual((m["steps"], m["batch"], m["size"], m["seed"]), ("2", "1", "32", "4"))
        self.assertIn("--random-biases", m["weights"])
        self.assertIn("torch_version", m)
        self.assertTrue(m["command"].startswith("tools/train_reference.py --random-init"))

    def test_batches_losses_and_updates_follow_the_recipe(self):
        import torch
        f = self.f
        for i in range(2):
            g = torch.Generator().manual_seed(4 + i)
            self.assertTrue(torch.equal(f.to_torch(f"input/{i}"), torch.randn(1, 3, 32, 32, generator=g)))
            self.assertTrue(torch.equal(f.to_torch(f"labels/{i}"), torch.randint(0, 1000, (1,), generator=g)))
        logits = [f.to_torch(f"logits/{i}").double() for i in range(2)]
        labels = [f.to_torch(f"labels/{i}") for i in range(2)]
        loss64 = [torch.nn.functional.cross_entropy(z, y).item() for z, y in zip(logits, labels)]
        np.testing.assert_allclose(f.to_torch("loss64").numpy(), loss64, rtol=1e-12)
        np.testing.assert_allclose(f.to_torch("loss").numpy(), loss64, rtol=1e-5)
        self.assertTrue(np.isfinite(loss64).all())
        self.assertIn("step 1: loss", self.stdout)
        # Plain SGD: fc8's bias moves by -lr * (softmax - onehot) of each step's own forward.
        grads = sum(torch.softmax(z, 1)[0] - torch.nn.functional.one_hot(y, 1000)[0] for z, y in zip(logits, labels))
        torch.testing.assert_close(f.to_torch("update/classifier.6.bias").double(), -self.lr * grads, rtol=1e-4, atol=1e-8)
        # The gradient reached the first convolution.
        self.assertGreater(f.to_torch("update/features.0.weight").abs().max().item(), 0)


class TorchTrainBenchTests(unittest.TestCase):
    def test_prints_one_json_line_last_with_the_timed_steps(self):
        import subprocess
        r = subprocess.run([sys.executable, str(_TOOLS / "torch_train_bench.py"), "--batch", "1", "--size", "32",
                            "--reps", "1", "--warmup", "1"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout.strip().splitlines()[-1])
        for key in ("torch_version", "threads", "batch", "size", "seconds_per_step", "median_s", "peak_rss_bytes"):
            self.assertIn(key, report)
        self.assertEqual((report["batch"], report["size"], report["threads"]), (1, 32, os.cpu_count()))
        self.assertEqual(len(report["seconds_per_step"]), 1)
        self.assertEqual(report["median_s"], report["seconds_per_step"][0])
        self.assertGreater(report["median_s"], 0)
        # Weights, gradients and momentum buffers are 3 x 553 MB at least.
        self.assertGreater(report["peak_rss_bytes"], 3 * 553_000_000)
        self.assertEqual(len(report["losses"]), 2)
        self.assertTrue(all(np.isfinite(report["losses"])))
