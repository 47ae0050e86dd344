"""Minimal safetensors writer and reader (Python standard library only).

Layout (https://huggingface.co/docs/safetensors, "Format"):
    8 bytes  little-endian uint64 N = length of the JSON header
    N bytes  JSON: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [...],
             "data_offsets": [begin, end]}, ...}; offsets are relative to the byte after the header
    ...      the tensors' raw little-endian bytes, packed in header order with no gaps

We pad the header with spaces so the data starts on an 8-byte boundary (readers may then map
tensors without copying). Both tools/convert_weights.py and tools/make_reference.py write through
`write`, and the C# reader in Engine/ reads the same files, so the checks in `SafetensorsFile`
mirror what a reader must reject: unknown dtypes, offsets that overlap, leave gaps or run past
the end of the file, and byte counts that disagree with the shape.

The optional helpers `from_torch`, `SafetensorsFile.to_torch` and `SafetensorsFile.to_numpy`
import torch / numpy only when called.
"""

import hashlib
import json
import os
import struct
import sys

# dtype name -> (bytes per element, array/struct type code or None)
DTYPES = {
    "F64": (8, "d"),
    "F32": (4, "f"),
    "F16": (2, "e"),
    "BF16": (2, None),
    "I64": (8, "q"),
    "I32": (4, "i"),
    "I16": (2, "h"),
    "I8": (1, "b"),
    "U8": (1, "B"),
    "BOOL": (1, "?"),
}

# A header larger than this is not a tensor index but a corrupt or hostile file.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not valid safetensors, or a tensor that does not fit its declared shape."""


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def nbytes_of(dtype, shape):
    return DTYPES[dtype][0] * numel(shape)


def _check_name_dtype_shape(path, name, dtype, shape):
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise SafetensorsError(f"{path}: invalid tensor name {name!r}")
    if dtype not in DTYPES:
        raise SafetensorsError(f"{path}: tensor '{name}' has unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SafetensorsError(f"{path}: tensor '{name}' has invalid shape {list(shape)}")


def build_header(tensors, metadata=None, path="<memory>"):
    """Return the header bytes (8-byte length + padded JSON) for [(name, dtype, shape), ...]."""
    header = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise SafetensorsError(f"{path}: __metadata__ values must be strings; offending keys: {bad}")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dtype, shape in tensors:
        _check_name_dtype_shape(path, name, dtype, shape)
        if name in header:
            raise SafetensorsError(f"{path}: tensor '{name}' appears twice")
        size = nbytes_of(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text


def write(path, tensors, metadata=None):
    """Write tensors atomically (temp file in the same folder, fsync, rename).

    tensors: list of (name, dtype, shape, data) in file order. `data` is a bytes-like object of
    exactly nbytes_of(dtype, shape) little-endian bytes, or a zero-argument callable returning
    one (so a converter can materialise one large tensor at a time).
    Returns (file size in bytes, sha256 hex digest of the file).
    """
    tensors = list(tensors)
    header = build_header([(n, d, s) for n, d, s, _ in tensors], metadata, path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            digest.update(header)
            size += len(header)
            for name, dtype, shape, data in tensors:
                if callable(data):
                    data = data()
                view = memoryview(data).cast("B")
                expected = nbytes_of(dtype, shape)
                if view.nbytes != expected:
                    raise SafetensorsError(
                        f"{path}: tensor '{name}' {dtype}{list(shape)} needs {expected} bytes, got {view.nbytes}")
                f.write(view)
                digest.update(view)
                size += view.nbytes
                del view, data
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return size, digest.hexdigest()


def sha256_file(path, chunk=16 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class SafetensorsFile:
    """Reads a safetensors file lazily: the header at open, each tensor's bytes on request.

        with SafetensorsFile("weights/vgg16.safetensors") as st:
            st.metadata, st.keys(), st.dtype(k), st.shape(k), st.read_bytes(k), st.to_torch(k)
    """

    def __init__(self, path):
        self.path = str(path)
        self._f = open(self.path, "rb")
        try:
            self._parse_header()
        except BaseException:
            self._f.close()
            raise

    def _parse_header(self):
        path = self.path
        file_size = os.fstat(self._f.fileno()).st_size
        raw = self._f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: file is {file_size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER_BYTES or 8 + n > file_size:
            raise SafetensorsError(f"{path}: header length {n} does not fit in a {file_size}-byte file")
        try:
            header = json.loads(self._f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not a JSON object")
        meta = header.pop("__metadata__", {}) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
        self.metadata = meta
        self.data_start = 8 + n
        data_len = file_size - self.data_start
        entries = []
        for name, info in header.items():
            if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
                raise SafetensorsError(f"{path}: tensor '{name}' entry must have exactly dtype, shape, data_offsets")
            dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
            if not isinstance(shape, list):
                raise SafetensorsError(f"{path}: tensor '{name}' has invalid shape {shape!r}")
            _check_name_dtype_shape(path, name, dtype, shape)
            if (not isinstance(offs, list) or len(offs) != 2
                    or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
                raise SafetensorsError(f"{path}: tensor '{name}' has invalid data_offsets {offs!r}")
            begin, end = offs
            if not 0 <= begin <= end <= data_len:
                raise SafetensorsError(
                    f"{path}: tensor '{name}' data_offsets [{begin}, {end}] fall outside the {data_len}-byte data section")
            if end - begin != nbytes_of(dtype, shape):
                raise SafetensorsError(
                    f"{path}: tensor '{name}' {dtype}{shape} needs {nbytes_of(dtype, shape)} bytes, "
                    f"data_offsets give {end - begin}")
            entries.append((begin, end, name, dtype, tuple(shape)))
        # The spec requires the data section to be covered exactly, without overlaps or holes.
        entries.sort()
        cursor = 0
        for begin, end, name, _, _ in entries:
            if begin != cursor:
                raise SafetensorsError(
                    f"{path}: tensor '{name}' starts at byte {begin} of the data section, expected {cursor} "
                    f"(overlap or gap)")
            cursor = end
        if cursor != data_len:
            raise SafetensorsError(f"{path}: data section is {data_len} bytes but tensors cover {cursor}")
        # Keep the header's (= writer's) order, which is the state_dict order for our files.
        order = {name: i for i, name in enumerate(header)}
        self._entries = {e[2]: e for e in sorted(entries, key=lambda e: order[e[2]])}

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keys(self):
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def _entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor '{name}'") from None

    def dtype(self, name):
        return self._entry(name)[3]

    def shape(self, name):
        return self._entry(name)[4]

    def read_bytes(self, name):
        begin, end, _, _, _ = self._entry(name)
        self._f.seek(self.data_start + begin)
        buf = bytearray(end - begin)
        got = self._f.readinto(buf)
        if got != len(buf):
            raise SafetensorsError(f"{self.path}: tensor '{name}' truncated ({got} of {len(buf)} bytes)")
        return buf

    def to_torch(self, name):
        import torch
        dtype, shape = self.dtype(name), self.shape(name)
        tdtype = _TORCH_DTYPES(torch)[dtype]
        if sys.byteorder != "little":
            raise SafetensorsError("big-endian hosts are not supported by to_torch")
        buf = self.read_bytes(name)
        if len(buf) == 0:
            return torch.empty(shape, dtype=tdtype)
        return torch.frombuffer(buf, dtype=tdtype).reshape(shape)

    def to_numpy(self, name):
        import numpy as np
        dtype, shape = self.dtype(name), self.shape(name)
        if dtype == "BF16":
            raise SafetensorsError(f"{self.path}: tensor '{name}' is BF16, which numpy cannot represent")
        np_dtype = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                    "I8": "i1", "U8": "u1", "BOOL": "?"}[dtype]
        return np.frombuffer(self.read_bytes(name), dtype=np_dtype).reshape(shape)


def _TORCH_DTYPES(torch):
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}


def torch_dtype_name(torch_dtype):
    """safetensors dtype name of a torch dtype (torch.float32 -> "F32")."""
    import torch
    for name, t in _TORCH_DTYPES(torch).items():
        if t == torch_dtype:
            return name
    raise SafetensorsError(f"unsupported torch dtype {torch_dtype}")


def from_torch(tensor):
    """(dtype name, shape, little-endian bytes) of a torch tensor, copied to contiguous CPU memory."""
    import torch
    names = {v: k for k, v in _TORCH_DTYPES(torch).items()}
    if tensor.dtype not in names:
        raise SafetensorsError(f"unsupported torch dtype {tensor.dtype}")
    t = tensor.detach().to("cpu").contiguous()
    if sys.byteorder != "little":
        raise SafetensorsError("big-endian hosts are not supported by from_torch")
    # bytes via a uint8 view keeps bfloat16 (which numpy lacks) working.
    data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return names[tensor.dtype], tuple(t.shape), data


def sha256_of(tensors, metadata=None):
    """(size, sha256) that `write` would produce for the same arguments, without writing."""
    tensors = list(tensors)
    header = build_header([(n, d, s) for n, d, s, _ in tensors], metadata)
    digest = hashlib.sha256(header)
    size = len(header)
    for name, dtype, shape, data in tensors:
        view = memoryview(data() if callable(data) else data).cast("B")
        if view.nbytes != nbytes_of(dtype, shape):
            raise SafetensorsError(f"tensor '{name}' {dtype}{list(shape)} needs {nbytes_of(dtype, shape)} bytes, "
                                   f"got {view.nbytes}")
        digest.update(view)
        size += view.nbytes
    return size, digest.hexdigest()
