#!/usr/bin/env python3
"""Convert PyTorch VGG16 weights to safetensors (float32, torchvision state_dict keys and order).

    convert_weights.py --download vgg16 [--out weights/vgg16.safetensors]
    convert_weights.py --from vgg16-397923af.pth [--out PATH] [--any-arch]
    convert_weights.py --random-init --seed 0 [--out weights/vgg16-random-seed0.safetensors]
    convert_weights.py --random-init --seed 0 --random-biases   # -> weights/vgg16-random-seed0-biases.safetensors

--download and --from use the Python standard library only: the .pth is read by a restricted
unpickler that resolves nothing but what a state_dict needs (OrderedDict, torch's tensor rebuild
functions, storage types), all mapped to local stand-ins, so nothing in the file can run code.
Both of torch's on-disk formats are read:
  * zip (torch >= 1.6): <top>/data.pkl is the object pickle, <top>/data/<key> the raw storages;
  * legacy (torch < 1.6, e.g. torchvision's 2017 files): consecutive pickles — magic number,
    protocol version, sys info, the object pickle, the list of storage keys — followed by each
    storage as an 8-byte little-endian element count and its raw bytes.
Without --out a file goes to weights/ of the repository when the current folder is inside it, else to the
user cache tp7 searches from any folder: $TP7_CACHE/weights when TP7_CACHE is set, else ~/.cache/tp7/weights.
--random-init needs torch + torchvision: torch.manual_seed(seed); torchvision.models.vgg16(). On a CPU
with AVX2 and FMA it sets ATEN_CPU_CAPABILITY=avx2 first, so torch's normal_ runs its AVX2 kernel (the one
the engine's Vgg16Weights.RandomInit reproduces bit for bit) even where avx512 or default was asked for;
the file's metadata "cpu_capability" / "normal_kernel" say which kernel ran.
--random-biases then redraws every bias from U(-0.1, 0.1) with a separate seeded generator.
"""

import argparse
import array
import collections
import hashlib
import io
import os
import pickle
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tp7_safetensors as st  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DOWNLOADS = {
    # torchvision.models.VGG16_Weights.IMAGENET1K_V1
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}

# torchvision vgg16 state_dict: key -> shape, in state_dict order.
VGG16_CONV = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
              (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
              (26, 512, 512), (28, 512, 512)]
VGG16_FC = [(0, 512 * 7 * 7, 4096), (3, 4096, 4096), (6, 4096, 1000)]
VGG16_SHAPES = collections.OrderedDict()
for _i, _cin, _cout in VGG16_CONV:
    VGG16_SHAPES[f"features.{_i}.weight"] = (_cout, _cin, 3, 3)
    VGG16_SHAPES[f"features.{_i}.bias"] = (_cout,)
for _i, _fin, _fout in VGG16_FC:
    VGG16_SHAPES[f"classifier.{_i}.weight"] = (_fout, _fin)
    VGG16_SHAPES[f"classifier.{_i}.bias"] = (_fout,)
VGG16_PARAMETERS = sum(st.numel(s) for s in VGG16_SHAPES.values())  # 138,357,544

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> safetensors dtype. torch.cuda.<Name>Storage maps the same way: we only
# read the bytes, the saved device does not matter.
STORAGE_DTYPES = {
    "DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


class ConvertError(Exception):
    """Bad input; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------
# Stand-ins for the few torch objects a state_dict pickle refers to
# ---------------------------------------------------------------------------------------------

class StorageType:
    """Stands in for torch.FloatStorage & co. in persistent ids; only carries the dtype."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype
        self.itemsize = st.DTYPES[dtype][0]

    def __repr__(self):
        return f"torch.{self.name}"


STORAGE_TYPES = {name: StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()}


class Storage:
    """A flat run of `numel` elements of `dtype` whose bytes live in the source file.

    `reader(byte_offset, nbytes)` returns bytes of the root storage; a legacy view storage adds
    its element offset into the root.
    """

    def __init__(self, key, dtype, numel, reader, base_elements=0):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.itemsize = st.DTYPES[dtype][0]
        self._reader = reader
        self.base = base_elements

    def read(self, first_element, count):
        if first_element < 0 or first_element + count > self.numel:
            raise ConvertError(f"storage '{self.key}': elements [{first_element}, {first_element + count}) "
                               f"outside its {self.numel} elements")
        return self._reader((self.base + first_element) * self.itemsize, count * self.itemsize)


class TensorRef:
    """A tensor as the pickle describes it: storage + offset + size + stride (in elements)."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, Storage):
            raise ConvertError(f"tensor rebuilt from {type(storage).__name__}, expected a storage")
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if len(size) != len(stride):
            raise ConvertError(f"tensor size {size} and stride {stride} differ in rank")
        if any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise ConvertError(f"tensor size {size} / stride {stride} has negative entries")
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), size, stride
        self.dtype = storage.dtype

    @property
    def numel(self):
        return st.numel(self.shape)

    def is_contiguous(self):
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def raw_bytes(self):
        """Row-major bytes of the tensor, in the storage's dtype and the file's byte order."""
        n = self.numel
        if n == 0:
            return b""
        if self.is_contiguous():
            return self.storage.read(self.offset, n)
        # Non-contiguous (a transposed or sliced tensor saved as is): read the span the strides
        # reach once, then gather rows; the innermost dimension is copied as a slice.
        item = self.storage.itemsize
        span = 1 + sum((s - 1) * d for s, d in zip(self.shape, self.stride))
        src = memoryview(self.storage.read(self.offset, span))
        out = bytearray(n * item)
        inner_n, inner_d = self.shape[-1], self.stride[-1]
        row_bytes = inner_n * item
        pos = 0
        outer = self.shape[:-1]
        index = [0] * len(outer)
        for _ in range(st.numel(outer)):
            base = sum(i * d for i, d in zip(index, self.stride))
            if inner_d == 1:
                out[pos:pos + row_bytes] = src[base * item:(base + inner_n) * item]
            else:
                for j in range(inner_n):
                    e = (base + j * inner_d) * item
                    out[pos + j * item:pos + (j + 1) * item] = src[e:e + item]
            pos += row_bytes
            for k in range(len(outer) - 1, -1, -1):
                index[k] += 1
                if index[k] < outer[k]:
                    break
                index[k] = 0
        return out


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}
for _name, _type in STORAGE_TYPES.items():
    SAFE_GLOBALS[("torch", _name)] = _type
    SAFE_GLOBALS[("torch.cuda", _name)] = _type


class StateDictUnpickler(pickle.Unpickler):
    """Resolves only SAFE_GLOBALS; every other global (os.system, builtins.eval, ...) is refused
    before it can be called, so loading cannot execute code from the file."""

    def __init__(self, file, source, persistent_load):
        super().__init__(file)
        self._source = source
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise ConvertError(f"{self._source}: refusing to load global '{module}.{name}' "
                               f"(only state_dict tensors are allowed)") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise ConvertError(f"{self._source}: unexpected persistent id {pid!r} in a header pickle")
        return self._persistent(pid)


def _ascii(x):
    return x.decode("ascii") if isinstance(x, bytes) else x


def _storage_id(source, pid, legacy):
    """Validate a ('storage', type, key, location, numel[, view_metadata]) persistent id."""
    if not isinstance(pid, tuple) or not pid:
        raise ConvertError(f"{source}: malformed persistent id {pid!r}")
    kind = _ascii(pid[0])
    if kind == "module":
        raise ConvertError(f"{source}: file holds a pickled nn.Module, not a state_dict; "
                           f"re-save it with torch.save(model.state_dict(), path)")
    if kind != "storage" or len(pid) != (6 if legacy else 5):
        raise ConvertError(f"{source}: malformed persistent id {pid!r}")
    storage_type, key, _location, numel = pid[1], str(_ascii(pid[2])), pid[3], pid[4]
    if not isinstance(storage_type, StorageType):
        raise ConvertError(f"{source}: storage '{key}' has type {storage_type!r}, expected a torch.*Storage")
    if not isinstance(numel, int) or numel < 0:
        raise ConvertError(f"{source}: storage '{key}' has invalid element count {numel!r}")
    return storage_type, key, numel, (pid[5] if legacy else None)


# ---------------------------------------------------------------------------------------------
# The two .pth formats
# ---------------------------------------------------------------------------------------------

def _byteswapped(data, itemsize):
    if itemsize == 1:
        return data
    code = {2: "H", 4: "I", 8: "Q"}[itemsize]
    a = array.array(code)
    a.frombytes(bytes(data))
    a.byteswap()
    return a.tobytes()


class PthFile:
    """Opens a .pth (zip or legacy) and exposes `.objects` (the unpickled top-level object,
    TensorRefs in place of tensors), `.format` and `.little_endian`. Use as a context manager."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "rb")
        self._zip = None
        try:
            if zipfile.is_zipfile(self._f):
                self._load_zip()
            else:
                self._f.seek(0)
                self._load_legacy()
        except ConvertError:
            self.close()
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, struct.error, zipfile.BadZipFile) as e:
            self.close()
            raise ConvertError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None

    def close(self):
        if self._zip is not None:
            self._zip.close()
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- zip (torch >= 1.6) -------------------------------------------------------------------
    def _load_zip(self):
        self.format = "pytorch-zip"
        zf = self._zip = zipfile.ZipFile(self._f)
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise ConvertError(f"{self.path}: zip archive has {len(pkls)} '<folder>/data.pkl' entries, expected 1 "
                               f"(is this a torch.save file?)")
        top = pkls[0][:-len("data.pkl")]
        self.little_endian = True
        if top + "byteorder" in zf.namelist():
            order = zf.read(top + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise ConvertError(f"{self.path}: unknown byteorder record {order!r}")
            self.little_endian = order == "little"
        storages = {}
        names = set(zf.namelist())

        def persistent_load(pid):
            storage_type, key, numel, _ = _storage_id(self.path, pid, legacy=False)
            if key in storages:
                return storages[key]
            member = f"{top}data/{key}"
            if member not in names:
                raise ConvertError(f"{self.path}: storage '{key}' missing from the archive ({member})")
            expected = numel * storage_type.itemsize
            actual = zf.getinfo(member).file_size
            if actual != expected:
                raise ConvertError(f"{self.path}: storage '{key}' is {actual} bytes, "
                                   f"expected {numel} x {storage_type.itemsize} = {expected}")

            def reader(byte_offset, nbytes, member=member):
                # torch stores members uncompressed; read just the span needed.
                with zf.open(member) as m:
                    if m.seekable():
                        m.seek(byte_offset)
                    else:
                        m.read(byte_offset)
                    data = m.read(nbytes)
                if len(data) != nbytes:
                    raise ConvertError(f"{self.path}: storage '{key}' truncated")
                return data

            storages[key] = Storage(key, storage_type.dtype, numel, reader)
            return storages[key]

        with zf.open(pkls[0]) as f:
            self.objects = StateDictUnpickler(io.BytesIO(f.read()), self.path, persistent_load).load()

    # --- legacy (torch < 1.6) ------------------------------------------------------------------
    def _load_legacy(self):
        self.format = "pytorch-legacy"
        f = self._f
        head = f.read(512)
        f.seek(0)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise ConvertError(f"{self.path}: tar-format checkpoint (torch < 0.1.10) is not supported; "
                               f"re-save it with a newer torch")

        def header_pickle(what):
            try:
                return StateDictUnpickler(f, self.path, None).load()
            except ConvertError:
                raise
            except Exception as e:
                raise ConvertError(f"{self.path}: not a PyTorch checkpoint: cannot read the {what} "
                                   f"({type(e).__name__}: {e})") from None

        magic = header_pickle("magic number")
        if magic != LEGACY_MAGIC:
            raise ConvertError(f"{self.path}: not a PyTorch checkpoint (neither a zip archive nor the legacy magic "
                               f"number 0x{LEGACY_MAGIC:x})")
        protocol = header_pickle("protocol version")
        if protocol != LEGACY_PROTOCOL:
            raise ConvertError(f"{self.path}: legacy protocol version {protocol!r}, expected {LEGACY_PROTOCOL}")
        sys_info = header_pickle("system info")
        self.little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True

        roots = {}    # root key -> [dtype, numel, itemsize, byte offset of data in file (set later)]
        views = {}

        def persistent_load(pid):
            storage_type, key, numel, view = _storage_id(self.path, pid, legacy=True)
            if key not in roots:
                roots[key] = [storage_type.dtype, numel, storage_type.itemsize, None]
            root = roots[key]

            def reader(byte_offset, nbytes, root=root, key=key):
                if root[3] is None:
                    raise ConvertError(f"{self.path}: storage '{key}' has no data in the file")
                if byte_offset + nbytes > root[1] * root[2]:
                    raise ConvertError(f"{self.path}: storage '{key}' read past its end")
                f.seek(root[3] + byte_offset)
                data = f.read(nbytes)
                if len(data) != nbytes:
                    raise ConvertError(f"{self.path}: storage '{key}' truncated")
                return data

            if view is None:
                return Storage(key, storage_type.dtype, root[1], reader)
            view_key, offset, view_size = view
            view_key = str(_ascii(view_key))
            if view_key not in views:
                if offset < 0 or offset + view_size > root[1]:
                    raise ConvertError(f"{self.path}: view '{view_key}' [{offset}, +{view_size}) outside storage "
                                       f"'{key}' of {root[1]} elements")
                views[view_key] = Storage(view_key, storage_type.dtype, view_size, reader, base_elements=offset)
            return views[view_key]

        self.objects = StateDictUnpickler(f, self.path, persistent_load).load()
        keys = header_pickle("storage key list")
        if not isinstance(keys, list):
            raise ConvertError(f"{self.path}: storage key list is {type(keys).__name__}, expected list")
        offset = f.tell()
        file_size = os.fstat(f.fileno()).st_size
        for key in keys:
            key = str(_ascii(key))
            if key not in roots:
                raise ConvertError(f"{self.path}: storage '{key}' listed but never referenced")
            f.seek(offset)
            raw = f.read(8)
            if len(raw) != 8:
                raise ConvertError(f"{self.path}: storage '{key}' truncated (no element count)")
            count = struct.unpack("<q" if self.little_endian else ">q", raw)[0]
            dtype, numel, itemsize, _ = roots[key]
            if count != numel:
                raise ConvertError(f"{self.path}: storage '{key}' holds {count} elements, pickle says {numel}")
            roots[key][3] = offset + 8
            offset += 8 + count * itemsize
            if offset > file_size:
                raise ConvertError(f"{self.path}: storage '{key}' truncated ({file_size} bytes in file, "
                                   f"needs {offset})")
        missing = [k for k, r in roots.items() if r[3] is None]
        if missing:
            raise ConvertError(f"{self.path}: storages {missing} referenced but not in the key list")


# ---------------------------------------------------------------------------------------------
# state_dict -> float32 safetensors
# ---------------------------------------------------------------------------------------------

def to_little_endian_output(t, little_endian):
    """(output dtype, bytes): floating tensors become little-endian F32; integer and bool tensors
    (e.g. BatchNorm's num_batches_tracked in other archs) keep their dtype, since a counter is
    not a float."""
    data = t.raw_bytes()
    itemsize = st.DTYPES[t.dtype][0]
    if not little_endian:
        data = _byteswapped(data, itemsize)
    if t.dtype == "F32" or t.dtype not in FLOAT_DTYPES:
        return t.dtype, data
    if t.dtype == "F64":
        src = array.array("d")
        src.frombytes(bytes(data))
        out = array.array("f", src)
    elif t.dtype == "F16":
        n = len(data) // 2
        out = array.array("f", struct.unpack(f"<{n}e", data))
    else:  # BF16 is the top half of a float32: interleave two zero bytes below each value.
        out = bytearray(len(data) * 2)
        out[2::4] = data[0::2]
        out[3::4] = data[1::2]
        return "F32", out
    if sys.byteorder != "little":
        out.byteswap()
    return "F32", out.tobytes()


def extract_state_dict(obj, source):
    """The {key: TensorRef} mapping, unwrapping a {'state_dict': ...} or {'model': ...} checkpoint."""
    if isinstance(obj, dict) and not any(isinstance(v, TensorRef) for v in obj.values()):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise ConvertError(f"{source}: top-level object is {type(obj).__name__}, expected a state_dict (dict)")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise ConvertError(f"{source}: state_dict key {k!r} is not a string")
        if not isinstance(v, TensorRef):
            raise ConvertError(f"{source}: state_dict entry '{k}' is {type(v).__name__}, expected a tensor")
    return obj


def check_vgg16(shapes, source):
    """shapes: {key: shape}. Raise unless it is exactly torchvision's vgg16 state_dict."""
    missing = [k for k in VGG16_SHAPES if k not in shapes]
    extra = [k for k in shapes if k not in VGG16_SHAPES]
    if missing or extra:
        raise ConvertError(f"{source}: not a torchvision vgg16 state_dict: missing {missing or 'none'}, "
                           f"unexpected {extra or 'none'} (use --any-arch for other architectures)")
    for k, expected in VGG16_SHAPES.items():
        if tuple(shapes[k]) != expected:
            raise ConvertError(f"{source}: tensor '{k}' has shape {list(shapes[k])}, expected {list(expected)}")


def convert_pth(src, out, any_arch=False, extra_metadata=None):
    t0 = time.time()
    with PthFile(src) as pth:
        sd = extract_state_dict(pth.objects, src)
        if not any_arch:
            check_vgg16({k: t.shape for k, t in sd.items()}, src)
        tensors = []
        for key, t in sd.items():
            out_dtype = "F32" if t.dtype in FLOAT_DTYPES else t.dtype
            tensors.append((key, out_dtype, t.shape,
                            lambda t=t: to_little_endian_output(t, pth.little_endian)[1]))
        metadata = {
            "format": "pt",
            "source": os.path.basename(src),
            "source_sha256": st.sha256_file(src),
            "source_format": pth.format,
            "converter": "tools/convert_weights.py (Python standard library)",
        }
        if not any_arch:
            metadata["arch"] = "vgg16"
        metadata.update(extra_metadata or {})
        size, sha = st.write(out, tensors, metadata)
    report(out, [(k, s) for k, _, s, _ in tensors], size, sha, time.time() - t0)


BIAS_RANGE = 0.1


def cpu_has_avx2_fma():
    """Linux's /proc/cpuinfo flags; False where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx2", "fma"} <= flags
    except OSError:
        pass
    return False


def force_avx2_kernels():
    """Ask torch for its AVX2 kernels when the CPU has them. torch reads ATEN_CPU_CAPABILITY once, at the
    first kernel it runs, so this is too late in a process that already ran one; torch_cpu_kernels()
    reports what was used."""
    if cpu_has_avx2_fma():
        os.environ["ATEN_CPU_CAPABILITY"] = "avx2"


def torch_cpu_kernels(torch):
    """(torch's CPU capability, the normal_ kernel it implies). torch 1.13 runs normal_ from its AVX2
    build on AVX512 too (DistributionKernels.cpp: REGISTER_NO_AVX512_DISPATCH(normal_stub))."""
    m = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    capability = m.group(1) if m else "unknown"
    if capability in ("AVX2", "AVX512"):
        return capability, "normal_fill_16_AVX2 (avx_mathfun.h log256_ps/sincos256_ps, FMA)"
    return capability, "normal_fill_16 (libm logf/cosf/sinf; not what Vgg16Weights.RandomInit reproduces)"


def random_init_model(seed, random_biases=False):
    """torchvision's randomly initialised vgg16 after torch.manual_seed(seed); with random_biases,
    every bias (torchvision sets them to 0) is then redrawn by randomise_biases(model, seed)."""
    force_avx2_kernels()
    try:
        import torch
        import torchvision
    except ImportError as e:
        raise ConvertError(f"--random-init needs torch and torchvision ({e})") from None
    torch.manual_seed(seed)
    model = torchvision.models.vgg16()  # weights=None: torchvision's own random initialisation
    if random_biases:
        randomise_biases(model, seed)
    return model


def randomise_biases(model, seed):
    """Every bias <- U(-0.1, 0.1), drawn in state_dict order from torch.Generator().manual_seed(seed).

    A zero bias hides a dropped or misrouted bias from every comparison. The generator is separate
    from the global one that torchvision's init consumed, so the weights stay bit-identical to
    those of plain --random-init with the same seed."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32) * (2 * BIAS_RANGE) - BIAS_RANGE)
    return model


def random_init_contents(model, seed, random_biases=False):
    """(tensors, metadata) exactly as --random-init [--random-biases] writes them; make_reference.py
    hashes the same list to record which weights file its reference matches. Plain --random-init
    metadata has no bias entries, so files written before --random-biases existed keep their hash."""
    import torch
    import torchvision
    sd = model.state_dict()
    check_vgg16({k: tuple(v.shape) for k, v in sd.items()}, "torchvision.models.vgg16()")
    tensors = [(key, "F32", tuple(v.shape), lambda v=v: st.from_torch(v.float())[2]) for key, v in sd.items()]
    metadata = {
        "format": "pt",
        "source": f"torchvision.models.vgg16() random init, torch.manual_seed({seed})",
        "seed": str(seed),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "converter": "tools/convert_weights.py --random-init",
        "arch": "vgg16",
    }
    metadata["cpu_capability"], metadata["normal_kernel"] = torch_cpu_kernels(torch)
    if random_biases:
        metadata["source"] += f"; biases U(-{BIAS_RANGE}, {BIAS_RANGE})"
        metadata["converter"] += " --random-biases"
        metadata["random_biases"] = (f"U(-{BIAS_RANGE}, {BIAS_RANGE}) from torch.Generator().manual_seed({seed}), "
                                     f"torch.rand per bias in state_dict order, after torchvision's init")
    return tensors, metadata


def random_init_path(weights_dir, seed, random_biases=False):
    return os.path.join(weights_dir, f"vgg16-random-seed{seed}{'-biases' if random_biases else ''}.safetensors")


def convert_random_init(seed, out, random_biases=False):
    t0 = time.time()
    tensors, metadata = random_init_contents(random_init_model(seed, random_biases), seed, random_biases)
    if not metadata["normal_kernel"].startswith("normal_fill_16_AVX2"):
        print(f"warning: torch ran its {metadata['cpu_capability']} kernels, not AVX2: these weights differ in the "
              f"last bits from the engine's in-memory random init (Vgg16Weights.RandomInit)", file=sys.stderr)
    size, sha = st.write(out, tensors, metadata)
    report(out, [(k, s) for k, _, s, _ in tensors], size, sha, time.time() - t0)


def report(out, shapes, size, sha, seconds):
    params = sum(st.numel(s) for _, s in shapes)
    shown = os.path.relpath(out)
    shown = out if shown.startswith("..") else shown
    print(f"{shown}: {len(shapes)} tensors, {params:,} parameters, {size:,} bytes, sha256 {sha} ({seconds:.1f} s)")


# ---------------------------------------------------------------------------------------------
# Download (torchvision's URL and hash-prefix check)
# ---------------------------------------------------------------------------------------------

HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")


def download(url, dest_dir):
    """Download url into dest_dir/<file name>, resuming a partial '.part' file, and check that the
    SHA-256 starts with the hash prefix in the file name (torchvision's check_hash rule)."""
    name = os.path.basename(url)
    final = os.path.join(dest_dir, name)
    m = HASH_PREFIX.search(name)
    prefix = m.group(1) if m else ""
    os.makedirs(dest_dir, exist_ok=True)
    if os.path.exists(final):
        if st.sha256_file(final).startswith(prefix):
            print(f"{final}: already downloaded, hash prefix {prefix} ok", file=sys.stderr)
            return final
        raise ConvertError(f"{final}: exists but its SHA-256 does not start with {prefix}; delete it and retry")
    part = final + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "tp7-convert-weights"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already complete
            response = None
        else:
            raise ConvertError(f"{url}: download failed (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        raise ConvertError(f"{url}: download failed ({e}); with no internet, copy the file here and use "
                           f"--from {final}") from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0  # server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            done, last, t0 = have, 0.0, time.time()
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    now = time.time()
                    if now - last > 0.5:
                        last = now
                        rate = (done - have) / max(now - t0, 1e-6) / 2**20
                        pct = f"{100.0 * done / total:5.1f}% " if total else ""
                        print(f"\r{name}: {pct}{done / 2**20:.1f} MiB ({rate:.1f} MiB/s)", end="",
                              file=sys.stderr, flush=True)
                f.flush()
                os.fsync(f.fileno())
            print(file=sys.stderr)
            if total is not None and done != total:
                raise ConvertError(f"{url}: connection closed after {done} of {total} bytes; run again to resume")
    digest = st.sha256_file(part)
    if not digest.startswith(prefix):
        os.remove(part)
        raise ConvertError(f"{url}: SHA-256 {digest} does not start with {prefix}; partial file removed, run again")
    os.replace(part, final)
    print(f"{final}: downloaded, sha256 {digest}", file=sys.stderr)
    return final


def default_weights_dir(cwd=None):
    """Where a file goes without --out: weights/ of the repository when the current folder is inside the checkout that
    holds this script; elsewhere the user cache that tp7 searches from any folder ($TP7_CACHE/weights when TP7_CACHE is
    set, else ~/.cache/tp7/weights), the same rule as Engine/Model/WeightsLocator.cs."""
    here = os.path.realpath(cwd or os.getcwd())
    repo = os.path.realpath(REPO_ROOT)
    if os.path.isfile(os.path.join(repo, "Tp7.Native.sln")) and (here == repo or here.startswith(repo + os.sep)):
        return os.path.join(repo, "weights")
    cache = os.environ.get("TP7_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tp7")
    return os.path.join(cache, "weights")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--download", choices=sorted(DOWNLOADS), help="fetch torchvision's ImageNet weights")
    mode.add_argument("--from", dest="src", metavar="FILE.pth", help="convert a .pth already on disk")
    mode.add_argument("--random-init", action="store_true", help="torchvision's random init (needs torch)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--random-biases", action="store_true",
                        help=f"with --random-init: biases U(-{BIAS_RANGE}, {BIAS_RANGE}) instead of torchvision's zeros "
                             "(weights unchanged)")
    parser.add_argument("--out", help="output .safetensors path (default: weights/ of the repository when run inside it, "
                                      "else $TP7_CACHE/weights or ~/.cache/tp7/weights)")
    parser.add_argument("--any-arch", action="store_true", help="accept state_dicts other than vgg16")
    args = parser.parse_args(argv)
    if args.random_biases and not args.random_init:
        parser.error("--random-biases applies to --random-init only")
    weights_dir = default_weights_dir()
    try:
        if args.download:
            pth = download(DOWNLOADS[args.download], weights_dir)
            out = args.out or os.path.join(weights_dir, f"{args.download}.safetensors")
            convert_pth(pth, out, args.any_arch, {"source_url": DOWNLOADS[args.download]})
        elif args.src:
            # A vgg16 file becomes weights/vgg16.safetensors whatever the .pth was called, so the
            # engine's default path works after --from as after --download.
            stem = os.path.splitext(os.path.basename(args.src))[0] if args.any_arch else "vgg16"
            out = args.out or os.path.join(weights_dir, stem + ".safetensors")
            if not os.path.isfile(args.src):
                raise ConvertError(f"{args.src}: no such file")
            convert_pth(args.src, out, args.any_arch)
        else:
            if args.any_arch:
                raise ConvertError("--any-arch applies to --from/--download only")
            out = args.out or random_init_path(weights_dir, args.seed, args.random_biases)
            convert_random_init(args.seed, out, args.random_biases)
    except (ConvertError, st.SafetensorsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
