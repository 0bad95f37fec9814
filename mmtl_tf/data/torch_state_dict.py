"""`read_torch_state_dict`: a PyTorch `.pth` / `.pt` state dict → NumPy arrays, no torch.

Pretrained weights published on PyPI are often PyTorch checkpoints. Reading one
needs no PyTorch: a checkpoint is a pickle whose tensors refer to raw storage
buffers, either appended to the same file (the legacy format, torch < 1.6) or
kept as separate members of a zip archive (the current format). This module
unpickles such a file with an allow-list of the few globals a state dict uses
(so a checkpoint cannot run arbitrary code), reads the storages and rebuilds
every tensor from its storage offset, size **and strides**: checkpoints
converted from TensorFlow often hold non-contiguous tensors (e.g. a conv kernel
of shape (O, I, H, W) stored in H, W, I, O order), and reading their buffer as if
it were contiguous silently scrambles the weights.
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np

from mmtl_tf.errors import DataError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name → NumPy dtype.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage referenced by the pickle; `data` is filled in afterwards."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = str(key), dtype, int(numel)
        self.data = None
        self.view = None  # (root storage, element offset) for legacy storage views


class _Tensor:
    """A tensor placeholder: storage + offset + size + stride."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path, load_storage):
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise DataError(
            f"{self._path}: the checkpoint refers to {module}.{name}, which a plain "
            "state dict of tensors does not use; refusing to unpickle it (only "
            "OrderedDict, tensors and the storage types "
            f"{', '.join(sorted(_STORAGE_DTYPES))} are allowed).")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise DataError(f"{self._path}: unexpected persistent id {pid!r} in the checkpoint.")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise DataError(f"{self._path}: storage {key!r} has unsupported type {storage_type!r}.")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
            self._load_storage(self.storages[key])
        storage = self.storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage view: (view key, offset, size)
            view_key, offset, size = view
            child = _Storage(view_key, storage.dtype, size)
            child.view = (storage, int(offset))
            return child
        return storage


def _materialise(name, tensor, path):
    storage = tensor.storage
    offset = tensor.offset
    if storage.view is not None:
        storage, extra = storage.view
        offset += extra
    data = storage.data
    if data is None:
        raise DataError(f"{path}: the data of storage {storage.key!r} ({name}) is missing.")
    if any(s < 0 for s in tensor.stride):
        raise DataError(f"{path}: {name} has negative strides {tensor.stride}.")
    last = offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride) if n > 0)
    if any(n == 0 for n in tensor.size):
        return np.zeros(tensor.size, storage.dtype)
    if offset < 0 or last >= data.size:
        raise DataError(
            f"{path}: {name} (size {tensor.size}, stride {tensor.stride}, offset {offset}) "
            f"reads past the end of its storage of {data.size} elements.")
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=tensor.size, strides=[s * itemsize for s in tensor.stride],
        writeable=False)
    return np.array(view, copy=True, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)


def _to_arrays(obj, path):
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a state dict (a mapping of names to tensors), "
                        f"found {type(obj).__name__}.")
    out = collections.OrderedDict()
    for name, value in obj.items():
        if isinstance(value, _Tensor):
            out[str(name)] = _materialise(name, value, path)
        elif isinstance(value, dict):
            for sub, array in _to_arrays(value, path).items():
                out[f"{name}.{sub}"] = array
        else:
            raise DataError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor.")
    return out


def _read_legacy(f, path):
    for what in ("magic number", "protocol version", "system info"):
        try:
            value = pickle.load(f)
        except Exception as e:
            raise DataError(f"{path}: not a PyTorch checkpoint (cannot read its {what}: "
                            f"{type(e).__name__}).") from e
        if what == "magic number" and value != _LEGACY_MAGIC:
            raise DataError(f"{path}: not a PyTorch checkpoint (wrong magic number).")
        if what == "system info" and isinstance(value, dict) and not value.get("little_endian", True):
            raise DataError(f"{path}: big-endian checkpoints are not supported.")
    unpickler = _Unpickler(f, path, load_storage=lambda storage: None)
    result = unpickler.load()
    keys = pickle.load(f)
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise DataError(f"{path}: storage {key!r} is listed but never used.")
        header = f.read(8)
        if len(header) != 8:
            raise DataError(f"{path}: the file ends before the data of storage {key!r}.")
        numel = int.from_bytes(header, "little", signed=True)
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes)
        if numel != storage.numel or len(raw) != nbytes:
            raise DataError(f"{path}: storage {key!r} should hold {storage.numel} elements; "
                            f"found {numel} ({len(raw)} bytes).")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return result


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise DataError(f"{path}: a zip file without data.pkl is not a PyTorch checkpoint.")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        if byteorder != "little":
            raise DataError(f"{path}: big-endian checkpoints are not supported.")

        def load_storage(storage):
            member = f"{prefix}data/{storage.key}"
            if member not in names:
                raise DataError(f"{path}: storage {storage.key!r} ({member}) is missing.")
            raw = archive.read(member)
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))

        unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), path, load_storage)
        return unpickler.load()


def read_torch_state_dict(path):
    """Reads a PyTorch state dict file into NumPy arrays without importing torch.

    Both on-disk formats are read: the legacy one (a sequence of pickles followed
    by the raw storages) and the zip archive of torch >= 1.6. Only the globals a
    state dict needs are allowed while unpickling; anything else (a pickled
    model class, arbitrary callables) raises `DataError` instead of running.
    Tensors are rebuilt from (storage, offset, size, stride) and returned as
    C-contiguous copies, so non-contiguous tensors come out right.

    Args:
        path: str. A `.pth` / `.pt` file holding a (possibly nested) dict of tensors.

    Returns:
        `collections.OrderedDict` name → `np.ndarray`, in the file's order. Nested
        dicts are flattened with dotted names.

    Raises:
        mmtl_tf.DataError: the file is not a PyTorch checkpoint, is truncated,
            holds something other than tensors, or a tensor reads past its storage.

    Example:
        >>> arrays = mmtl_tf.data.read_torch_state_dict("model.pth")  # doctest: +SKIP
        >>> arrays["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)

    References:
        PyTorch serialization semantics (`torch.save`, legacy and zip formats).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such checkpoint file.")
    if zipfile.is_zipfile(path):
        result = _read_zip(path)
    else:
        with open(path, "rb") as f:
            try:
                result = _read_legacy(f, path)
            except DataError:
                raise
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
                raise DataError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}).") from e
    if isinstance(result, dict) and "state_dict" in result and isinstance(result["state_dict"], dict):
        result = result["state_dict"]
    return _to_arrays(result, path)
