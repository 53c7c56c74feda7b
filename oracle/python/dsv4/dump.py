"""Candidate dumps in the layouts `dsv4 certify --candidate` reads (oracle/README.md §Candidate tensors).

A dump maps canonical names ``<step>/<module>/<output>`` to arrays. Floats are stored in their own
dtype (float64, float32, float16); bfloat16 — which numpy lacks — as raw bit patterns (:class:`BF16`),
written the way each format carries them:

==============  ==========================================================
format          bfloat16
==============  ==========================================================
``.npz``        member ``<name>.bf16.npy`` holding ``uint16`` bits
``.h5``         ``uint16`` dataset with attribute ``dtype = "bfloat16"``
``.safetensors`` dtype ``BF16`` (native)
directory       file ``<name>.bf16.npy`` holding ``uint16`` bits
==============  ==========================================================

Integer outputs (top-k lists, expert ids; -1 = no entry) are int64. The format is chosen by the
path's ending (``.npz``, ``.h5``/``.hdf5``, ``.safetensors``; anything else: a directory) or by
``format=``. Every writer is atomic (a temporary file or directory, then a rename).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from typing import Dict, Mapping, Tuple, Union

import numpy as np

FORMATS = ("npz", "h5", "safetensors", "dir")


class BF16:
    """bfloat16 values held as their raw uint16 bit patterns (numpy has no bfloat16)."""

    __slots__ = ("bits",)

    def __init__(self, bits: np.ndarray):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"BF16 holds uint16 bit patterns, not {bits.dtype}")
        self.bits = bits

    @classmethod
    def from_float(cls, x) -> "BF16":
        """Round float32/float64 values to bfloat16, to nearest even (NaN stays NaN)."""
        f = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        u = f.view(np.uint32).astype(np.uint64)
        rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(f)
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
        return cls(rounded)

    def to_float32(self) -> np.ndarray:
        return (self.bits.astype(np.uint32) << 16).view(np.float32)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.bits.shape

    @property
    def size(self) -> int:
        return self.bits.size

    def reshape(self, *shape) -> "BF16":
        return BF16(self.bits.reshape(*shape))

    def __repr__(self) -> str:
        return f"BF16(shape={self.shape})"


Array = Union[np.ndarray, BF16]


def _check(name: str, a: Array) -> Array:
    if not isinstance(name, str) or not name or name.startswith("/") or "//" in name:
        raise ValueError(f"bad tensor name {name!r}")
    if name.endswith(".bf16"):
        raise ValueError(f"{name!r}: give the name without '.bf16'; bf16 values are passed as BF16(bits)")
    if isinstance(a, BF16):
        return a
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8):
        return a
    if a.dtype.kind in "iu":
        return a.astype(np.int64) if a.dtype != np.uint8 else a
    raise TypeError(f"{name}: dtype {a.dtype} is not a float or integer output")


def _format_of(path: str, fmt) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        return fmt
    p = path.lower()
    if p.endswith(".npz"):
        return "npz"
    if p.endswith((".h5", ".hdf5")):
        return "h5"
    if p.endswith(".safetensors"):
        return "safetensors"
    return "dir"


def write_dump(path, tensors: Mapping[str, Array], format: str = None) -> str:
    """Write {canonical name: array or BF16} as a candidate dump; returns the path written."""
    path = os.fspath(path)
    items = [(n, _check(n, a)) for n, a in tensors.items()]
    fmt = _format_of(path, format)
    parent = os.path.dirname(os.path.abspath(path))
    if fmt == "dir":
        tmp = tempfile.mkdtemp(prefix=".dsv4-dump-", dir=parent)
        try:
            for n, a in items:
                f = os.path.join(tmp, *n.split("/")) + (".bf16.npy" if isinstance(a, BF16) else ".npy")
                os.makedirs(os.path.dirname(f), exist_ok=True)
                np.save(f, a.bits if isinstance(a, BF16) else a)
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path
    fd, tmp = tempfile.mkstemp(prefix=".dsv4-dump-", dir=parent)
    os.close(fd)
    try:
        if fmt == "npz":
            with open(tmp, "wb") as f:  # a file object: np.savez must not append ".npz"
                np.savez(f, **{(n + ".bf16" if isinstance(a, BF16) else n): (a.bits if isinstance(a, BF16) else a)
                               for n, a in items})
        elif fmt == "h5":
            import h5py

            with h5py.File(tmp, "w") as f:
                for n, a in items:
                    ds = f.create_dataset(n, data=a.bits if isinstance(a, BF16) else a)
                    if isinstance(a, BF16):
                        ds.attrs["dtype"] = np.bytes_("bfloat16")
        else:
            _write_safetensors(tmp, items)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_ST_CODE = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64",
            np.dtype("<i4"): "I32", np.dtype("uint8"): "U8", np.dtype("int8"): "I8", np.dtype("<u2"): "U16"}
_ST_DTYPE = {v: k for k, v in _ST_CODE.items()}


def _write_safetensors(path: str, items) -> None:
    header, blobs, offset = {}, [], 0
    for n, a in items:
        data = np.ascontiguousarray(a.bits if isinstance(a, BF16) else a)
        code = "BF16" if isinstance(a, BF16) else _ST_CODE[data.dtype.newbyteorder("<")]
        raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        header[n] = {"dtype": code, "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def safetensors_header(path) -> dict:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, data_offsets)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def read_safetensors(path) -> Dict[str, Array]:
    """A small safetensors reader: F64/F32/F16/I64/I32/I8/U8/U16 as numpy arrays, BF16 as
    :class:`BF16`; other dtypes (F8_E4M3, F8_E8M0, F4, ...) as their raw bytes (uint8, flat) — see
    :func:`safetensors_header` for their dtype and shape."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out: Dict[str, Array] = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[base + b:base + end]
        if e["dtype"] == "BF16":
            out[name] = BF16(np.frombuffer(raw, dtype="<u2").reshape(e["shape"]).copy())
        elif e["dtype"] in _ST_DTYPE:
            out[name] = np.frombuffer(raw, dtype=_ST_DTYPE[e["dtype"]]).reshape(e["shape"]).copy()
        else:
            out[name] = np.frombuffer(raw, dtype=np.uint8).copy()
    return out
