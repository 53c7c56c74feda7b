"""Reproducibility audits of an engine (`dsv4 audit --dumps`, oracle/README.md §Audit).

:func:`run_compositions` runs a user's engine callable over the batch compositions the audit
compares — each sequence alone (repeated), alone as one prefill of the whole sequence, and at given
rows of batches whose other rows are random sequences — and writes one dump per run with its
manifest (``<dump>.audit.json``); :func:`audit_dumps` runs ``dsv4 audit --dumps`` on them and
returns the parsed report.

**The engine.** ``engine(tokens, prefill_len) -> {canonical name: array}``:

* ``tokens``: int64 array ``[b, L]``, one token sequence per batch row;
* ``prefill_len``: run a prefill of ``tokens[:, :prefill_len]`` (step ``prefill``, start_pos 0),
  then one decode step per remaining token (step ``decode<i>`` at start_pos ``prefill_len + i``);
  ``prefill_len == L`` is the whole sequence in one prefill;
* it returns every module output it records under dsv4's canonical names
  (``prefill/layers.3.attn/out``, ``decode0/layers.3.attn/out``; see :func:`dsv4.outputs`), batch
  first (``[b, s, c]``): numpy arrays or :class:`dsv4.BF16` — what :func:`dsv4.write_dump` takes,
  e.g. a ``dsv4.torch.Recorder``'s ``arrays()``.

The default compositions are the full matrix of ``dsv4 audit --full`` (``FULL``: 3 repeats,
batches of 4, 7 and 64 at rows 0, 3 and 63); ``**QUICK`` gives the quick one (1 repeat, a batch of
4 at rows 0 and 3). Both mirror ``quick_options``/``full_options`` of oracle/audit/src/self_audit.cpp.
"""

import json
import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .cli import Result, _with_json_report, option_args
from .dump import write_dump

Engine = Callable[[np.ndarray, int], Mapping[str, object]]

QUICK = {"repeats": 1, "batch_sizes": (4,), "rows": (0, 3)}
FULL = {"repeats": 3, "batch_sizes": (4, 7, 64), "rows": (0, 3, 63)}

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_manifest(dump: str, run: str, sequences: Sequence[Optional[str]], schedule: str = "incremental") -> str:
    """Write ``<dump>.audit.json``: the run label, the sequence id at each batch row (None: a row
    not audited) and the schedule ("incremental": prefill then decode steps; "prefill": one step)."""
    if schedule not in ("incremental", "prefill"):
        raise ValueError("schedule must be 'incremental' or 'prefill'")
    if not isinstance(run, str):
        raise ValueError("run must be a string")
    if not sequences or not all(s is None or isinstance(s, str) for s in sequences):
        raise ValueError("sequences: one id (a string) or None per batch row, at least one row")
    path = os.fspath(dump) + ".audit.json"
    with open(path, "w") as f:
        json.dump({"run": run, "sequences": list(sequences), "schedule": schedule}, f)
    return path


def run_compositions(engine: Engine, sequences: Mapping[str, Sequence[int]], out_dir, *, decode_steps: int = 2,
                     repeats: int = FULL["repeats"], batch_sizes: Sequence[int] = FULL["batch_sizes"],
                     rows: Sequence[int] = FULL["rows"], vocab_size: Optional[int] = None,
                     companions: Optional[Sequence[Sequence[int]]] = None, seed: int = 0, run: str = "r0",
                     format: str = ".npz") -> List[str]:
    """Run ``engine`` over the audit's compositions and write the dumps with their manifests.

    Per sequence id (its tokens: the prefill, then ``decode_steps`` decode steps):

    * alone, incremental, ``1 + repeats`` times (the first is the audit's yardstick; the others
      show run-to-run nondeterminism);
    * alone, the whole sequence in one prefill (prefill/decode variance; only if ``decode_steps`` > 0);
    * at each row < b of each batch size b, incremental, the other rows companions (batch variance):
      random sequences of the same length, ids uniform in ``[0, vocab_size)`` from
      ``numpy.random.default_rng(seed)``, or ``companions`` cycled when given.

    Dumps are ``<out_dir>/<run>-<id>-<composition><format>`` (``format``: .npz, .h5,
    .safetensors, or "" for a directory of .npy), each with its manifest; companion rows are not
    audited (null). Returns the dump paths in the order written, ready for :func:`audit_dumps`.
    Run it again in another process with another ``run`` label into the same ``out_dir`` to audit
    across processes."""
    if decode_steps < 0 or repeats < 0:
        raise ValueError("decode_steps and repeats must be ≥ 0")
    if any(int(b) < 1 for b in batch_sizes) or any(int(r) < 0 for r in rows):
        raise ValueError("batch sizes must be ≥ 1 and rows ≥ 0")
    if not _SAFE.match(run):
        raise ValueError(f"run label {run!r}: letters, digits, '_', '.', '-' only (it names the files)")
    if companions is None and vocab_size is None and any(int(b) > 1 for b in batch_sizes):
        raise ValueError("random companions need vocab_size (or pass companions)")
    if vocab_size is not None and vocab_size < 1:
        raise ValueError("vocab_size must be ≥ 1")
    pool = [np.asarray(c, dtype=np.int64) for c in companions] if companions else []
    if companions is not None and not pool:
        raise ValueError("companions is empty")
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    paths: List[str] = []

    def dump(batch: np.ndarray, labels: List[Optional[str]], schedule: str, name: str) -> None:
        length = batch.shape[1]
        prefill_len = length - decode_steps if schedule == "incremental" else length
        tensors: Dict[str, object] = dict(engine(batch, prefill_len))
        for n, a in tensors.items():
            shape = getattr(a, "shape", None) or np.shape(a)
            if len(shape) < 1 or shape[0] != batch.shape[0]:
                raise ValueError(f"engine output {n}: shape {tuple(shape)}, expected the batch ({batch.shape[0]}) "
                                 f"first")
        path = os.path.join(os.fspath(out_dir), f"{run}-{name}{format}")
        write_dump(path, tensors)
        write_manifest(path, run, labels, schedule)
        paths.append(path)

    incremental = "incremental" if decode_steps > 0 else "prefill"
    for i, (sid, seq_) in enumerate(sequences.items()):
        if not isinstance(sid, str):
            raise ValueError(f"sequence id {sid!r} is not a string")
        tag = sid if _SAFE.match(sid) else f"s{i}"
        seq = np.asarray(seq_, dtype=np.int64)
        if seq.ndim != 1 or seq.size <= decode_steps:
            raise ValueError(f"sequence {sid!r}: a 1-D token list longer than decode_steps ({decode_steps})")
        for r in range(1 + repeats):
            dump(seq[None, :], [sid], incremental, f"{tag}-alone-{r}")
        if decode_steps > 0:
            dump(seq[None, :], [sid], "prefill", f"{tag}-prefill")
        for b in map(int, batch_sizes):
            for row in map(int, rows):
                if row >= b:
                    continue
                batch = np.empty((b, seq.size), dtype=np.int64)
                for k in range(b):
                    if k == row:
                        batch[k] = seq
                    elif pool:
                        comp = pool[(i + k) % len(pool)]
                        if comp.shape != seq.shape:
                            raise ValueError("companions must have the audited sequence's length")
                        batch[k] = comp
                    else:
                        batch[k] = rng.integers(0, vocab_size, size=seq.size)
                dump(batch, [sid if k == row else None for k in range(b)], incremental, f"{tag}-batch{b}-row{row}")
    return paths


def audit_dumps(dumps: Sequence, *, timeout: Optional[float] = None, binary: Optional[str] = None, **opts) -> Result:
    """``dsv4 audit --dumps D1 D2 … --json <tmp> [options]``: returncode 0 every occurrence
    bit-identical, 1 bits move (report["comparisons"][i]["kind"] and ["moved"][0]["name"] say
    where), 2 bad input. Options as keywords: ``config="v4-flash"`` (the dumps' model: its window
    decides the positions spec 02 §2.11.4 excludes; the CLI's default is tiny), ``svg="a.svg"``."""
    return _with_json_report(["audit", "--dumps", *[os.fspath(d) for d in dumps], *option_args(opts)], timeout,
                             binary)
