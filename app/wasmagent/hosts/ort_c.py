"""onnxruntime's C API through ctypes: the native host's sessions without the Python binding.

Why: the binding (`onnxruntime.InferenceSession`) holds the GIL while it initialises a session
(measured: 50-100 ms of MiniLM's ~75-130 ms in which no other Python thread ran), so a
process that answers one question could not open its knowledge base meanwhile; and importing
the binding costs 27-47 ms. ctypes releases the GIL around every foreign call, so sessions
created here load on a thread truly alongside the process's imports and the knowledge base.

It calls the shared library the onnxruntime wheel ships (`onnxruntime/capi/libonnxruntime.so*`),
the same build and kernels as the binding, so outputs are identical. `OrtApi` is a table of
function pointers that only ever grows (ABI-stable per `ORT_API_VERSION`); the indices below
are those of onnxruntime_c_api.h. `load` checks one late entry (the providers list) before
trusting the table; any failure raises `Unavailable` and the host uses the binding instead.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..ports import DType, Tensor

API_VERSION = 17  # onnxruntime 1.17; the wheel's newer library still serves this table
P = ctypes.c_void_p
PP = ctypes.POINTER(P)
I64P = ctypes.POINTER(ctypes.c_int64)
SIZE = ctypes.c_size_t
# Index in OrtApi: (name, argument types); every entry returns an OrtStatus* (NULL: success).
FUNCTIONS: dict[str, tuple[int, tuple[Any, ...]]] = {
    "CreateEnv": (3, (ctypes.c_int, ctypes.c_char_p, PP)),
    "CreateSession": (7, (P, ctypes.c_char_p, P, PP)),
    "Run": (9, (P, P, P, P, SIZE, P, SIZE, P)),
    "CreateSessionOptions": (10, (PP,)),
    "SetOptimizedModelFilePath": (11, (P, ctypes.c_char_p)),
    "SetSessionGraphOptimizationLevel": (23, (P, ctypes.c_int)),
    "SetIntraOpNumThreads": (24, (P, ctypes.c_int)),
    "SessionGetInputCount": (30, (P, ctypes.POINTER(SIZE))),
    "SessionGetOutputCount": (31, (P, ctypes.POINTER(SIZE))),
    "SessionGetInputName": (36, (P, SIZE, P, ctypes.POINTER(ctypes.c_char_p))),
    "SessionGetOutputName": (37, (P, SIZE, P, ctypes.POINTER(ctypes.c_char_p))),
    "CreateTensorWithDataAsOrtValue": (49, (P, P, SIZE, I64P, SIZE, ctypes.c_int, PP)),
    "GetTensorMutableData": (51, (P, PP)),
    "GetTensorElementType": (60, (P, ctypes.POINTER(ctypes.c_int))),
    "GetDimensionsCount": (61, (P, ctypes.POINTER(SIZE))),
    "GetDimensions": (62, (P, I64P, SIZE)),
    "GetTensorTypeAndShape": (65, (P, PP)),
    "CreateCpuMemoryInfo": (69, (ctypes.c_int, ctypes.c_int, PP)),
    "AllocatorFree": (76, (P, P)),
    "GetAllocatorWithDefaultOptions": (78, (PP,)),
    "GetAvailableProviders": (125, (ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)),
                                    ctypes.POINTER(ctypes.c_int))),
    "ReleaseAvailableProviders": (126, (ctypes.POINTER(ctypes.c_char_p), ctypes.c_int)),
    "AddSessionConfigEntry": (130, (P, ctypes.c_char_p, ctypes.c_char_p)),
}
RELEASES = {"Env": 92, "Status": 93, "MemoryInfo": 94, "Session": 95, "Value": 96,
            "TensorTypeAndShapeInfo": 99, "SessionOptions": 100}
GET_ERROR_MESSAGE = 2
ELEMENT_TYPES: dict[DType, int] = {"float32": 1, "int64": 7}  # ONNXTensorElementDataType
TYPECODES: dict[DType, str] = {"float32": "f", "int64": "q"}
LOG_WARNING = 2
ARENA_ALLOCATOR, MEM_TYPE_DEFAULT = 1, 0


class Unavailable(Exception):
    """The C API cannot be used here (no library, an unexpected table): use the binding."""


class Api:
    """The loaded library and its function table (one per process, see `load`)."""

    def __init__(self, path: Path) -> None:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise Unavailable(f"cannot load {path.name}: {exc}") from None
        base_fn = lib.OrtGetApiBase
        base_fn.restype = ctypes.POINTER(P * 2)
        base = base_fn().contents
        get_api = _function(base[0], P, ctypes.c_uint32)
        self.version: str = _function(base[1], ctypes.c_char_p)().decode()
        table = get_api(API_VERSION)
        if not table:
            raise Unavailable(f"onnxruntime {self.version} does not serve API {API_VERSION}")
        self._table = ctypes.cast(table, ctypes.POINTER(P * 200)).contents
        self._message = _function(self._table[GET_ERROR_MESSAGE], ctypes.c_char_p, P)
        self._release_status = _function(self._table[RELEASES["Status"]], None, P)
        self._fns = {name: _function(self._table[index], P, *args)
                     for name, (index, args) in FUNCTIONS.items()}
        self._check_table()
        self.env = P()
        self.call("CreateEnv", LOG_WARNING, b"wasmagent", ctypes.byref(self.env))
        self.cpu = P()
        self.call("CreateCpuMemoryInfo", ARENA_ALLOCATOR, MEM_TYPE_DEFAULT, ctypes.byref(self.cpu))
        self.allocator = P()
        self.call("GetAllocatorWithDefaultOptions", ctypes.byref(self.allocator))

    def _check_table(self) -> None:
        names = ctypes.POINTER(ctypes.c_char_p)()
        count = ctypes.c_int()
        self.call("GetAvailableProviders", ctypes.byref(names), ctypes.byref(count))
        found = [names[i] for i in range(count.value)]
        self.call("ReleaseAvailableProviders", names, count)
        if b"CPUExecutionProvider" not in found:
            raise Unavailable(f"unexpected C API table (providers: {found!r})")

    def call(self, name: str, *args: Any) -> None:
        status = self._fns[name](*args)
        if status:
            message = (self._message(status) or b"").decode("utf-8", "replace")
            self._release_status(status)
            raise RuntimeError(f"onnxruntime {name}: {message}")

    def release(self, kind: str, handle: P | int | None) -> None:
        if handle:
            _function(self._table[RELEASES[kind]], None, P)(handle)


def _function(address: int | None, restype: Any, *argtypes: Any) -> Any:
    if not address:
        raise Unavailable("a NULL entry in the C API table")
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


_loaded: dict[str, Api] = {}  # the process's one Api, under "api"
_load_lock = threading.Lock()


def library_path() -> Path | None:
    """The wheel's libonnxruntime, found without importing the onnxruntime package. Linux
    only: elsewhere paths are wide strings (Windows) or the library is named otherwise, and
    the binding serves."""
    if not sys.platform.startswith("linux"):
        return None
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder, "capi").glob("libonnxruntime.so*"))
        if found:
            return found[-1]
    return None


def load() -> Api:
    """The process's C API (loaded once); raises `Unavailable`."""
    with _load_lock:
        if "api" not in _loaded:
            path = library_path()
            if path is None:
                raise Unavailable("no libonnxruntime in the onnxruntime package")
            _loaded["api"] = Api(path)
        return _loaded["api"]


class Session:
    """One model's session; `run` blocks (call it off the event loop) without the GIL."""

    def __init__(self, api: Api, model: Path, *, threads: int, optimization: int,
                 config: Mapping[str, str], save_to: Path | None = None) -> None:
        self._api = api
        options = P()
        api.call("CreateSessionOptions", ctypes.byref(options))
        try:
            api.call("SetIntraOpNumThreads", options, threads)
            api.call("SetSessionGraphOptimizationLevel", options, optimization)
            for key, value in config.items():
                api.call("AddSessionConfigEntry", options, key.encode(), value.encode())
            if save_to is not None:
                api.call("SetOptimizedModelFilePath", options, str(save_to).encode())
            self._handle = P()
            api.call("CreateSession", api.env, str(model).encode(), options,
                     ctypes.byref(self._handle))
        finally:
            api.release("SessionOptions", options)
        self.inputs = self._names("SessionGetInputCount", "SessionGetInputName")
        self.outputs = self._names("SessionGetOutputCount", "SessionGetOutputName")

    def _names(self, count_fn: str, name_fn: str) -> list[str]:
        count = SIZE()
        self._api.call(count_fn, self._handle, ctypes.byref(count))
        names = []
        for i in range(count.value):
            name = ctypes.c_char_p()
            self._api.call(name_fn, self._handle, i, self._api.allocator, ctypes.byref(name))
            names.append((name.value or b"").decode())
            self._api.call("AllocatorFree", self._api.allocator,
                           ctypes.cast(name, P))
        return names

    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        api, n_in, n_out = self._api, len(feeds), len(self.outputs)
        values = (P * n_in)()
        outputs = (P * n_out)()
        kept = []  # the input buffers and shapes, alive until Run returns
        try:
            for i, tensor in enumerate(feeds.values()):
                data = tensor.data if tensor.data.typecode == TYPECODES[tensor.dtype] \
                    else array(TYPECODES[tensor.dtype], tensor.data)
                shape = (ctypes.c_int64 * len(tensor.shape))(*tensor.shape)
                address, length = data.buffer_info()
                kept.append((data, shape))
                value = P()
                api.call("CreateTensorWithDataAsOrtValue", api.cpu, address,
                         length * data.itemsize, shape, len(tensor.shape),
                         ELEMENT_TYPES[tensor.dtype], ctypes.byref(value))
                values[i] = value
            in_names = (ctypes.c_char_p * n_in)(*(name.encode() for name in feeds))
            out_names = (ctypes.c_char_p * n_out)(*(name.encode() for name in self.outputs))
            api.call("Run", self._handle, None, in_names, values, n_in, out_names, n_out, outputs)
            return {name: self._read(outputs[i]) for i, name in enumerate(self.outputs)}
        finally:
            for value in (*values, *outputs):
                api.release("Value", value)

    def _read(self, value: int | None) -> Tensor:
        api = self._api
        info = P()
        api.call("GetTensorTypeAndShape", value, ctypes.byref(info))
        try:
            kind, ndim = ctypes.c_int(), SIZE()
            api.call("GetTensorElementType", info, ctypes.byref(kind))
            api.call("GetDimensionsCount", info, ctypes.byref(ndim))
            dims = (ctypes.c_int64 * ndim.value)()
            api.call("GetDimensions", info, dims, ndim.value)
        finally:
            api.release("TensorTypeAndShapeInfo", info)
        dtype = next((d for d, k in ELEMENT_TYPES.items() if k == kind.value), None)
        if dtype is None:
            raise RuntimeError(f"unsupported output element type {kind.value}")
        shape = tuple(int(d) for d in dims)
        size = 1
        for dim in shape:
            size *= dim
        out = array(TYPECODES[dtype], bytes(size * array(TYPECODES[dtype]).itemsize))
        if size:
            source = P()
            api.call("GetTensorMutableData", value, ctypes.byref(source))
            ctypes.memmove(out.buffer_info()[0], source, size * out.itemsize)
        return Tensor(dtype, shape, out)

    def close(self) -> None:
        handle, self._handle = self._handle, P()
        self._api.release("Session", handle)
