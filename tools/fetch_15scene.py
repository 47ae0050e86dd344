#!/usr/bin/env python3
"""Download, verify and unpack the 15-Scene dataset (Lazebnik, Schmid, Ponce, CVPR 2006).

The archive is the original `scene_categories.zip` from the Ponce group at UIUC (4485 grayscale
JPEGs in 15 class folders: bedroom, CALsuburb, industrial, kitchen, livingroom, MITcoast,
MITforest, MIThighway, MITinsidecity, MITmountain, MITopencountry, MITstreet, MITtallbuilding,
PARoffice, store). Its MD5 is 58828019197b2ad0a7efb472e7a85c2a. The UIUC page is gone; the
Internet Archive keeps the same bytes, so that copy is tried first. Other mirrors (e.g. the
figshare "15-Scene Image Dataset", article 7007177) may repackage the images: give them with
--url and, if their checksum differs, with --md5 THEIR_MD5 (or --md5 none to skip the check).

What it does:
  1. streams the archive to DEST/.download/<name>.part with a progress line, resuming a partial
     download with an HTTP Range request when the server allows it;
  2. checks the MD5 and only then renames the file to DEST/<name>;
  3. extracts it into DEST, refusing any member with an absolute path, a drive letter, a `..`
     component, or (in tar archives) a link or device, before writing anything;
  4. prints the class folders with their image counts and the `tp7 run` command to use.

Usage:
    python3 tools/fetch_15scene.py                      # into data/15scene
    python3 tools/fetch_15scene.py --dest /big/disk/15scene
    python3 tools/fetch_15scene.py --archive ~/Downloads/scene_categories.zip   # offline
Only the Python standard library is needed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

EXPECTED_MD5 = "58828019197b2ad0a7efb472e7a85c2a"
ARCHIVE_NAME = "scene_categories.zip"
# Tried in order; the MD5 check decides whether a copy is the right one.
DEFAULT_URLS = [
    "https://web.archive.org/web/20070829035029/http://www-cvr.ai.uiuc.edu/ponce_grp/data/scene_categories/scene_categories.zip",
    "http://www-cvr.ai.uiuc.edu/ponce_grp/data/scene_categories/scene_categories.zip",
    "http://www.cs.illinois.edu/homes/slazebni/research/scene_categories.zip",
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"}
CHUNK = 1 << 16


class FetchError(Exception):
    """A failure the user can act on; main() prints it as one line."""


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress(done: int, total: int | None, fresh: int, started: float, out=sys.stderr) -> None:
    """One overwritten line: bytes on disk, share of the total, and speed of this session."""
    rate = fresh / max(time.monotonic() - started, 1e-6) / 1e6
    if total:
        out.write(f"\r  {done / 1e6:8.1f} / {total / 1e6:.1f} MB  {100 * done / total:5.1f}%  {rate:6.2f} MB/s")
    else:
        out.write(f"\r  {done / 1e6:8.1f} MB  {rate:6.2f} MB/s")
    out.flush()


def download(url: str, part: Path, timeout: float = 60.0, quiet: bool = False) -> None:
    """Stream `url` into `part`, resuming from its current size when the server honours Range."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "tp7-fetch-15scene/1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # the partial file is already complete; the MD5 check will tell
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}") from e
    with resp:
        status = getattr(resp, "status", None) or resp.getcode()
        if status == 206:
            mode, done = "ab", have
            if not quiet:
                print(f"  resuming at {have / 1e6:.1f} MB", file=sys.stderr)
        else:
            mode, done = "wb", 0  # server ignored Range: start over
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        start, started, last = done, time.monotonic(), 0.0
        with open(part, mode) as f:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                done += len(block)
                now = time.monotonic()
                if not quiet and now - last > 0.5:
                    _progress(done, total, done - start, started)
                    last = now
        if not quiet:
            _progress(done, total, done - start, started)
            print(file=sys.stderr)
    if total is not None and done != total:
        raise FetchError(f"{url}: connection closed at {done} of {total} bytes; run again to resume")


def fetch_archive(urls: list[str], dest: Path, name: str, md5: str | None, quiet: bool = False) -> Path:
    """Return DEST/name with a verified checksum, downloading it from the first URL that works."""
    final = dest / name
    if final.exists():
        if md5 is None or md5_of(final) == md5:
            if not quiet:
                print(f"{final}: already present" + ("" if md5 is None else ", MD5 ok"))
            return final
        raise FetchError(f"{final}: MD5 {md5_of(final)}, expected {md5}; delete it and run again")
    part = dest / ".download" / (name + ".part")
    errors = []
    for url in urls:
        if not quiet:
            print(f"downloading {url}", file=sys.stderr)
        try:
            download(url, part, quiet=quiet)
        except FetchError as e:
            errors.append(str(e))
            if not quiet:
                print(f"  failed: {e}", file=sys.stderr)
            continue
        got = md5_of(part)
        if md5 is not None and got != md5:
            errors.append(f"{url}: MD5 {got}, expected {md5}")
            if not quiet:
                print(f"  MD5 {got} does not match {md5}; discarding", file=sys.stderr)
            part.unlink()
            continue
        os.replace(part, final)
        shutil.rmtree(part.parent, ignore_errors=True)
        return final
    raise FetchError("no URL gave the archive: " + "; ".join(errors))


def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Reject names that would land outside the destination; return the relative path."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise FetchError(f"{archive}: member '{name}' has an absolute path; refusing to extract")
    if ".." in p.parts:
        raise FetchError(f"{archive}: member '{name}' contains '..'; refusing to extract")
    return p


def safe_extract(archive: Path, dest: Path) -> list[Path]:
    """Extract a .zip or tar archive into dest after checking every member; return the files written.

    All members are checked before the first byte is written, so a hostile archive leaves
    nothing behind. Directory entries are created; tar links, devices and FIFOs are refused."""
    dest = dest.resolve()
    root = str(dest) + os.sep
    written = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            plan = []
            for info in z.infolist():
                rel = _check_member_name(archive, info.filename)
                # Unix mode in the high 16 bits; 0o120000 is a symlink.
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise FetchError(f"{archive}: member '{info.filename}' is a symbolic link; refusing to extract")
                target = (dest / rel).resolve()
                if not (str(target) + os.sep).startswith(root):
                    raise FetchError(f"{archive}: member '{info.filename}' resolves outside {dest}")
                plan.append((info, target))
            for info, target in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                written.append(target)
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            plan = []
            for m in t.getmembers():
                rel = _check_member_name(archive, m.name)
                if not (m.isfile() or m.isdir()):
                    raise FetchError(f"{archive}: member '{m.name}' is a link or special file; refusing to extract")
                target = (dest / rel).resolve()
                if not (str(target) + os.sep).startswith(root) and target != dest:
                    raise FetchError(f"{archive}: member '{m.name}' resolves outside {dest}")
                plan.append((m, target))
            for m, target in plan:
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = t.extractfile(m)
                assert src is not None  # regular file
                with src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                written.append(target)
        return written
    raise FetchError(f"{archive}: neither a zip nor a tar archive")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def find_class_root(dest: Path) -> Path:
    """The shallowest folder under dest whose sub-folders (two or more) hold the images.

    The original zip puts the class folders at its top level; repackaged copies often add a
    wrapper folder, so search down a few levels. macOS resource folders (__MACOSX) are skipped."""
    frontier = [dest]
    for _ in range(4):
        nxt = []
        for d in frontier:
            subs = sorted(s for s in d.iterdir() if s.is_dir() and not s.name.startswith((".", "__MACOSX")))
            with_images = [s for s in subs if any(_is_image(f) for f in s.iterdir())]
            if len(with_images) >= 2:
                return d
            nxt.extend(subs)
        frontier = nxt
    raise FetchError(f"{dest}: no folder with two or more class sub-folders of images found")


def class_counts(root: Path) -> dict[str, int]:
    """Class folder name -> number of image files, in ordinal name order (the class index order)."""
    counts = {}
    for s in sorted((s for s in root.iterdir() if s.is_dir() and not s.name.startswith((".", "__MACOSX"))),
                    key=lambda s: s.name):
        counts[s.name] = sum(1 for f in s.iterdir() if _is_image(f))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", default="data/15scene", help="where the archive and the images go (default data/15scene)")
    ap.add_argument("--url", action="append", help="download from this URL instead of the default mirrors (repeatable)")
    ap.add_argument("--md5", default=EXPECTED_MD5, help=f"expected MD5 of the archive (default {EXPECTED_MD5}; 'none' skips)")
    ap.add_argument("--archive", help="use this archive already on disk instead of downloading")
    ap.add_argument("--train-per-class", type=int, default=100, help="for the printed tp7 command (default 100, as in the paper)")
    args = ap.parse_args(argv)

    dest = Path(args.dest)
    md5 = None if args.md5.lower() == "none" else args.md5.lower()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        if args.archive:
            archive = Path(args.archive)
            if not archive.is_file():
                raise FetchError(f"{archive}: no such file")
            if md5 is not None:
                got = md5_of(archive)
                if got != md5:
                    raise FetchError(f"{archive}: MD5 {got}, expected {md5} (pass --md5 none to accept it)")
        else:
            urls = args.url or DEFAULT_URLS
            name = ARCHIVE_NAME if not args.url else (PurePosixPath(args.url[0].split("?")[0]).name or ARCHIVE_NAME)
            archive = fetch_archive(urls, dest, name, md5)
        print(f"{archive}: MD5 {'ok' if md5 else 'not checked'}; extracting into {dest}")
        files = safe_extract(archive, dest)
        root = find_class_root(dest)
        counts = class_counts(root)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    print(f"extracted {len(files)} files; classes under {root}:")
    for name, n in counts.items():
        print(f"  {name:<18} {n:5d} images")
    print(f"  {'total':<18} {sum(counts.values()):5d} images in {len(counts)} classes")
    small = [n for n, c in counts.items() if c <= args.train_per_class]
    if small:
        print(f"warning: classes with no more than {args.train_per_class} images leave none for testing: {', '.join(small)}")
    print("\nrun:")
    print(f"  tp7 run --data {root} --train-per-class {args.train_per_class} --seed 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
