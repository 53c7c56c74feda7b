#!/usr/bin/python3
"""Synthetic dumps for the read throughput of `dsv4 audit --dumps` (BENCHMARKS.md, issue 17).

Writes OUT/r1.h5 and OUT/r2.h5 (and their .audit.json manifests): the same values, so the audit
reads every byte of both and finds them bit-identical; sequences A and B at rows 0 and 1 of a
batch of 2, prefill only. Per layer the main outputs of a block under their canonical names
(hc_attn/y, attn_norm/out, attn/out, hc_attn/out, ffn_norm/out, ffn/out, the block's /out):
[2, seq, dim] and [2, seq, 4 * dim] float32 (or --dtype float64), contiguous, uncompressed.
With --moved, every element of r2 is one ulp above r1's (the audit's slow path: every tensor's
bits move and every element gets its ULP distance).

  /usr/bin/python3 tests/bench/make_audit_dumps.py OUT --layers 16 --seq 512 --dim 1024 [--moved]
"""
import argparse
import json
import os

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--moved", action="store_true", help="every element of r2 one ulp up")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(5)
    outputs = [("hc_attn/y", 1), ("attn_norm/out", 1), ("attn/out", 1), ("hc_attn/out", 4),
               ("ffn_norm/out", 1), ("ffn/out", 1), ("/out", 4)]
    tensors = {}
    for layer in range(a.layers):
        for rel, width in outputs:
            sep = "" if rel.startswith("/") else "."
            name = f"prefill/layers.{layer}{sep}{rel}"
            tensors[name] = rng.standard_normal((2, a.seq, width * a.dim)).astype(a.dtype)
    total = 0
    for run in ("r1", "r2"):
        path = os.path.join(a.out, run + ".h5")
        with h5py.File(path, "w") as f:
            for name, t in tensors.items():
                moved = a.moved and run == "r2"
                f.create_dataset(name, data=np.nextafter(t, np.inf, dtype=t.dtype) if moved else t)
        with open(path + ".audit.json", "w") as m:
            json.dump({"run": run, "sequences": ["A", "B"], "schedule": "prefill"}, m)
        total += os.path.getsize(path)
    print(f"{len(tensors)} tensors per dump, {total / 1e9:.3f} GB in both dumps")


if __name__ == "__main__":
    main()
