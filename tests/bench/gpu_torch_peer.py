#!/usr/bin/env python3
"""PyTorch peer of gpu_kernel_bench (issue 18's performance item; BENCHMARKS.md, "GPU kernels against
PyTorch (issue 18)").

Reads the cases that `gpu_kernel_bench --list` (or a timed run of it) prints, one JSON line each, so
that the shapes have one source of truth (the built-in configs in ref/config), and times the same
mathematical function with torch on the same GPU: torch.cuda.Event around each call, `warmup` calls,
then the median of `runs`. Prints one JSON line per (case, torch variant), with the case's op,
config, shape, bytes and flops copied so that gpu_kernel_vs_torch.py can join them.

The peers compute the same functions as our kernels, not the same bits: ours are the deterministic,
correctly rounded reference (spec 01 C1 sums rounded once, fixed-order fp32 where the official code
has it); torch's are cuBLAS / its own kernels, with their own summation order. Where the arithmetic
differs beyond summation order the variant says so:
  linear_bf16       torch_bf16: bf16 x @ bf16 Wᵀ → bf16 (cuBLAS, fp32 accumulation);
                    torch_fp32: the same values in fp32, TF32 off; torch_fp64: in float64 (issue 18's
                    goal compares GEMM-shaped work with torch's float64 matmul).
  linear_fp8/_fp4   torch_fp32, torch_fp64: the matmul of the same M×K×N in fp32 (TF32 off) and float64
                    (torch has no fp8 / fp4 block-scaled GEMM of the official semantics to compare).
  rmsnorm           torch_explicit: the official model.py formula in fp32 (x·rsqrt(mean(x²)+eps)·w →
                    bf16); torch_F.rms_norm: torch.nn.functional.rms_norm in fp32 (torch ≥ 2.4).
  sparse_attention  gather the listed kv rows, logits, softmax with the sink in the denominator only
                    (spec 02 §2.9 eq. 27; sink excluded from the max), bf16(p)·v, → bf16.
                    torch_fp32: logits and p·v as fp32 bmm (TF32 off), one softmax over the whole list
                    (the official kernel's is online over chunks of 64: same function, other rounding);
                    torch_bf16: logits as a bf16 bmm (rounded to bf16, a cheaper and less exact peer).
  moe_combine       torch_bf16: the official MoE loop — per expert in ascending id, its tokens' bf16
                    w1/w3 linears, clamp, silu·u·weight, bf16, w2 linear → bf16, added in fp32
                    (index_add_); the shared expert; → bf16.
Inputs are random with the same distributions as gpu_kernel_bench's (not the same values: timing
only).

  python3 tests/bench/gpu_torch_peer.py --cases cases.jsonl [--runs N] [--warmup W]
  python3 tests/bench/gpu_torch_peer.py --self-test     # CPU: the peers against naive loops, tiny shapes
Without CUDA (outside --self-test) it says so and exits 2.
"""

import argparse
import json
import math
import sys


def _torch():
    import torch  # imported late: --help and py_compile need no torch

    return torch


def bf16_normal(torch, shape, sigma, gen, device):
    return (torch.randn(shape, generator=gen, device=device) * sigma).to(torch.bfloat16)


# --- the peers: each returns a callable with no arguments, its inputs built on `device` ---


def linear_peer(torch, p, variant, gen, device):
    m, k, n = p["M"], p["K"], p["N"]
    x = bf16_normal(torch, (m, k), 1.0, gen, device)
    w = bf16_normal(torch, (n, k), 1.0 / math.sqrt(k), gen, device)
    if variant == "torch_fp32":
        x, w = x.float(), w.float()
    elif variant == "torch_fp64":
        x, w = x.double(), w.double()
    return lambda: torch.matmul(x, w.t())


def rmsnorm_explicit(torch, x, w, eps):
    xf = x.float()
    return (w.float() * (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps))).to(torch.bfloat16)


def rmsnorm_peer(torch, p, eps, variant, gen, device):
    x = bf16_normal(torch, (p["rows"], p["dim"]), 1.0, gen, device)
    w = bf16_normal(torch, (p["dim"],), 1.0, gen, device)
    if variant == "torch_F.rms_norm":
        wf = w.float()
        return lambda: torch.nn.functional.rms_norm(x.float(), (p["dim"],), wf, eps).to(torch.bfloat16)
    return lambda: rmsnorm_explicit(torch, x, w, eps)


def sparse_attention_torch(torch, q, kv, lists, sink, tau, variant):
    """q [t, h, c] bf16, kv [n, c] bf16, lists [t, w] int64 (all valid), sink [h] fp32 → o [t, h, c] bf16."""
    kvg = kv[lists]  # [t, w, c]
    if variant == "torch_bf16":
        s = torch.bmm(q, kvg.transpose(1, 2)).float() * tau  # [t, h, w]
    else:
        kvg = kvg.float()
        s = torch.bmm(q.float(), kvg.transpose(1, 2)) * tau
    mx = s.amax(-1, keepdim=True)  # the sink takes no part in the max (spec 02 §2.9)
    e = torch.exp(s - mx)
    den = e.sum(-1, keepdim=True) + torch.exp(sink.view(1, -1, 1) - mx)
    pb = e.to(torch.bfloat16)
    num = torch.bmm(pb, kvg).float() if variant == "torch_bf16" else torch.bmm(pb.float(), kvg)
    return (num / den).to(torch.bfloat16)


def random_lists(torch, t, n_kv, width, gen, device):
    # `width` distinct kv rows a token, uniformly (a top-k selection's shape).
    return torch.rand((t, n_kv), generator=gen, device=device).argsort(dim=-1)[:, :width].contiguous()


def sparse_attention_peer(torch, p, tau, variant, gen, device):
    t, h, c, w, n_kv = p["tokens"], p["heads"], p["c"], p["width"], p["n_kv"]
    q = bf16_normal(torch, (t, h, c), 1.0, gen, device)
    kv = bf16_normal(torch, (n_kv, c), 1.0, gen, device)
    sink = torch.randn((h,), generator=gen, device=device)
    lists = random_lists(torch, t, n_kv, w, gen, device)
    return lambda: sparse_attention_torch(torch, q, kv, lists, sink, tau, variant)


def expert_torch(torch, x, w1, w3, w2, limit, weight):
    """spec 03 §3.2: bf16 x [t, d] → bf16 [t, d]; weight [t, 1] fp32 or None (shared expert)."""
    g = torch.matmul(x, w1.t()).float()
    u = torch.matmul(x, w3.t()).float()
    if limit > 0:
        u = torch.clamp(u, -limit, limit)
        g = torch.clamp(g, max=limit)
    h = torch.nn.functional.silu(g) * u
    if weight is not None:
        h = h * weight
    return torch.matmul(h.to(torch.bfloat16), w2.t())


def moe_combine_torch(torch, x, weights, indices, w1, w3, w2, s1, s3, s2, limit):
    """x [t, d] bf16, weights [t, k] fp32, indices [t, k] int64, w* [E, ...] bf16 → y [t, d] bf16."""
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in torch.unique(indices).tolist():  # ascending expert id (spec 03 §3.3)
        tok, slot = torch.where(indices == e)
        ye = expert_torch(torch, x[tok], w1[e], w3[e], w2[e], limit, weights[tok, slot].unsqueeze(-1))
        y.index_add_(0, tok, ye.float())
    y += expert_torch(torch, x, s1, s3, s2, limit, None).float()
    return y.to(torch.bfloat16)


def random_routing(torch, t, e, k, gen, device):
    idx = torch.rand((t, e), generator=gen, device=device).argsort(dim=-1)[:, :k].contiguous()
    wts = 0.1 + 0.9 * torch.rand((t, k), generator=gen, device=device)
    return idx, wts


def moe_combine_peer(torch, p, limit, gen, device):
    t, d, i, e, k = p["tokens"], p["dim"], p["inter"], p["experts"], p["k"]
    sd, si = 1.0 / math.sqrt(d), 1.0 / math.sqrt(i)
    w1 = bf16_normal(torch, (e, i, d), sd, gen, device)
    w3 = bf16_normal(torch, (e, i, d), sd, gen, device)
    w2 = bf16_normal(torch, (e, d, i), si, gen, device)
    s1 = bf16_normal(torch, (i, d), sd, gen, device)
    s3 = bf16_normal(torch, (i, d), sd, gen, device)
    s2 = bf16_normal(torch, (d, i), si, gen, device)
    x = bf16_normal(torch, (t, d), 1.0, gen, device)
    idx, wts = random_routing(torch, t, e, k, gen, device)
    return lambda: moe_combine_torch(torch, x, wts, idx, w1, w3, w2, s1, s3, s2, limit)


def variants(torch, op):
    if op == "linear_bf16":
        return ["torch_bf16", "torch_fp32", "torch_fp64"]
    if op in ("linear_fp8", "linear_fp4"):
        return ["torch_fp32", "torch_fp64"]
    if op == "rmsnorm":
        return ["torch_explicit"] + (["torch_F.rms_norm"] if hasattr(torch.nn.functional, "rms_norm") else [])
    if op == "sparse_attention":
        return ["torch_fp32", "torch_bf16"]
    if op == "moe_combine":
        return ["torch_bf16"]
    raise ValueError("unknown op %r" % op)


def make_call(torch, case, variant, gen, device):
    op, p = case["op"], case["params"]
    if op in ("linear_bf16", "linear_fp8", "linear_fp4"):
        return linear_peer(torch, p, variant, gen, device)
    if op == "rmsnorm":
        return rmsnorm_peer(torch, p, case["eps"], variant, gen, device)
    if op == "sparse_attention":
        return sparse_attention_peer(torch, p, case["scale"], variant, gen, device)
    if op == "moe_combine":
        return moe_combine_peer(torch, p, case["limit"], gen, device)
    raise ValueError("unknown op %r" % op)


def time_us(torch, call, warmup, runs):
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    us = []
    for _ in range(runs):
        a.record()
        call()
        b.record()
        b.synchronize()
        us.append(1e3 * a.elapsed_time(b))
    us.sort()
    return us[len(us) // 2], us[0]


def read_cases(path):
    cases = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                c = json.loads(line)
                for key in ("op", "config", "shape", "params", "bytes", "flops"):
                    c[key]
            except (ValueError, KeyError) as e:
                raise SystemExit("gpu_torch_peer: %s line %d is not a gpu_kernel_bench case (%s)" % (path, n, e))
            if c.get("impl", "dsv4") == "dsv4":
                cases.append(c)
    return cases


def run(args):
    cases = read_cases(args.cases)
    torch = _torch()
    if not torch.cuda.is_available():
        print("gpu_torch_peer: torch %s sees no CUDA device; nothing timed" % torch.__version__, file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 peers are fp32, not TF32
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    for case in cases:
        for variant in variants(torch, case["op"]):
            gen = torch.Generator(device=device)
            gen.manual_seed(1)
            call = make_call(torch, case, variant, gen, device)
            with torch.no_grad():
                med, lo = time_us(torch, call, args.warmup, args.runs)
            out = {k: case[k] for k in ("op", "config", "shape", "params", "bytes", "flops")}
            out.update(impl=variant, median_us=med, min_us=lo, runs=args.runs, warmup=args.warmup, device=name,
                       torch=torch.__version__)
            print(json.dumps(out), flush=True)
            del call
            torch.cuda.empty_cache()
    return 0


# --- --self-test: the peers against naive per-token loops of the spec's formulas (CPU, tiny shapes) ---


def self_test():
    torch = _torch()
    torch.manual_seed(0)
    gen = torch.Generator()
    gen.manual_seed(3)
    cpu = torch.device("cpu")
    failures = []

    # sparse attention with sink: o_h = Σ_j e^{s_hj} v_j / (Σ_j e^{s_hj} + e^{z_h}), s = τ q·k.
    t, h, c, n_kv, w = 3, 4, 16, 40, 8
    q = bf16_normal(torch, (t, h, c), 1.0, gen, cpu)
    kv = bf16_normal(torch, (n_kv, c), 1.0, gen, cpu)
    sink = torch.randn((h,), generator=gen)
    lists = random_lists(torch, t, n_kv, w, gen, cpu)
    tau = 1.0 / math.sqrt(c)
    want = torch.empty((t, h, c), dtype=torch.float64)
    for i in range(t):
        for hh in range(h):
            s = [tau * float(q[i, hh].double() @ kv[lists[i, j]].double()) for j in range(w)]
            num = sum(math.exp(s[j]) * kv[lists[i, j]].double() for j in range(w))
            den = sum(math.exp(x) for x in s) + math.exp(float(sink[hh]))
            want[i, hh] = num / den
    # bf16 p and output: a few bf16 ulps of values ≤ ~3; torch_bf16 also rounds the logits to bf16.
    for variant, bound in (("torch_fp32", 2e-2), ("torch_bf16", 5e-2)):
        got = sparse_attention_torch(torch, q, kv, lists, sink, tau, variant).double()
        err = float((got - want).abs().max())
        if not err < bound:
            failures.append("sparse_attention %s vs naive: max |diff| %g" % (variant, err))
    # A wrong sink placement (in the max, or left out) must be caught by the same check.
    bad = sparse_attention_torch(torch, q, kv, lists, sink - 50.0, tau, "torch_fp32").double()
    if not float((bad - want).abs().max()) > 2e-2:
        failures.append("sparse_attention self-test cannot see the sink (the check is blind)")

    # moe combine: y_t = bf16(Σ_{e ascending} E_e(x_t; w_te) + S(x_t)).
    t, d, i, e, k, limit = 5, 32, 16, 6, 2, 10.0
    w1 = bf16_normal(torch, (e, i, d), 1.0, gen, cpu)
    w3 = bf16_normal(torch, (e, i, d), 1.0, gen, cpu)
    w2 = bf16_normal(torch, (e, d, i), 0.3, gen, cpu)
    s1, s3, s2 = w1[0].clone(), w3[1].clone(), w2[2].clone()
    x = bf16_normal(torch, (t, d), 1.0, gen, cpu)
    idx, wts = random_routing(torch, t, e, k, gen, cpu)
    got = moe_combine_torch(torch, x, wts, idx, w1, w3, w2, s1, s3, s2, limit).double()

    def expert_naive(xr, a, b, o, weight):
        g = [float(xr.double() @ a[r].double()) for r in range(a.shape[0])]
        u = [float(xr.double() @ b[r].double()) for r in range(b.shape[0])]
        hh = []
        for gi, ui in zip(g, u):
            ui, gi = min(max(ui, -limit), limit), min(gi, limit)
            hh.append(gi / (1.0 + math.exp(-gi)) * ui * (1.0 if weight is None else weight))
        return torch.tensor(hh, dtype=torch.float64) @ o.double().t()

    want = torch.empty((t, d), dtype=torch.float64)
    for r in range(t):
        acc = torch.zeros(d, dtype=torch.float64)
        for j in sorted(range(k), key=lambda j: int(idx[r, j])):
            ee = int(idx[r, j])
            acc += expert_naive(x[r], w1[ee], w3[ee], w2[ee], float(wts[r, j]))
        want[r] = acc + expert_naive(x[r], s1, s3, s2, None)
    rel = float(((got - want).abs() / (want.abs() + 1.0)).max())
    if not rel < 5e-2:  # bf16 intermediates (g, u, h, each expert's output) against an all-double loop
        failures.append("moe_combine torch_bf16 vs naive: max rel diff %g" % rel)

    # rmsnorm: y = bf16(w · x / sqrt(mean(x²) + eps)).
    x = bf16_normal(torch, (4, 64), 1.0, gen, cpu)
    wn = bf16_normal(torch, (64,), 1.0, gen, cpu)
    got = rmsnorm_explicit(torch, x, wn, 1e-6).double()
    xd = x.double()
    want = wn.double() * xd / torch.sqrt(xd.square().mean(-1, keepdim=True) + 1e-6)
    err = float(((got - want).abs() / (want.abs() + 1e-3)).max())
    if not err < 1e-2:
        failures.append("rmsnorm torch_explicit vs naive: max rel diff %g" % err)

    for f in failures:
        print("gpu_torch_peer --self-test: FAIL " + f, file=sys.stderr)
    print("gpu_torch_peer --self-test: %s (torch %s, CPU)" % ("FAILED" if failures else "ok", torch.__version__))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", help="JSON lines of gpu_kernel_bench (--list or a timed run)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--self-test", action="store_true", help="check the peers against naive loops on the CPU")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.cases:
        ap.error("--cases is required (or --self-test)")
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be ≥ 1 and --warmup ≥ 0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
