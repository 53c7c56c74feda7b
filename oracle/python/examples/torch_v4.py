"""A clean-room PyTorch forward of DeepSeek-V4 — an *outside engine* for dsv4 to certify (issues 13, 15).

Written from the specification in this repository (ref/spec/*.md), not from the official code and
not from the C++ reference: it is what an engine builder with their own PyTorch V4 would have. It
loads a checkpoint in the official naming (`dsv4 weights export --naming official`: FP8 E4M3 with
E8M0 128x128 scales, packed FP4 experts with 1x32 scales, bf16, fp32), runs prefill and decode steps
(and the MTP block) in the official dtype policy the way a plain PyTorch engine does — bf16
activations, torch's own matmul / softmax / rsqrt / topk, fp32 where the official model keeps fp32
(spec 05 §5.4) — and records every module output with `dsv4.torch.Recorder` / `dsv4.torch.record`
under the canonical names (oracle/README.md §Dump convention).

Where it is *not* the official kernels (deliberately, as a normal engine):
  * FP8/FP4 linears: the activation is quantised to FP8 per 128 (power-of-two scale, RNE, spec 01
    §1.4) and the weight dequantised (exact), then ONE fp32 matmul of the dequantised operands
    (torch's order), rounded to bf16 — not the per-128-K / per-32-K promoted accumulators of §1.7/§1.8
    (``--gemm bf16``: torch's bf16 GEMM of the same bf16-exact operands, as on cuBLAS);
  * sparse attention: gathered keys, fp32 scores, torch.softmax over [scores ‖ sink] in fp32, the
    probabilities kept fp32 (``attn_probs="fp32"``, default) for the PV product — not the 64-entry
    online softmax with bf16 probabilities of §2.9 (``attn_probs="bf16"`` rounds the normalised
    probabilities to bf16 as a flash kernel would);
  * Hadamard: an fp32 matmul with the ±1 Sylvester matrix (not the butterfly), scaled, one bf16 rounding;
  * every sum (RMS means, Sinkhorn sums, softmax denominators, einsums) in torch's own order (the mHC
    mix GEMM also in a chosen order: cfg "hc_mix_sum", see hc_mix); libm's exp/rsqrt/sin/cos, not
    correctly rounded ones; torch.topk's tie order; the mHC affine maps as two roundings (no FMA).

    PYTHONPATH=oracle/python python3 oracle/python/examples/torch_v4.py \
        --weights W/model.safetensors --golden g.h5 --out cand.npz [--device cuda] [--certify]

Bugs can be injected to show that certify catches them (``--bug``, see BUGS).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

try:
    import dsv4
    import dsv4.torch as dtorch
except ImportError:  # run from the repository without installing the package
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import dsv4
    import dsv4.torch as dtorch

BF16 = torch.bfloat16
F32 = torch.float32

# Porting bugs that can be injected (each a realistic mistake; the test shows certify FAILs them).
BUGS = {
    "softmax_scale": "attention softmax scale multiplied by 1 + 1/128",
    "norm_eps_outside": "RMSNorm eps added outside the root: x / (sqrt(mean x^2) + eps)",
    "comb_untransposed": "hc_post mixes the residual with comb untransposed (comb[k, j] instead of comb[j, k])",
    "route_scale_twice": "the routed expert weight multiplied by route_scale twice",
    "no_kv_fp8": "window KV without its FP8 simulation",
}


# ---------------------------------------------------------------------------------------------
# checkpoint (spec 00 §0.6, spec 01 §1.1)
# ---------------------------------------------------------------------------------------------

def _e4m3_table() -> np.ndarray:
    t = np.zeros(256, np.float32)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        v = (2.0 ** (e - 7)) * (1 + m / 8) if e else (2.0 ** -6) * (m / 8)
        t[b] = -v if s else v
    t[0x7F] = t[0xFF] = np.nan
    return t


_E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)


def load_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Every tensor of an official-naming safetensors checkpoint, dequantised exactly to fp32
    (FP8 weights times their 128x128 E8M0 tile scales, FP4 times their 1x32 scales; bf16 widened),
    except integer tables (tid2eid) kept as int64."""
    raw = dsv4.read_safetensors(path)
    head = dsv4.safetensors_header(path)
    e4m3 = _e4m3_table()
    out: Dict[str, torch.Tensor] = {}
    for name, e in head.items():
        if name == "__metadata__" or name.endswith(".scale"):
            continue
        a, dt, shape = raw[name], e["dtype"], e["shape"]
        if dt == "BF16":
            v = a.to_float32()
        elif dt in ("F32", "F64"):
            v = a.astype(np.float32)
        elif dt in ("I64", "I32"):
            out[name] = torch.from_numpy(a.astype(np.int64))
            continue
        elif dt == "F8_E4M3":
            v = e4m3[a].reshape(shape)
            s = 2.0 ** (raw[name[:-len("weight")] + "scale"].astype(np.float32) - 127)
            s = s.reshape(head[name[:-len("weight")] + "scale"]["shape"])
            v = v * np.repeat(np.repeat(s, 128, 0), 128, 1)[:shape[0], :shape[1]]
        elif dt == "F4":  # logical shape; two codes per byte, element 2j in the low nibble
            codes = np.stack([a & 15, a >> 4], -1).reshape(shape)
            v = _E2M1[codes & 7] * np.where(codes & 8, -1.0, 1.0).astype(np.float32)
            s = 2.0 ** (raw[name[:-len("weight")] + "scale"].astype(np.float32) - 127)
            s = s.reshape(head[name[:-len("weight")] + "scale"]["shape"])
            v = v * np.repeat(s, 32, 1)
        else:
            raise ValueError(f"{name}: dtype {dt} not handled")
        out[name] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    return out


# ---------------------------------------------------------------------------------------------
# numerics: quantisers (spec 01 §1.3–§1.5), linears (§1.6), RMSNorm (C8), RoPE (02 §2.2–2.3)
# ---------------------------------------------------------------------------------------------

def _pow2(n: torch.Tensor) -> torch.Tensor:
    """2^n as the fp32 whose bit pattern is (n + 127) << 23 (spec 01 §1.3; -126 <= n <= 127)."""
    return ((n.to(torch.int32) + 127) << 23).view(F32)


def _exponent(x: torch.Tensor) -> torch.Tensor:
    """The unbiased exponent field of fp32 x (floor(log2|x|) for normal x; -127 for 0)."""
    return ((x.view(torch.int32) >> 23) & 255) - 127


def _pow2_ceil_scale(amax: torch.Tensor, inv: float) -> torch.Tensor:
    """pow2(log2ceil(fl32(amax * fl32(inv)))), the bit recipe of spec 01 §1.3 (device-independent)."""
    t = amax * torch.tensor(inv, dtype=F32, device=amax.device)
    mant = t.view(torch.int32) & 0x7FFFFF
    return _pow2(_exponent(t) + (mant != 0).to(torch.int32))


def _round_e4m3(v: torch.Tensor) -> torch.Tensor:
    """RNE onto the E4M3 grid (|v| <= 448): 3 mantissa bits, subnormal step 2^-9."""
    ulp = _pow2(torch.clamp(_exponent(v.abs()), min=-6) - 3)
    return torch.round(v / ulp) * ulp  # torch.round: half to even


def _round_e2m1(v: torch.Tensor) -> torch.Tensor:
    """RNE onto the E2M1 grid (|v| <= 6): 0, 0.5, 1, 1.5, 2, 3, 4, 6."""
    ulp = _pow2(torch.clamp(_exponent(v.abs()), min=0) - 1)
    return torch.round(v / ulp) * ulp


def fp8_quant(x: torch.Tensor, block: int) -> torch.Tensor:
    """act_quant quant-dequant (power-of-two scales), fp32 result (exact)."""
    shape = x.shape
    v = x.float().reshape(*shape[:-1], shape[-1] // block, block)
    amax = v.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    s = _pow2_ceil_scale(amax, 1 / 448)
    return (_round_e4m3(torch.clamp(v / s, -448, 448)) * s).reshape(shape)


def fp4_quant(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """fp4_act_quant quant-dequant, fp32 result."""
    shape = x.shape
    v = x.float().reshape(*shape[:-1], shape[-1] // block, block)
    amax = v.abs().amax(-1, keepdim=True).clamp(min=6 * 2.0 ** -126)
    s = _pow2_ceil_scale(amax, 1 / 6)
    return (_round_e2m1(torch.clamp(v / s, -6, 6)) * s).reshape(shape)


# How the bf16-valued GEMMs run: "fp32" — operands widened, one fp32 matmul, rounded to bf16 (the
# default); "bf16" — operands as bf16 tensors, torch's bf16 matmul (cuBLAS / oneDNN: fp32
# accumulation in its own order and splits, bf16 result). FP8 activations times FP8/FP4 weights with
# power-of-two scales are exact in bf16, so both compute the same products.
GEMM = {"dtype": "fp32"}


def _gemm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if GEMM["dtype"] == "bf16":
        return x.to(BF16) @ w.to(BF16).t()
    return (x.float() @ w.float().t()).to(BF16)


def quant_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """FP8/FP4 weight linear: FP8 activation (block 128), one matmul of the dequantised operands, bf16 out."""
    return _gemm(fp8_quant(x, 128), w)


def bf16_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A bf16 GEMM with fp32 accumulation, bf16 out."""
    return _gemm(x, w)


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float, bug_eps_outside: bool = False):
        super().__init__()
        self.register_buffer("weight", weight)
        self.eps, self.bug = eps, bug_eps_outside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        ms = x.square().mean(-1, keepdim=True)
        x = x / (torch.sqrt(ms) + self.eps) if self.bug else x * torch.rsqrt(ms + self.eps)
        return (self.weight * x).to(dtype)


def rope_freqs(cfg: dict, rd: int, compressed: bool, device) -> torch.Tensor:
    """Per-pair frequencies f_i (fp32) of spec 02 §2.2: base rope_theta without YaRN for SWA layers,
    compress_rope_theta with YaRN for compressed ones."""
    base = cfg["compress_rope_theta"] if compressed else cfg["rope_theta"]
    l0 = cfg["original_seq_len"] if compressed else 0
    f = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=F32) / rd))
    if l0 > 0:
        def cd(n):
            return rd * math.log(l0 / (n * 2 * math.pi)) / (2 * math.log(base))
        lo = max(math.floor(cd(cfg["beta_fast"])), 0)
        hi = min(math.ceil(cd(cfg["beta_slow"])), rd - 1)
        if lo == hi:
            hi += 0.001
        ramp = torch.clamp((torch.arange(rd // 2, dtype=F32) - lo) / (hi - lo), 0, 1)
        smooth = 1 - ramp
        f = f / cfg["rope_factor"] * (1 - smooth) + f * smooth
    return f.to(device)


def apply_rope(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate the interleaved pairs of x's last axis (rd values) by the angles pos*f (spec 02 §2.3):
    x [b, n, rd] or [b, n, heads, rd], pos [n]; complex product in fp32, rounded to x's dtype."""
    ang = pos.to(F32)[:, None] * freqs[None, :]  # [n, rd/2]
    cos, sin = torch.cos(ang), torch.sin(ang)
    if x.dim() == 4:  # [b, n, heads, rd]: the same angle for every head
        cos, sin = cos[:, None, :], sin[:, None, :]
    if inverse:
        sin = -sin
    v = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = v[..., 0], v[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1).reshape(x.shape)
    return out.to(x.dtype)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    h = torch.ones(1, 1, dtype=F32)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return ((x.float() @ h.to(x.device)) * n ** -0.5).to(BF16)


# ---------------------------------------------------------------------------------------------
# mHC (spec 04)
# ---------------------------------------------------------------------------------------------

def hc_mix(v: torch.Tensor, fn: torch.Tensor, cfg) -> torch.Tensor:
    """The fp32 GEMM v @ fn^T of hc_pre / hc_head (cfg "hc_mix_sum"): "torch" — torch's matmul (on
    the CPU of torch 1.13, single-threaded, bit-identical to "sequential"); "sequential" / "reverse"
    — one fp32 accumulator per output summed in index order / in reverse, as a plain CUDA kernel with
    one thread per output would; "split4" — four fp32 partial sums over contiguous quarters, added in
    order (a split-K GEMM)."""
    how = cfg.get("hc_mix_sum", "torch")
    if how == "torch":
        return v @ fn.t()
    if how == "split4":
        q = v.shape[-1] // 4
        parts = [v[..., i * q:(i + 1) * q] @ fn[:, i * q:(i + 1) * q].t() for i in range(4)]
        return ((parts[0] + parts[1]) + parts[2]) + parts[3]
    order = range(v.shape[-1]) if how == "sequential" else reversed(range(v.shape[-1]))
    acc = torch.zeros(*v.shape[:-1], fn.shape[0], dtype=F32, device=v.device)
    for k in order:
        acc = acc + v[..., k:k + 1] * fn[:, k]
    return acc


def hc_pre(x: torch.Tensor, fn, scale, base, cfg):
    """x: bf16 [b, s, hc, d] -> (y bf16 [b, s, d], post fp32 [b, s, hc], comb fp32 [b, s, hc, hc])."""
    hc, eps, heps = cfg["hc_mult"], cfg["norm_eps"], cfg["hc_eps"]
    v = x.flatten(2).float()
    r = torch.rsqrt(v.square().mean(-1, keepdim=True) + eps)
    mixes = hc_mix(v, fn, cfg) * r
    pre = torch.sigmoid(mixes[..., :hc] * scale[0] + base[:hc]) + heps
    post = 2 * torch.sigmoid(mixes[..., hc:2 * hc] * scale[1] + base[hc:2 * hc])
    comb = (mixes[..., 2 * hc:] * scale[2] + base[2 * hc:]).unflatten(-1, (hc, hc))
    comb = torch.softmax(comb, -1) + heps
    comb = comb / (comb.sum(-2, keepdim=True) + heps)
    for _ in range(cfg["hc_sinkhorn_iters"] - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + heps)
        comb = comb / (comb.sum(-2, keepdim=True) + heps)
    y = (pre.unsqueeze(-1) * x.float()).sum(2).to(BF16)
    return y, post, comb


def hc_post(f: torch.Tensor, res: torch.Tensor, post, comb, bug_untransposed=False) -> torch.Tensor:
    """X'_k = post_k f + sum_j comb[j, k] X_j (spec 04 §4.4), bf16 [b, s, hc, d]."""
    if bug_untransposed:
        comb = comb.transpose(-1, -2)
    mixed = (comb.unsqueeze(-1) * res.float().unsqueeze(-2)).sum(2)  # sum over j
    return (post.unsqueeze(-1) * f.float().unsqueeze(-2) + mixed).to(BF16)


# ---------------------------------------------------------------------------------------------
# attention (spec 02)
# ---------------------------------------------------------------------------------------------

class Compressor(nn.Module):
    """Gated softmax pooling of m (overlap: 2m) tokens into one entry (spec 02 §2.6)."""

    def __init__(self, w, prefix, cfg, ratio, dim, freqs, rotate, max_batch, device):
        super().__init__()
        self.m, self.d, self.rotate, self.cfg, self.freqs = ratio, dim, rotate, cfg, freqs
        self.overlap = ratio == 4
        k = 2 if self.overlap else 1
        self.register_buffer("wkv", w[prefix + "wkv.weight"])
        self.register_buffer("wgate", w[prefix + "wgate.weight"])
        self.register_buffer("ape", w[prefix + "ape"])
        self.norm = RMSNorm(w[prefix + "norm.weight"], cfg["norm_eps"])
        self.kv_state = torch.zeros(max_batch, k * ratio, k * dim, device=device)
        self.score_state = torch.full((max_batch, k * ratio, k * dim), -math.inf, device=device)

    def _finish(self, pooled: torch.Tensor, first_pos: torch.Tensor) -> torch.Tensor:
        rd = self.cfg["rope_head_dim"]
        e = self.norm(pooled.to(BF16))
        e = torch.cat([e[..., :-rd], apply_rope(e[..., -rd:], first_pos, self.freqs)], -1)
        if self.rotate:  # indexer keys: Hadamard, then FP4 simulation of all dims
            return fp4_quant(hadamard(e)).to(BF16)
        return torch.cat([fp8_quant(e[..., :-rd], 64).to(BF16), e[..., -rd:]], -1)

    def forward(self, x: torch.Tensor, start_pos: int) -> Optional[torch.Tensor]:
        b, s, _ = x.shape
        m, d = self.m, self.d
        xf = x.float()
        u, z = xf @ self.wkv.t(), xf @ self.wgate.t()
        if start_pos == 0:
            pos = torch.arange(s, device=x.device)
            z = z + self.ape[pos % m]
            full = s - s % m
            o = m if self.overlap else 0
            if self.overlap and full >= m:
                self.kv_state[:b, :m], self.score_state[:b, :m] = u[:, full - m:full], z[:, full - m:full]
            if s % m:
                self.kv_state[:b, o:o + s % m], self.score_state[:b, o:o + s % m] = u[:, full:], z[:, full:]
            if full == 0:
                return None
            n = full // m
            u, z = u[:, :full].unflatten(1, (n, m)), z[:, :full].unflatten(1, (n, m))
            if self.overlap:  # slots: previous block's first half, this block's second half
                pad_u = torch.zeros_like(u[:, :1, :, :d])
                pad_z = torch.full_like(z[:, :1, :, :d], -math.inf)
                u = torch.cat([torch.cat([pad_u, u[:, :-1, :, :d]], 1), u[..., d:]], 2)
                z = torch.cat([torch.cat([pad_z, z[:, :-1, :, :d]], 1), z[..., d:]], 2)
            pooled = (u * torch.softmax(z, 2)).sum(2)  # [b, n, d]
            return self._finish(pooled, torch.arange(n, device=x.device) * m)
        p = start_pos  # decode, one token
        z = z + self.ape[p % m]
        row = (m if self.overlap else 0) + p % m
        self.kv_state[:b, row], self.score_state[:b, row] = u[:, 0], z[:, 0]
        if (p + 1) % m:
            return None
        ks, zs = self.kv_state[:b], self.score_state[:b]
        if self.overlap:
            ks = torch.cat([ks[:, :m, :d], ks[:, m:, d:]], 1)
            zs = torch.cat([zs[:, :m, :d], zs[:, m:, d:]], 1)
        pooled = (ks * torch.softmax(zs, 1)).sum(1, keepdim=True)
        if self.overlap:
            self.kv_state[:b, :m], self.score_state[:b, :m] = (self.kv_state[:b, m:].clone(),
                                                               self.score_state[:b, m:].clone())
        return self._finish(pooled, torch.tensor([p + 1 - m], device=x.device))


class Indexer(nn.Module):
    """Lightning indexer: top-k compressed entries per query (spec 02 §2.7)."""

    def __init__(self, w, prefix, cfg, freqs, max_batch, device):
        super().__init__()
        self.cfg, self.freqs = cfg, freqs
        self.nh, self.hd = cfg["index_n_heads"], cfg["index_head_dim"]
        self.register_buffer("wq_b", w[prefix + "wq_b.weight"])
        self.register_buffer("weights_proj", w[prefix + "weights_proj.weight"])
        self.compressor = Compressor(w, prefix + "compressor.", cfg, 4, self.hd, freqs, True, max_batch, device)
        self.cache = torch.zeros(max_batch, cfg["max_seq_len"] // 4, self.hd, dtype=BF16, device=device)

    def forward(self, x, qr, start_pos: int, offset: int):
        b, s, _ = x.shape
        rd = self.cfg["rope_head_dim"]
        pos = torch.arange(start_pos, start_pos + s, device=x.device)
        q = quant_linear(qr, self.wq_b).unflatten(-1, (self.nh, self.hd))
        q = torch.cat([q[..., :-rd], apply_rope(q[..., -rd:], pos, self.freqs)], -1)
        q = fp4_quant(hadamard(q)).to(BF16)
        new = self.compressor(x, start_pos)
        if new is not None:
            first = start_pos // 4
            self.cache[:b, first:first + new.shape[1]] = new
        end = start_pos + s
        n = end // 4
        k = min(self.cfg["index_topk"], n)
        if k == 0:
            return torch.empty(b, s, 0, dtype=torch.int64, device=x.device)
        wts = (bf16_linear(x, self.weights_proj) * (self.hd ** -0.5 * self.nh ** -0.5)).to(BF16)
        keys = self.cache[:b, :n]
        score = torch.einsum("bshd,btd->bsht", q.float(), keys.float()).to(BF16)
        score = (torch.relu(score) * wts.unsqueeze(-1)).to(BF16)
        score = score.float().sum(2).to(BF16)  # [b, s, n]
        if start_pos == 0:
            visible = torch.arange(n, device=x.device)[None, :] < ((pos + 1) // 4)[:, None]
            score = score.masked_fill(~visible, -math.inf)
        idx = score.topk(k, dim=-1).indices
        if start_pos == 0:
            idx = torch.where(idx < ((pos + 1) // 4)[None, :, None], idx + offset, torch.full_like(idx, -1))
        else:
            idx = idx + offset
        return idx


class GroupedProjection(nn.Module):
    """wo_a: per group of heads, bf16 weights, fp32 accumulation, bf16 out (spec 02 §2.10)."""

    def __init__(self, weight, groups):
        super().__init__()
        self.register_buffer("weight", weight)
        self.g = groups

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        b, s = o.shape[:2]
        o = o.reshape(b, s, self.g, -1)
        w = self.weight.view(self.g, -1, o.shape[-1])
        if GEMM["dtype"] == "bf16":
            return torch.einsum("bsgk,grk->bsgr", o.to(BF16), w.to(BF16)).flatten(2)
        return torch.einsum("bsgk,grk->bsgr", o.float(), w).to(BF16).flatten(2)


class Attention(nn.Module):
    def __init__(self, w, prefix, cfg, ratio, max_batch, device, bugs=()):
        super().__init__()
        self.cfg, self.m, self.bugs = cfg, ratio, set(bugs)
        self.h, self.c, self.rd, self.win = cfg["n_heads"], cfg["head_dim"], cfg["rope_head_dim"], cfg["window_size"]
        self.freqs = rope_freqs(cfg, self.rd, ratio > 0, device)
        for n in ("wq_a", "wq_b", "wkv", "wo_b"):
            self.register_buffer(n, w[prefix + n + ".weight"])
        self.register_buffer("attn_sink", w[prefix + "attn_sink"])
        eps = cfg["norm_eps"]
        self.q_norm = RMSNorm(w[prefix + "q_norm.weight"], eps, "norm_eps_outside" in self.bugs)
        self.kv_norm = RMSNorm(w[prefix + "kv_norm.weight"], eps, "norm_eps_outside" in self.bugs)
        self.wo_a = GroupedProjection(w[prefix + "wo_a.weight"], cfg["o_groups"])
        if ratio:
            self.compressor = Compressor(w, prefix + "compressor.", cfg, ratio, self.c, self.freqs, False,
                                         max_batch, device)
        if ratio == 4:
            self.indexer = Indexer(w, prefix + "indexer.", cfg, self.freqs, max_batch, device)
        self.ring = torch.zeros(max_batch, self.win, self.c, dtype=BF16, device=device)
        n_comp = cfg["max_seq_len"] // ratio if ratio else 0
        self.comp = torch.zeros(max_batch, n_comp, self.c, dtype=BF16, device=device)

    def forward(self, x: torch.Tensor, start_pos: int) -> torch.Tensor:
        b, s, _ = x.shape
        h, c, rd, win, m = self.h, self.c, self.rd, self.win, self.m
        dev = x.device
        pos = torch.arange(start_pos, start_pos + s, device=dev)
        # queries (§2.4)
        qr = self.q_norm(quant_linear(x, self.wq_a))
        q = quant_linear(qr, self.wq_b).unflatten(-1, (h, c))
        q = q * torch.rsqrt(q.square().mean(-1, keepdim=True) + self.cfg["norm_eps"])  # bf16 ops
        q = torch.cat([q[..., :-rd], apply_rope(q[..., -rd:], pos, self.freqs)], -1)
        # window KV (§2.5)
        kv = self.kv_norm(quant_linear(x, self.wkv))
        kv_rope = apply_rope(kv[..., -rd:], pos, self.freqs)
        nope = kv[..., :-rd] if "no_kv_fp8" in self.bugs else fp8_quant(kv[..., :-rd], 64).to(BF16)
        kv = torch.cat([nope, kv_rope], -1)
        dtorch.record("kv", kv, module=self)
        # index lists (§2.8) and the KV tensor they address
        if start_pos == 0:
            width = min(s, win)
            a = torch.clamp(pos - win + 1, min=0)
            wl = a[:, None] + torch.arange(width, device=dev)[None, :]
            wl = torch.where(wl > pos[:, None], torch.full_like(wl, -1), wl)
            lists = [wl.unsqueeze(0).expand(b, s, width)]
            if m == 4:
                lists.append(self.indexer(x, qr, 0, s))
            elif m:
                n = s // m
                cl = torch.arange(n, device=dev)[None, :].expand(s, n)
                cl = torch.where(cl < ((pos + 1) // m)[:, None], cl + s, torch.full_like(cl, -1))
                lists.append(cl.unsqueeze(0).expand(b, s, n))
            keep = min(s, win)
            slots = torch.arange(s - keep, s, device=dev) % win
            self.ring[:b, slots] = kv[:, s - keep:]
            kv_all = kv
            if m:
                new = self.compressor(x, 0)
                if new is not None:
                    self.comp[:b, :new.shape[1]] = new
                    kv_all = torch.cat([kv, new], 1)
        else:
            p = start_pos
            if p < win - 1:
                wl = torch.arange(win, device=dev)
                wl = torch.where(wl > p, torch.full_like(wl, -1), wl)
            else:
                rho = p % win
                wl = (torch.arange(win, device=dev) + rho + 1) % win
            lists = [wl.view(1, 1, win).expand(b, 1, win)]
            if m == 4:
                lists.append(self.indexer(x, qr, p, win))
            elif m:
                n = (p + 1) // m
                lists.append((torch.arange(n, device=dev) + win).view(1, 1, n).expand(b, 1, n))
            self.ring[:b, p % win] = kv[:, 0]
            if m:
                new = self.compressor(x, p)
                if new is not None:
                    self.comp[:b, p // m] = new[:, 0]
                kv_all = torch.cat([self.ring[:b], self.comp[:b, :(p + 1) // m]], 1)
            else:
                kv_all = self.ring[:b]
        idx = torch.cat(lists, -1)  # [b, s, K]
        # sparse attention with the sink (§2.9)
        gathered = torch.stack([kv_all[i][idx[i].clamp(min=0)] for i in range(b)])  # [b, s, K, c]
        scale = c ** -0.5 * (1 + 1 / 128 if "softmax_scale" in self.bugs else 1)
        scores = torch.einsum("bshc,bskc->bshk", q.float(), gathered.float()) * scale
        scores = scores.masked_fill((idx < 0).unsqueeze(2), -math.inf)
        sink = self.attn_sink.view(1, 1, h, 1).expand(b, s, h, 1)
        probs = torch.softmax(torch.cat([scores, sink], -1), -1)[..., :-1]
        if self.cfg.get("attn_probs", "fp32") == "bf16":
            probs = probs.to(BF16).float()
        o = torch.einsum("bshk,bskc->bshc", probs, gathered.float()).to(BF16)
        # output path (§2.10)
        o = torch.cat([o[..., :-rd], apply_rope(o[..., -rd:], pos, self.freqs, inverse=True)], -1)
        return quant_linear(self.wo_a(o), self.wo_b)


# ---------------------------------------------------------------------------------------------
# MoE (spec 03)
# ---------------------------------------------------------------------------------------------

class Gate(nn.Module):
    def __init__(self, w, prefix, cfg, hashed):
        super().__init__()
        self.cfg, self.hashed = cfg, hashed
        self.register_buffer("weight", w[prefix + "weight"])
        if hashed:
            self.register_buffer("tid2eid", w[prefix + "tid2eid"])
        else:
            self.register_buffer("bias", w[prefix + "bias"])

    def forward(self, x: torch.Tensor, ids: torch.Tensor):
        logits = x.float() @ self.weight.t()
        scores = torch.sqrt(nn.functional.softplus(logits))
        if self.hashed:
            idx = self.tid2eid[ids]
        else:
            idx = (scores + self.bias).topk(self.cfg["n_activated_experts"], dim=-1).indices
        wts = scores.gather(-1, idx)
        wts = wts / wts.sum(-1, keepdim=True)
        return wts * self.cfg["route_scale"], idx


class MoE(nn.Module):
    def __init__(self, w, prefix, cfg, hashed, bugs=()):
        super().__init__()
        self.cfg, self.bugs = cfg, set(bugs)
        self.gate = Gate(w, prefix + "gate.", cfg, hashed)
        self.experts = [tuple(w[f"{prefix}experts.{e}.{n}.weight"] for n in ("w1", "w2", "w3"))
                        for e in range(cfg["n_routed_experts"])]
        self.shared = tuple(w[f"{prefix}shared_experts.{n}.weight"] for n in ("w1", "w2", "w3"))

    def _expert(self, x, ws, weight=None):
        w1, w2, w3 = ws
        lim = self.cfg["swiglu_limit"]
        g, u = quant_linear(x, w1).float(), quant_linear(x, w3).float()
        if lim > 0:
            u, g = torch.clamp(u, -lim, lim), torch.clamp(g, max=lim)
        hid = nn.functional.silu(g) * u
        if weight is not None:
            hid = hid * weight
            if "route_scale_twice" in self.bugs:
                hid = hid * self.cfg["route_scale"]
        return quant_linear(hid.to(BF16), w2)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        wts, idx = self.gate(x, ids)  # [b, s, k]: the dump's shapes without a golden to reshape by
        x, wts, idx = x.flatten(0, 1), wts.flatten(0, 1), idx.flatten(0, 1)
        y = torch.zeros(x.shape, dtype=F32, device=x.device)
        for e in range(len(self.experts)):  # ascending expert id (spec 03 §3.3)
            tok, slot = torch.where(idx == e)
            if tok.numel():
                y[tok] += self._expert(x[tok], self.experts[e], wts[tok, slot, None]).float()
        y = y + self._expert(x, self.shared).float()
        return y.to(BF16).view(shape)


# ---------------------------------------------------------------------------------------------
# block, head, MTP, model (spec 05)
# ---------------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, w, prefix, cfg, layer_id, max_batch, device, bugs=()):
        super().__init__()
        self.cfg, self.bugs = cfg, set(bugs)
        eps = cfg["norm_eps"]
        for site in ("hc_attn", "hc_ffn"):
            for part in ("fn", "base", "scale"):
                self.register_buffer(f"{site}_{part}", w[f"{prefix}{site}_{part}"])
        self.attn_norm = RMSNorm(w[prefix + "attn_norm.weight"], eps, "norm_eps_outside" in self.bugs)
        self.attn = Attention(w, prefix + "attn.", cfg, cfg["compress_ratios"][layer_id], max_batch, device, bugs)
        self.ffn_norm = RMSNorm(w[prefix + "ffn_norm.weight"], eps, "norm_eps_outside" in self.bugs)
        self.ffn = MoE(w, prefix + "ffn.", cfg, layer_id < cfg["n_hash_layers"], bugs)

    def forward(self, x: torch.Tensor, start_pos: int, ids: torch.Tensor) -> torch.Tensor:
        bug = "comb_untransposed" in self.bugs
        res = x
        y, post, comb = hc_pre(x, self.hc_attn_fn, self.hc_attn_scale, self.hc_attn_base, self.cfg)
        for n, t in (("y", y), ("post", post), ("comb", comb)):
            dtorch.record(f"hc_attn/{n}", t, module=self)
        x = hc_post(self.attn(self.attn_norm(y), start_pos), res, post, comb, bug)
        dtorch.record("hc_attn/out", x, module=self)
        res = x
        y, post, comb = hc_pre(x, self.hc_ffn_fn, self.hc_ffn_scale, self.hc_ffn_base, self.cfg)
        for n, t in (("y", y), ("post", post), ("comb", comb)):
            dtorch.record(f"hc_ffn/{n}", t, module=self)
        return hc_post(self.ffn(self.ffn_norm(y), ids), res, post, comb, bug)


class HcHead(nn.Module):
    def __init__(self, fn, base, scale, cfg):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("fn", fn)
        self.register_buffer("base", base)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(2).float()
        r = torch.rsqrt(v.square().mean(-1, keepdim=True) + self.cfg["norm_eps"])
        pre = torch.sigmoid(hc_mix(v, self.fn, self.cfg) * r * self.scale + self.base) + self.cfg["hc_eps"]
        return (pre.unsqueeze(-1) * x.float()).sum(2).to(BF16)


class Head(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, -1:].float() @ self.weight.t()  # fp32 logits of the last position, [b, 1, V]


class Embed(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight", weight.to(BF16))

    def forward(self, ids):
        return self.weight[ids]


class MTP(Block):
    """The MTP block (spec 05 §5.5): its input from the main model's last hc state and the next
    tokens, a Block, then its own hc_head, norm and the shared head weight."""

    def __init__(self, w, prefix, cfg, layer_id, max_batch, device, bugs, embed_weight, head_weight):
        super().__init__(w, prefix, cfg, layer_id, max_batch, device, bugs)
        eps = cfg["norm_eps"]
        self.register_buffer("e_proj", w[prefix + "e_proj.weight"])
        self.register_buffer("h_proj", w[prefix + "h_proj.weight"])
        self.register_buffer("embed_weight", embed_weight)
        self.enorm = RMSNorm(w[prefix + "enorm.weight"], eps)
        self.hnorm = RMSNorm(w[prefix + "hnorm.weight"], eps)
        self.hc_head = HcHead(w[prefix + "hc_head_fn"], w[prefix + "hc_head_base"], w[prefix + "hc_head_scale"], cfg)
        self.norm = RMSNorm(w[prefix + "norm.weight"], eps)
        self.head = Head(head_weight)  # its own module (hooked as mtp.N.head), the shared weight

    def forward(self, h: torch.Tensor, start_pos: int, ids: torch.Tensor) -> torch.Tensor:
        e = quant_linear(self.enorm(self.embed_weight[ids]), self.e_proj)
        x = (e.unsqueeze(2).float() + quant_linear(self.hnorm(h), self.h_proj).float()).to(BF16)
        dtorch.record("in", x, module=self)
        return super().forward(x, start_pos, ids)


class Transformer(nn.Module):
    """The V4 model under the official module names (the recorder hooks them by path)."""

    def __init__(self, weights: Dict[str, torch.Tensor], cfg: dict, device="cpu", bugs=(), bug_layers=None,
                 max_batch: Optional[int] = None):
        super().__init__()
        for b in bugs:
            if b not in BUGS:
                raise ValueError(f"unknown bug {b!r}: {sorted(BUGS)}")
        w = {k: v.to(device) for k, v in weights.items()}
        self.cfg = cfg
        max_batch = max_batch or cfg["max_batch_size"]
        eps = cfg["norm_eps"]
        L = cfg["n_layers"]

        def bugs_of(i):
            return bugs if bug_layers is None or i in bug_layers else ()

        self.embed = Embed(w["embed.weight"])
        self.layers = nn.ModuleList(Block(w, f"layers.{i}.", cfg, i, max_batch, device, bugs_of(i)) for i in range(L))
        self.hc_head = HcHead(w["hc_head_fn"], w["hc_head_base"], w["hc_head_scale"], cfg)
        self.norm = RMSNorm(w["norm.weight"], eps)
        self.head = Head(w["head.weight"])
        self.mtp = nn.ModuleList(MTP(w, f"mtp.{i}.", cfg, L + i, max_batch, device, bugs_of(L + i),
                                     self.embed.weight, w["head.weight"]) for i in range(cfg.get("n_mtp_layers", 0)))

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, start_pos: int = 0, next_ids: Optional[torch.Tensor] = None):
        """One step: ids [b, s] at positions start_pos.. (prefill: start_pos 0; decode: s = 1).
        next_ids [b, s] (the tokens one position later), when known, runs the MTP block on them."""
        x = self.embed(ids)
        x = x.unsqueeze(2).repeat(1, 1, self.cfg["hc_mult"], 1)
        for layer in self.layers:
            x = layer(x, start_pos, ids)
        logits = self.head(self.norm(self.hc_head(x)))
        if next_ids is not None:
            for mtp in self.mtp:
                y = mtp(x, start_pos, next_ids)
                mtp.head(mtp.norm(mtp.hc_head(y)))
        return logits


def run(model: Transformer, tokens: torch.Tensor, prompt_len: int, mtp: bool = True) -> List[torch.Tensor]:
    """Prefill tokens[:, :prompt_len], then one decode step per remaining token; MTP runs in every
    step whose positions all have their next token (oracle/README.md: the prefill and decode steps
    0 .. N-2). Returns the logits of each step."""
    out, L = [], tokens.shape[1]
    steps = [(0, prompt_len)] + [(p, p + 1) for p in range(prompt_len, L)]
    for a, e in steps:
        nxt = tokens[:, a + 1:e + 1] if mtp and e + 1 <= L and model.mtp else None
        out.append(model(tokens[:, a:e], a, nxt))
    return out


OFFICIAL_MODULE = re.compile(r"^(embed|hc_head|norm|head|(layers|mtp)\.\d+(\.(attn_norm|attn|attn\.q_norm|attn\.wo_a|"
                             r"attn\.compressor|attn\.indexer|ffn_norm|ffn|ffn\.gate|hc_head|norm|head))?)$")


def official_modules(model: nn.Module) -> List[str]:
    """The module paths of the model that are official module paths (what the recorder hooks)."""
    return [n for n, _ in model.named_modules() if OFFICIAL_MODULE.match(n)]


def record(model: Transformer, tokens: torch.Tensor, prompt_len: int, mtp: bool) -> "dtorch.Recorder":
    """Run the schedule (prefill of prompt_len tokens, then one decode step per remaining token) under
    a recorder hooked on the model's official modules; returns the recorder."""
    rec = dtorch.Recorder(model, modules=official_modules(model))
    try:
        run(model, tokens, prompt_len, mtp=mtp)
    finally:
        rec.remove()
    return rec


def record_golden(model: Transformer, golden, device="cpu") -> "dtorch.Recorder":
    """record() with a golden's tokens and schedule."""
    tokens = torch.from_numpy(np.asarray(golden.tokens, dtype=np.int64)).to(device)
    return record(model, tokens, golden.steps[0]["length"], any(s.get("mtp") for s in golden.steps))


def build(weights_path: str, config_path: Optional[str] = None, device="cpu", bugs=(), bug_layers=None,
          attn_probs="fp32", gemm="fp32", max_batch: Optional[int] = None) -> Transformer:
    cfg_path = config_path or os.path.join(os.path.dirname(os.path.abspath(weights_path)), "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["attn_probs"] = attn_probs
    GEMM["dtype"] = gemm
    return Transformer(load_checkpoint(weights_path), cfg, device, bugs, bug_layers, max_batch=max_batch)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="model.safetensors of `dsv4 weights export --naming official`")
    ap.add_argument("--config", help="config.json (default: the one beside --weights)")
    ap.add_argument("--golden", help="the golden whose tokens and schedule to run (or --tokens and --prompt-len)")
    ap.add_argument("--tokens", help=".npy of token ids [b, L] (without --golden)")
    ap.add_argument("--prompt-len", type=int, help="prefill length (without --golden); the rest are decode steps")
    ap.add_argument("--no-mtp", action="store_true", help="(without --golden) do not run the MTP block")
    ap.add_argument("--out", required=True, help="candidate dump (.npz, .h5, .safetensors)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attn-probs", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--gemm", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--bug", action="append", default=[], help=f"inject a bug: {', '.join(BUGS)}")
    ap.add_argument("--bug-layer", type=int, action="append", help="only in these layers (default all)")
    ap.add_argument("--certify", action="store_true", help="then run dsv4 certify (DSV4_BIN / PATH; needs --golden)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.golden:
        g = dsv4.Golden(args.golden)
        tokens = np.asarray(g.tokens, dtype=np.int64)
        prompt_len, mtp = g.steps[0]["length"], any(s.get("mtp") for s in g.steps)
    else:
        if not (args.tokens and args.prompt_len):
            ap.error("give --golden, or --tokens and --prompt-len")
        g, tokens = None, np.load(args.tokens).astype(np.int64).reshape(-1, np.load(args.tokens).shape[-1])
        prompt_len, mtp = args.prompt_len, not args.no_mtp
    model = build(args.weights, args.config, args.device, args.bug, args.bug_layer, args.attn_probs, args.gemm,
                  max_batch=tokens.shape[0])
    rec = record(model, torch.from_numpy(tokens).to(args.device), prompt_len, mtp)
    rec.save(args.out, golden=g)
    print(f"wrote {args.out}: {len(rec.tensors)} tensors ({args.device}, gemm {args.gemm}, attention "
          f"probabilities {args.attn_probs}{', bugs ' + ','.join(args.bug) if args.bug else ''})")
    if args.certify:
        if g is None:
            ap.error("--certify needs --golden")
        r = dsv4.certify(g, args.out, weights=args.weights)
        print(r.stdout, r.stderr)
        return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
