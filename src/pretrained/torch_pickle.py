"""Read PyTorch ``.pth`` state dicts into numpy without torch and without running pickled code.

A ``.pth`` is a pickle, and unpickling can call any importable function. This
reader's unpickler resolves only the few globals a saved state dict needs
(tensor rebuild functions, storage types, ``OrderedDict``); any other global is
refused before anything is called. Tensors are rebuilt from the raw storages.

Both of ``torch.save``'s formats are read: the zip archive (``<name>/data.pkl``
plus ``<name>/data/<key>`` storages, torch >= 1.6) and the older "legacy"
stream (magic number, protocol, system info, the pickle, its storage keys,
then each storage as an int64 element count and raw bytes).
"""
import io
import pickle
import zipfile
from typing import Dict

import numpy as np

from src.pretrained import ConversionError

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for ``torch.<X>Storage`` inside the pickle."""

    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage whose bytes may arrive after the pickle (legacy format)."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.array = dtype, numel, None


class _TensorRef:
    """A tensor to materialise once its storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialise(self, source) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise ConversionError(f"{source!r} is damaged: a tensor's storage is missing")
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        if needed > flat.size or self.offset < 0 or any(s < 0 for s in self.stride):
            raise ConversionError(f"{source!r} is damaged: a tensor reaches past its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride))
        return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


class _OrderedDict(dict):
    """``collections.OrderedDict`` without its methods' side doors; keeps BUILD attributes."""

    def __setstate__(self, state):
        pass  # torch stores ``_metadata`` here; it holds no tensors


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _OrderedDict,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, source, storage_loader):
        super().__init__(file)
        self.source = source
        self.storage_loader = storage_loader

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ConversionError(
            f"{self.source!r} holds a pickled {module}.{name}, not only tensors; refusing to "
            f"load it (unpickling it could run code). Save the bare state_dict "
            f"(torch.save(model.state_dict(), path)) and convert that")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ConversionError(f"{self.source!r} holds a persistent object that is not a "
                                  f"tensor storage; refusing to load it")
        return self.storage_loader(pid)


def _unpickle(data: bytes, source: str, storage_loader):
    try:
        return _SafeUnpickler(io.BytesIO(data), source, storage_loader).load()
    except ConversionError:
        raise
    except Exception as exc:  # pylint: disable=broad-except  (malformed pickles raise many types)
        raise ConversionError(f"{source!r} is not a readable PyTorch file "
                              f"({type(exc).__name__}: {exc})") from None


def _read_zip(path: str) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ConversionError(f"{path!r} is a zip file but not a PyTorch checkpoint "
                                  f"(no <name>/data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise ConversionError(f"{path!r} was saved big-endian; not supported")
        storages = {}

        def load_storage(pid):
            _, storage_type, key, _location, numel = pid[:5]
            if key not in storages:
                try:
                    raw = archive.read(f"{prefix}data/{key}")
                except KeyError:
                    raise ConversionError(f"{path!r} is damaged: storage {key!r} is "
                                          f"missing") from None
                storage = _Storage(storage_type.dtype, int(numel))
                count = len(raw) // storage.dtype.itemsize
                storage.array = np.frombuffer(raw[:count * storage.dtype.itemsize],
                                              storage.dtype)
                storages[key] = storage
            return storages[key]

        return _unpickle(archive.read(pickles[0]), path, load_storage)


def _read_legacy(path: str) -> object:
    with open(path, "rb") as f:
        stream = f.read()
    buffer = io.BytesIO(stream)

    def header_load():
        return _SafeUnpickler(buffer, path, lambda pid: None).load()

    try:
        magic = header_load()
    except ConversionError:
        raise
    except Exception:  # pylint: disable=broad-except
        magic = None
    if magic != LEGACY_MAGIC:
        raise ConversionError(f"{path!r} is not a PyTorch .pth file (neither a zip archive nor "
                              f"the legacy format)")
    try:
        header_load()  # protocol version
        header_load()  # system info
    except ConversionError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise ConversionError(f"{path!r} is a damaged PyTorch file ({exc})") from None
    storages = {}

    def load_storage(pid):
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            raise ConversionError(f"{path!r} holds storage views (a very old torch format); "
                                  f"re-save it with a current torch")
        return storages.setdefault(key, _Storage(storage_type.dtype, int(numel)))

    try:
        obj = _SafeUnpickler(buffer, path, load_storage).load()
        keys = _SafeUnpickler(buffer, path, lambda pid: None).load()
    except ConversionError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        raise ConversionError(f"{path!r} is a damaged PyTorch file ({type(exc).__name__}: "
                              f"{exc})") from None
    for key in keys:
        count_bytes = buffer.read(8)
        if len(count_bytes) < 8:
            raise ConversionError(f"{path!r} is truncated (storage data missing)")
        count = int(np.frombuffer(count_bytes, "<i8")[0])
        storage = storages.get(key)
        if storage is None:
            raise ConversionError(f"{path!r} is damaged: unknown storage {key!r}")
        raw = buffer.read(count * storage.dtype.itemsize)
        if len(raw) < count * storage.dtype.itemsize:
            raise ConversionError(f"{path!r} is truncated (storage data missing)")
        storage.array = np.frombuffer(raw, storage.dtype)
    return obj


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """``{name: array}`` of a ``.pth`` state dict; refuses anything but tensors in dicts."""
    try:
        obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except OSError as exc:
        raise ConversionError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except zipfile.BadZipFile as exc:
        raise ConversionError(f"{path!r} is a damaged zip archive ({exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path!r} does not hold a state_dict (a dict of tensors)")
    tensors = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise ConversionError(f"{path!r} holds {name!r} = {type(value).__name__}, not a "
                                  f"tensor; pass a bare state_dict")
        tensors[name] = value.materialise(path)
    return tensors
