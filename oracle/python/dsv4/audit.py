"""Reproducibility audits of an engine (`dsv4 audit --dumps`, oracle/README.md §Audit).

:func:`run_compositions` runs a user's engine callable over the batch compositions of an audit —
each sequence alone, repeated, and at given rows of batches with other sequences as companions —
and writes one dump per run with its manifest (``<dump>.audit.json``); :func:`audit_dumps` runs
``dsv4 audit --dumps`` on them and returns the parsed report.

The engine callable takes a batch of token sequences (a list of equal-length lists of ids) and
returns ``{canonical name: array [batch, ...]}`` — every module output it records, under dsv4's
canonical names (``prefill/layers.3.attn/out``; see :func:`dsv4.outputs`), batch dimension first.
"""

import json
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .cli import Result, _with_json_report
from .dump import write_dump

Engine = Callable[[List[List[int]]], Mapping[str, object]]


def write_manifest(dump: str, run: str, sequences: Sequence[Optional[str]], schedule: str = "incremental") -> str:
    """Write ``<dump>.audit.json``: the run label, the sequence id at each batch row (None: a row
    not audited) and the schedule ("incremental": prefill then decode steps; "prefill": one step)."""
    if schedule not in ("incremental", "prefill"):
        raise ValueError("schedule must be 'incremental' or 'prefill'")
    path = os.fspath(dump) + ".audit.json"
    with open(path, "w") as f:
        json.dump({"run": run, "sequences": list(sequences), "schedule": schedule}, f)
    return path


def run_compositions(engine: Engine, sequences: Mapping[str, Sequence[int]], out_dir, *,
                     repeats: int = 1, batch_sizes: Sequence[int] = (4,), rows: Sequence[int] = (0, 3),
                     companions: Optional[Sequence[Sequence[int]]] = None, schedule: str = "incremental",
                     format: str = ".npz") -> List[str]:
    """Run ``engine`` over the audit's compositions and write the dumps with their manifests.

    For each sequence id: the sequence alone (``1 + repeats`` runs), then at each row of each batch
    size (companions: ``companions`` cycled, else the other sequences cycled). Returns the dump
    paths, ready for :func:`audit_dumps`."""
    os.makedirs(out_dir, exist_ok=True)
    ids = list(sequences)
    pool = [list(c) for c in companions] if companions else [list(sequences[i]) for i in ids]
    paths: List[str] = []

    def dump(batch: List[List[int]], labels: List[Optional[str]], run: str) -> None:
        tensors: Dict[str, object] = dict(engine(batch))
        path = os.path.join(os.fspath(out_dir), f"{run}{format}")
        write_dump(path, tensors)
        write_manifest(path, run, labels, schedule)
        paths.append(path)

    for i, sid in enumerate(ids):
        seq = list(sequences[sid])
        for r in range(1 + repeats):
            dump([seq], [sid], f"{sid}-alone-{r}")
        for b in batch_sizes:
            for row in rows:
                if row >= b:
                    continue
                batch, labels = [], []
                for k in range(b):
                    if k == row:
                        batch.append(seq)
                        labels.append(sid)
                    else:
                        comp = pool[(i + k) % len(pool)]
                        if len(comp) != len(seq):
                            raise ValueError("companions must have the audited sequence's length")
                        batch.append(list(comp))
                        labels.append(None)
                dump(batch, labels, f"{sid}-batch{b}-row{row}")
    return paths


def audit_dumps(dumps: Sequence, *, timeout: Optional[float] = None, binary: Optional[str] = None) -> Result:
    """``dsv4 audit --dumps D1 D2 … --json <tmp>``: returncode 0 every occurrence bit-identical, 1
    bits move (report["comparisons"][i]["kind"] and ["moved"][0]["name"] say where), 2 bad input."""
    return _with_json_report(["audit", "--dumps", *[os.fspath(d) for d in dumps]], timeout, binary)
