#!/usr/bin/env python3
"""Issue 18's GPU benchmark in one run: gpu_kernel_bench (our deterministic CUDA kernels) and its
PyTorch peer gpu_torch_peer.py on the same GPU, one after the other, then a table per case and peer:
  ours µs, torch µs, ours/torch (time ratio: > 1 means ours is slower), speed (torch µs / ours µs: the
  form of issue 18's goals, e.g. ≥ 0.5× torch's float64 matmul), and the achieved GB/s and TFLOP/s of
  both (bytes: the math's bf16 operands read and written once; flops: 2 a multiply-add — the same
  definitions for both, from gpu_kernel_bench).

  python3 tests/bench/gpu_kernel_vs_torch.py --bench build/bin/gpu_kernel_bench [--out DIR]
      [--runs N] [--warmup W] [--configs v4-flash,v4-pro] [--ops a,b] [--max-tokens T]
  python3 tests/bench/gpu_kernel_vs_torch.py --table OURS.jsonl PEER.jsonl   # the table of saved runs

The torch peer runs under this script's interpreter (--python to choose another). Exit status: that
of the first side that fails (2 when it finds no GPU), else 0. BENCHMARKS.md, "GPU kernels against
PyTorch (issue 18)".
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def rate(case, us):
    s = us * 1e-6
    return case["bytes"] / s / 1e9, case["flops"] / s / 1e12


def table(ours, peers):
    key = lambda r: (r["op"], r["config"], r["shape"])  # noqa: E731
    by_case = {}
    for r in peers:
        by_case.setdefault(key(r), []).append(r)
    head = ("op", "config", "shape", "ours µs", "peer", "torch µs", "ours/torch", "speed", "ours GB/s",
            "ours TFLOP/s", "torch GB/s", "torch TFLOP/s", "undecided")
    rows = [head]
    for o in ours:
        og, of = rate(o, o["median_us"])
        for p in by_case.get(key(o), [{"impl": "(none)"}]):
            if "median_us" not in p:
                rows.append((o["op"], o["config"], o["shape"], "%.1f" % o["median_us"], p["impl"], "-", "-", "-",
                             "%.1f" % og, "%.3f" % of, "-", "-", str(o.get("undecided", "-"))))
                continue
            pg, pf = rate(o, p["median_us"])
            rows.append((o["op"], o["config"], o["shape"], "%.1f" % o["median_us"], p["impl"],
                         "%.1f" % p["median_us"], "%.2f" % (o["median_us"] / p["median_us"]),
                         "%.3fx" % (p["median_us"] / o["median_us"]), "%.1f" % og, "%.3f" % of, "%.1f" % pg,
                         "%.3f" % pf, str(o.get("undecided", "-"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        cells = (c.ljust(w) if i < 3 or i == 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    devices = {r.get("device", "?") for r in ours}
    devices |= {"%s (torch %s)" % (r.get("device", "?"), r.get("torch", "?")) for r in peers}
    devices = sorted(devices)
    return "\n".join(lines + ["devices: " + "; ".join(devices)])


def run_to(cmd, path, who):
    """Runs cmd with its standard output in path; a nonzero exit is reported (naming who) and returned."""
    print("gpu_kernel_vs_torch: " + " ".join(cmd), file=sys.stderr, flush=True)
    with open(path, "w") as f:
        rc = subprocess.call(cmd, stdout=f)
    if rc != 0:
        print("gpu_kernel_vs_torch: %s exited %d; no comparison" % (who, rc), file=sys.stderr)
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default=os.path.join("build", "bin", "gpu_kernel_bench"))
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch (CUDA) for the peer")
    ap.add_argument("--out", help="directory for ours.jsonl and torch.jsonl (default: a temporary one)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--configs")
    ap.add_argument("--ops")
    ap.add_argument("--max-tokens")
    ap.add_argument("--table", nargs=2, metavar=("OURS", "PEER"), help="print the table of saved JSON lines")
    args = ap.parse_args()
    if args.table:
        print(table(load(args.table[0]), load(args.table[1])))
        return 0
    out = args.out or tempfile.mkdtemp(prefix="gpu_kernel_vs_torch.")
    os.makedirs(out, exist_ok=True)
    ours_path, peer_path = os.path.join(out, "ours.jsonl"), os.path.join(out, "torch.jsonl")
    cmd = [args.bench, "--runs", str(args.runs), "--warmup", str(args.warmup)]
    for flag in ("configs", "ops", "max_tokens"):
        if getattr(args, flag):
            cmd += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    rc = run_to(cmd, ours_path, "gpu_kernel_bench")
    if rc != 0:
        return rc
    peer = [args.python, os.path.join(HERE, "gpu_torch_peer.py"), "--cases", ours_path, "--runs", str(args.runs),
            "--warmup", str(args.warmup)]
    rc = run_to(peer, peer_path, "the torch peer")
    if rc != 0:
        return rc
    print(table(load(ours_path), load(peer_path)))
    print("JSON lines: %s, %s" % (ours_path, peer_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
