#!/usr/bin/env python3
"""Pillow / torchvision references for Tests/ImagingTests.cs (run with /usr/bin/python3: Pillow 9.4, torchvision 0.14).

  pil_reference.py fixtures OUTDIR   write the test images (PNG/JPEG variants of sklearn's sample photos)
  pil_reference.py refs JOBFILE      run the jobs in JOBFILE, one per line, fields separated by tabs:
      rgb     INPUT OUT            Image.open(INPUT).convert("RGB") as raw uint8 (H, W, 3)
      hi8     INPUT OUT            the high byte of every 16-bit sample, grey replicated to 3 channels, uint8 (H, W, 3)
      resize  INPUT OUT W H        convert("RGB").resize((W, H), Image.BILINEAR) as raw uint8 (H, W, 3)
      tensor  INPUT OUT SIZE       torchvision Resize((SIZE, SIZE)), ToTensor, Normalize(ImageNet) as raw float32 (3, SIZE, SIZE)
    INPUT is a file path, or raw:W:H:PATH for raw uint8 (H, W, 3) RGB bytes.
All outputs are headerless little-endian arrays; each job prints "OK OUT WIDTH HEIGHT" (the size PIL saw).
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

SAMPLES = "/usr/lib/python3/dist-packages/sklearn/datasets/images"


def open_input(spec):
    if spec.startswith("raw:"):
        _, w, h, path = spec.split(":", 3)
        with open(path, "rb") as f:
            return Image.frombytes("RGB", (int(w), int(h)), f.read())
    return Image.open(spec)


def write_png16(path, array, color_type):
    """PNG with 16-bit samples (Pillow cannot save 16-bit RGB): array is uint16 (H, W) or (H, W, 3)."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    china = Image.open(os.path.join(SAMPLES, "china.jpg")).convert("RGB")     # 640 x 427
    flower = Image.open(os.path.join(SAMPLES, "flower.jpg")).convert("RGB")
    china.save(os.path.join(out, "china.png"))
    flower.save(os.path.join(out, "flower.png"))
    china.convert("L").save(os.path.join(out, "china_gray.png"))
    china.convert("L").save(os.path.join(out, "china_gray.jpg"), quality=90)
    china.resize((50, 37), Image.BILINEAR).save(os.path.join(out, "small_50x37.png"))
    flower.resize((333, 211), Image.BILINEAR).save(os.path.join(out, "odd_333x211.png"))
    flower.resize((224, 224), Image.BILINEAR).save(os.path.join(out, "exact_224.png"))
    rgba = china.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(china.size))
    rgba.save(os.path.join(out, "china_rgba.png"))
    la = china.convert("L")
    la.putalpha(Image.linear_gradient("L").resize(china.size))
    la.save(os.path.join(out, "china_la.png"))
    china.convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(out, "china_palette.png"))
    china.convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(out, "china_palette.gif"))
    china.convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(out, "china_transparent.gif"), transparency=5)
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90° CW to display": Pillow's open() ignores it, and so must we
    china.save(os.path.join(out, "china_exif_rotated.jpg"), quality=90, subsampling=0, exif=exif)
    china.save(os.path.join(out, "china_420.jpg"), quality=90, subsampling=2)   # chroma at half resolution, as cameras write
    china.convert("CMYK").save(os.path.join(out, "china_cmyk.jpg"), quality=95)
    rgb8 = np.asarray(china).astype(np.uint16)
    # Low byte deliberately unrelated to the high byte, so "high byte" and "rounded scale" differ.
    write_png16(os.path.join(out, "china_rgb16.png"), (rgb8 << 8) | ((rgb8 * 7) & 0xFF), 2)
    gray8 = np.asarray(china.convert("L")).astype(np.uint16)
    write_png16(os.path.join(out, "china_gray16.png"), (gray8 << 8) | ((gray8 * 7) & 0xFF), 0)
    print("OK fixtures", out)


def tensor(img, size):
    import torch
    from torchvision import transforms
    t = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    with torch.no_grad():
        return t(img.convert("RGB")).numpy().astype("<f4")


def hi8(img):
    a = np.asarray(img)
    if a.dtype == np.uint8:      # Pillow already reduced RGB;16B to its high byte
        return np.asarray(img.convert("RGB"))
    a = (a.astype(np.int64) >> 8).astype(np.uint8)
    return np.stack([a, a, a], axis=-1) if a.ndim == 2 else a[..., :3]


def refs(jobfile):
    with open(jobfile) as f:
        jobs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for job in jobs:
        kind, src, out = job[0], job[1], job[2]
        img = open_input(src)
        size = img.size
        if kind == "rgb":
            data = np.asarray(img.convert("RGB"), dtype=np.uint8)
        elif kind == "hi8":
            data = hi8(img)
        elif kind == "resize":
            data = np.asarray(img.convert("RGB").resize((int(job[3]), int(job[4])), Image.BILINEAR), dtype=np.uint8)
        elif kind == "tensor":
            data = tensor(img, int(job[3]))
        else:
            raise SystemExit(f"{jobfile}: unknown job kind '{kind}'")
        with open(out, "wb") as g:
            g.write(np.ascontiguousarray(data).tobytes())
        print("OK", out, size[0], size[1])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("fixtures", "refs"):
        raise SystemExit(__doc__)
    fixtures(sys.argv[2]) if sys.argv[1] == "fixtures" else refs(sys.argv[2])
