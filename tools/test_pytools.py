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
