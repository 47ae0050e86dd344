#!/usr/bin/env python3
"""Write a small class-folder dataset full of files a loader must survive (run with /usr/bin/python3, Pillow 9.x).

  make_hostile_dataset.py OUTDIR

OUTDIR/cats and OUTDIR/dogs hold good images in every supported format and colour mode (including a
CMYK JPEG and a 16-bit PNG, which must decode) next to files that must be skipped with a reason.
It prints one line per file: "good PATH" or "bad PATH EXPECTED-REASON" (tab-separated), which the test reads.
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, features

SAMPLES = "/usr/lib/python3/dist-packages/sklearn/datasets/images"


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main(out):
    china = Image.open(os.path.join(SAMPLES, "china.jpg")).convert("RGB")
    flower = Image.open(os.path.join(SAMPLES, "flower.jpg")).convert("RGB")
    cats, dogs = os.path.join(out, "cats"), os.path.join(out, "dogs")
    os.makedirs(cats, exist_ok=True)
    os.makedirs(dogs, exist_ok=True)
    lines = []

    def good(path):
        lines.append(("good", path))

    def bad(path, reason):
        lines.append(("bad", path, reason))

    p = os.path.join(cats, "a_photo.jpg"); china.resize((160, 107)).save(p, quality=90); good(p)
    p = os.path.join(cats, "b_cmyk.jpg"); flower.resize((120, 80)).convert("CMYK").save(p, quality=90); good(p)
    p = os.path.join(cats, "c_gray.PNG"); china.resize((90, 61)).convert("L").save(p); good(p)
    p = os.path.join(cats, "d_gray16.png"); Image.fromarray((np.asarray(china.resize((70, 50)).convert("L")).astype(np.uint16) * 257)).convert("I;16").save(p); good(p)
    p = os.path.join(cats, "e_palette.gif"); flower.resize((100, 66)).convert("P", palette=Image.ADAPTIVE).save(p); good(p)
    p = os.path.join(cats, "f_truncated.jpg")
    data = open(os.path.join(SAMPLES, "flower.jpg"), "rb").read()
    open(p, "wb").write(data[: len(data) // 3]); bad(p, "truncated JPEG")
    p = os.path.join(cats, "g_text.jpg"); open(p, "w").write("this is a text file, not a JPEG\n"); bad(p, "not an image (text file)")
    p = os.path.join(cats, "h_empty.jpg"); open(p, "wb").close(); bad(p, "empty file")
    open(os.path.join(cats, ".hidden.jpg"), "w").write("hidden, must be ignored")
    open(os.path.join(cats, "notes.txt"), "w").write("not an image extension, must be ignored")

    p = os.path.join(dogs, "a_rgba.png"); im = flower.resize((80, 80)); im.putalpha(128); im.save(p); good(p)
    p = os.path.join(dogs, "b_photo.bmp"); china.resize((64, 48)).save(p); good(p)
    p = os.path.join(dogs, "c_photo.tif"); flower.resize((75, 50)).save(p); good(p)
    if features.check("webp"):
        p = os.path.join(dogs, "d_photo.webp"); china.resize((96, 64)).save(p, lossless=True); good(p)
    p = os.path.join(dogs, "e_huge.png")
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    bad(p, "100000x100000 exceeds the 64 Mpx limit")
    p = os.path.join(dogs, "f_cut.png")
    china.resize((120, 80)).save(p)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2]); bad(p, "truncated PNG")
    p = os.path.join(dogs, "g_photo.jpeg"); flower.resize((130, 90)).save(p, quality=85); good(p)

    for line in lines:
        print("\t".join(line))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
