"""Reads a torch ``pytorch_model.bin`` state dict into numpy without running its pickle.

A ``.bin`` is a pickle, and unpickling can call any importable function: a downloaded file
can run code. With torch installed, ``torch.load(weights_only=True)`` is the safe reader.
torch is not a dependency of this package (it is a 2 GB install for one file format), so
without it the zip format is read here by a restricted unpickler that resolves only the few
globals a state dict needs and builds numpy arrays itself; any other global is refused
before anything is called.

torch's zip format (torch >= 1.6): ``<archive>/data.pkl`` is the pickled state dict, in
which each tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
and each storage a persistent id ``('storage', torch.FloatStorage, key, location, numel)``
whose bytes are the member ``<archive>/data/<key>``.
"""

import collections
import importlib.util
import pickle
import re
import zipfile

import ml_dtypes
import numpy as np

# torch storage class -> element type.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """{name: array} from a ``pytorch_model.bin``; floats are returned as float32."""
    if torch_installed():
        return _read_with_torch(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is in torch's legacy (pre-1.6, non-zip) format, which is read "
                         "only with torch installed: re-save it with torch.save, or convert it "
                         "to model.safetensors")
    with zipfile.ZipFile(path) as archive:
        return _read_zip(archive, path)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _read_with_torch(path: str) -> dict[str, np.ndarray]:
    import torch  # optional: present only if the user installed it

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's refusal is a page of text: name the global
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = found.group(1) if found else str(e).strip().splitlines()[0]
        raise ValueError(f"refusing to load {path}: its pickle references {what}, which torch's "
                         "weights-only loader does not allow; only load checkpoints you trust, "
                         "or convert it to model.safetensors") from None
    return {name: (t.float() if t.is_floating_point() else t).numpy()
            for name, t in state.items() if isinstance(t, torch.Tensor)}


class _StorageType:
    """Stands for a ``torch.<X>Storage`` class: only its element type matters."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage's elements: a flat array of ``numel`` values."""

    def __init__(self, data: np.ndarray):
        self.data = data


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """numpy stand-in for ``torch._utils._rebuild_tensor_v2``: a strided view, copied.

    The view's bounds are checked first: ``as_strided`` would otherwise read whatever
    memory a crafted offset or stride points at.
    """
    del requires_grad, backward_hooks, metadata  # autograd state: irrelevant to numpy
    if not isinstance(storage, _Storage):
        raise ValueError("tensor without a storage")
    size, stride = tuple(size), tuple(stride)
    ints = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(i, int) and i >= 0 for i in ints):
        raise ValueError(f"invalid tensor layout: offset {storage_offset}, size {size}, "
                         f"stride {stride}")
    data = storage.data
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size:
            raise ValueError(f"tensor of size {size} reads past its storage of {data.size}")
    view = np.lib.stride_tricks.as_strided(
        data[storage_offset:], shape=size,
        strides=tuple(s * data.itemsize for s in stride))  # elements -> bytes
    return np.array(view)  # own, contiguous memory


# The only globals a state dict needs; everything else is refused.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._byteorder, self._path = (
            archive, prefix, byteorder, path)

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise ValueError(f"refusing to load {self._path}: its pickle references "
                             f"{module}.{name}, which is not part of a tensor state dict (the "
                             "file may run code); load it with torch, or use model.safetensors")
        return _ALLOWED[module, name]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise ValueError(f"{self._path}: unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        raw = self._archive.read(f"{self._prefix}/data/{key}")
        dtype = storage_type.dtype
        if len(raw) != numel * dtype.itemsize:
            raise ValueError(f"{self._path}: storage {key} has {len(raw)} bytes, expected "
                             f"{numel} x {dtype.itemsize}")
        data = np.frombuffer(raw, dtype)
        # torch records the writer's byte order; frombuffer reads the native (little) one.
        return _Storage(data.byteswap() if self._byteorder == "big" else data)


def _read_zip(archive: zipfile.ZipFile, path: str) -> dict[str, np.ndarray]:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"{path} is a zip file but not a torch checkpoint (no <archive>/data.pkl)")
    prefix = pickles[0].split("/")[0]
    names = set(archive.namelist())
    byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                 if f"{prefix}/byteorder" in names else "little")  # older files: little
    with archive.open(pickles[0]) as f:
        try:
            state = _RestrictedUnpickler(f, archive, prefix, byteorder, path).load()
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: corrupt torch pickle ({error})".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a pickled {type(state).__name__}, not a state dict")
    return {name: value.astype(np.float32) if _is_float(value.dtype) else value
            for name, value in state.items() if isinstance(value, np.ndarray)}


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype == ml_dtypes.bfloat16  # bfloat16's kind is 'V'
