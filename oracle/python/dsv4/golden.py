"""Read a dsv4 golden (format v1, goldens/README.md) with h5py alone.

A golden is an HDF5 file: root attributes ``dsv4_format = "dsv4-golden"``, ``dsv4_format_version = 1``,
``manifest_sha256``; a JSON ``/manifest``; ``/inputs/{tokens,start_pos,length,mtp}``; and for every
canonical output name ``<step>/<module>/<output>`` the datasets ``exact/<name>`` (float64 truth, or
int64 ids) and ``official/<name>`` (the official-mode values).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import h5py
import numpy as np

FORMAT = "dsv4-golden"
FORMAT_VERSION = 1
_MODES = ("exact", "official")


@dataclass(frozen=True)
class Entry:
    """One canonical output of a golden, as its manifest lists it."""

    name: str  # canonical name <step>/<module>/<output>
    shape: Tuple[int, ...]
    dtype: str  # storage dtype of the golden: "float64" or "int64"
    role: str  # "value", "discrete" or "decision" (goldens/README.md §Roles)
    official_grid: Optional[str]  # "bf16", "fp32" or "float64" for float tensors (tolerance metadata)

    @property
    def step(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def module(self) -> str:
        return self.name.split("/")[1]

    @property
    def output(self) -> str:
        return self.name.rsplit("/", 1)[1]


def _text(v) -> str:
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


class Golden:
    """A golden file, opened read-only.

    >>> g = Golden("goldens/tiny-s1-p6-d2.h5")
    >>> g.names[:2], g.shape("prefill/layers.2.attn/out"), g.exact("prefill/layers.2.attn/out").dtype
    """

    def __init__(self, path):
        self.path = str(path)
        self._f = h5py.File(self.path, "r")
        try:
            attrs = self._f.attrs
            fmt = _text(attrs.get("dsv4_format", b""))
            if fmt != FORMAT:
                raise ValueError(f"{self.path}: not a dsv4 golden (dsv4_format is {fmt!r})")
            version = int(attrs.get("dsv4_format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(f"{self.path}: golden format version {version}, this package reads {FORMAT_VERSION}")
            text = _text(self._f["manifest"][()])
            want = _text(attrs["manifest_sha256"])
            got = hashlib.sha256(text.encode()).hexdigest()
            if got != want:
                raise ValueError(f"{self.path}: the manifest's SHA-256 {got} is not the root attribute's {want}")
            self.manifest: dict = json.loads(text)
        except Exception:
            self._f.close()
            raise
        tol = self.manifest.get("tolerance", {}).get("tensors", {})
        self._entries: Dict[str, Entry] = {}
        self._datasets: Dict[str, dict] = {}
        for d in self.manifest["datasets"]:
            self._datasets[d["path"]] = d
            mode, _, name = d["path"].partition("/")
            if mode != "exact":
                continue
            grid = tol.get(name, {}).get("official_grid")
            self._entries[name] = Entry(name, tuple(d["shape"]), d["dtype"], d["role"], grid)

    # ---- the file ----
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Golden":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Golden({self.path!r}: config {self.config.get('dsv4_name')}, {len(self._entries)} outputs)"

    # ---- what the run was ----
    @property
    def config(self) -> dict:
        """The model config in the official inference ModelArgs keys (plus dsv4_name)."""
        return self.manifest["config"]

    @property
    def weights(self) -> dict:
        """How the weights were made: synthetic (seed) or a checkpoint file, and their content SHA-256."""
        return self.manifest["weights"]

    @property
    def steps(self) -> List[dict]:
        """[{"step": "prefill", "start_pos": 0, "length": 6, "mtp": True}, ...]"""
        return self.manifest["inputs"]["steps"]

    @property
    def step_names(self) -> List[str]:
        return [s["step"] for s in self.steps]

    @property
    def tokens(self) -> np.ndarray:
        """Token ids [b, L] (int64): the prefill is the first steps[0]["length"], then one per decode step."""
        return self._f["inputs/tokens"][()]

    def input(self, name: str) -> np.ndarray:
        """One of /inputs/{tokens,start_pos,length,mtp}."""
        return self._f["inputs/" + name][()]

    # ---- the outputs ----
    @property
    def names(self) -> List[str]:
        """Every canonical output name the golden holds (the manifest's order)."""
        return list(self._entries)

    @property
    def entries(self) -> Dict[str, Entry]:
        return dict(self._entries)

    @property
    def modules(self) -> List[str]:
        """The module paths of the outputs (`layers.3.attn`, `head`, ...), sorted."""
        return sorted({e.module for e in self._entries.values()})

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.path}: no output named {name!r}") from None

    def shape(self, name: str) -> Tuple[int, ...]:
        return self.entry(name).shape

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.entry(name).dtype)

    def role(self, name: str) -> str:
        return self.entry(name).role

    def tolerance(self, name: str) -> dict:
        """The tolerance metadata of a float output: official_grid, official_max_abs, official_rms, ..."""
        self.entry(name)
        return dict(self.manifest.get("tolerance", {}).get("tensors", {}).get(name, {}))

    def _read(self, mode: str, name: str) -> np.ndarray:
        self.entry(name)
        return self._f[mode + "/" + name][()]

    def exact(self, name: str) -> np.ndarray:
        """The exact-mode values (float64, or int64 ids with -1 for no entry), shape [b, rows, cols]."""
        return self._read("exact", name)

    def official(self, name: str) -> np.ndarray:
        """The official-mode values (bf16/fp32 numbers held exactly in float64, or int64 ids)."""
        return self._read("official", name)

    def arrays(self, mode: str = "exact", names: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
        """{name: array} of one mode for the given names (default: all)."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, not {mode!r}")
        return {n: self._read(mode, n) for n in (self.names if names is None else names)}

    def verify_hashes(self, paths: Optional[Iterable[str]] = None) -> List[str]:
        """The dataset paths (exact/..., official/..., inputs/...) whose SHA-256 disagrees with the
        manifest (goldens/README.md: elements as little-endian bytes, row-major). [] when intact."""
        bad = []
        for p in self._datasets if paths is None else paths:
            d = self._datasets[p]
            a = np.ascontiguousarray(self._f[p][()]).astype("<f8" if d["dtype"] == "float64" else "<i8")
            if hashlib.sha256(a.tobytes()).hexdigest() != d["sha256"]:
                bad.append(p)
        return bad
