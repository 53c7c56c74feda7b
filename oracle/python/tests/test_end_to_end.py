"""Issue 13's acceptance test, played as an outside engine would: export the weights (`dsv4 weights
export`, when the binary has it; else the golden's seeded weights), generate a golden from them, run
a small PyTorch module tree under the official module names that *computes* some modules — every
block's RMSNorm `attn_norm` and the output `head`, in fp32 as an engine may, from the exported
weights and the golden's inputs — and feeds the golden's values elsewhere, record it with
dsv4.torch.Recorder, certify it (PASS), then inject a porting bug in
one module (`layers.3.attn_norm` scaling by 1 + w, Gemma-style): certify FAILs and diff blames
exactly that module."""

import json
import subprocess
import unittest

import numpy as np

import dsv4
from support import binary_or_skip, help_of, note, tmpdir, torch_or_skip

try:
    import torch
    from torch import nn
except ImportError:
    torch = None
    nn = object

CONFIG, SEED, PROMPT, DECODE = "tiny", 3, 6, 2
BUGGY_LAYER = 3


def engine(golden, norm_weights, head_weight=None, buggy_layer=None):
    """A V4-shaped module tree: `embed`, `layers.N` (hc_attn -> attn_norm -> attn -> hc_ffn -> ffn_norm
    -> ffn), `norm`, `head`, `mtp.0`. Computed in torch: each block's attn_norm (RMSNorm in fp32)
    and the head (fp32 logits of the last position); every other module replays
    the golden's exact values for its outputs."""
    cfg = golden.config
    eps = float(cfg["norm_eps"])

    class Ctx:
        step = None

    ctx = Ctx()

    def gold(name):
        full = f"{ctx.step}/{name}"
        return torch.from_numpy(golden.exact(full)) if full in golden else None

    class Replay(nn.Module):
        """An engine module not reproduced here: its outputs are the golden's."""

        def __init__(self, path, outputs=("out",), children=()):
            super().__init__()
            self.path, self.outputs = path, outputs
            for n, m in children:
                self.add_module(n, m)

        def forward(self, *inputs):
            for m in self.children():  # sub-modules run first, as in the engine
                m()
            vals = tuple(gold(f"{self.path}/{o}") for o in self.outputs)
            return vals if len(vals) > 1 else vals[0]

    class RMSNorm(nn.Module):
        def __init__(self, weight, bug):
            super().__init__()
            self.weight = torch.from_numpy(weight.astype(np.float32))  # bf16 values, held in fp32
            self.bug = bug

        def forward(self, x):
            # fp32 throughout (a bf16 output would be judged fine on its own, but the replayed
            # modules after it hold the golden's values, computed from the exact input: the local
            # verdicts rightly find such a dump inconsistent where bf16 rounding propagates)
            x = x.float()
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            w = 1 + self.weight if self.bug else self.weight
            return x * w

    class Head(nn.Module):
        def __init__(self, weight):
            super().__init__()
            self.weight = torch.from_numpy(weight.astype(np.float64))

        def forward(self, x):
            # fp32 logits of the last position, the products summed in float64 (an fp32 sum in
            # another order than the reference's may differ by more than 2x its own rounding error)
            return (x[:, -1:].double() @ self.weight.T).float()

    class Block(nn.Module):
        def __init__(self, path):
            super().__init__()
            self.path = path
            self.attn_norm = RMSNorm(norm_weights[path], path == f"layers.{buggy_layer}")
            self.attn = Replay(f"{path}.attn", children=[
                ("q_norm", Replay(f"{path}.attn.q_norm")), ("compressor", Replay(f"{path}.attn.compressor")),
                ("indexer", Replay(f"{path}.attn.indexer")), ("wo_a", Replay(f"{path}.attn.wo_a"))])
            self.ffn_norm = Replay(f"{path}.ffn_norm")
            self.ffn = Replay(f"{path}.ffn", children=[("gate", Replay(f"{path}.ffn.gate", ("out0", "out1")))])

        def forward(self, x):
            for hc in ("hc_attn", "hc_ffn"):  # mHC intermediates: not module outputs, recorded here
                for o in ("y", "post", "comb"):
                    dsv4.torch.record(f"{hc}/{o}", gold(f"{self.path}.{hc}/{o}"), module=self)
            self.attn(self.attn_norm(gold(f"{self.path}.hc_attn/y")))
            dsv4.torch.record("kv", gold(f"{self.path}.attn/kv"), module=self.attn)
            dsv4.torch.record("hc_attn/out", gold(f"{self.path}.hc_attn/out"), module=self)
            self.ffn(self.ffn_norm(gold(f"{self.path}.hc_ffn/y")))
            return gold(f"{self.path}/out")

    def make_head(path):  # computed from the exported weight, or replayed without one
        return Replay(path) if head_weight is None else Head(head_weight)

    class MtpBlock(Block):
        def __init__(self, path):
            super().__init__(path)
            self.norm = Replay(f"{path}.norm")
            self.head = make_head(f"{path}.head")  # an own instance: named_modules lists a shared one once

        def forward(self, h):
            dsv4.torch.record("in", gold(f"{self.path}/in"), module=self)
            out = super().forward(h)
            dsv4.torch.record("hc_head/out", gold(f"{self.path}.hc_head/out"), module=self)
            self.norm()
            self.head(gold(f"{self.path}.norm/out"))
            return out

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = Replay("embed")
            self.layers = nn.ModuleList(Block(f"layers.{i}") for i in range(cfg["n_layers"]))
            self.norm = Replay("norm")
            self.head = make_head("head")
            self.mtp = nn.ModuleList(MtpBlock(f"mtp.{i}") for i in range(cfg["n_mtp_layers"]))

        def forward(self, tokens, start_pos):
            ctx.step = "prefill" if start_pos == 0 else f"decode{start_pos - PROMPT}"
            h = self.embed(tokens)
            for layer in self.layers:
                h = layer(h)
            dsv4.torch.record("hc_head/out", gold("hc_head/out"))
            self.norm(h)
            logits = self.head(gold("norm/out"))
            if gold("mtp.0/in") is not None:
                self.mtp[0](h)
            return logits

    return Transformer()


def recovered_norm_weights(golden, path):
    """attn_norm's weight from the golden itself (when no export exists): out = y·rsqrt(mean y² + eps)·w
    in exact arithmetic, so w_j = out_ij / (y_ij·r_i) at the row where |y_ij| is largest, rounded to bf16."""
    eps = float(golden.config["norm_eps"])
    y = golden.exact(f"prefill/{path}.hc_attn/y")[0]
    out = golden.exact(f"prefill/{path}.attn_norm/out")[0]
    r = 1 / np.sqrt((y * y).mean(-1, keepdims=True) + eps)
    i = np.abs(y).argmax(0)
    j = np.arange(y.shape[1])
    w = out[i, j] / (y[i, j] * r[i, 0])
    return dsv4.BF16.from_float(w).to_float32().astype(np.float64)


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = None

    def setUp(self):
        self.bin = binary_or_skip(self)
        torch_or_skip(self)
        self.d = tmpdir(self)
        d, b = self.d, self.bin

        def run(*args):
            p = subprocess.run([b, *map(str, args)], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, f"dsv4 {' '.join(map(str, args))}: {p.stderr}")

        gen = ["golden", "generate", "--config", CONFIG, "--prompt-len", PROMPT, "--decode-steps", DECODE,
               "--out", d / "g.h5"]
        self.opts = {}
        export_rc, export_help = help_of(b, "weights", "export")
        if export_rc == 0 and "--naming" in export_help:  # (an unknown subcommand prints the main help)
            run("weights", "export", "--config", CONFIG, "--seed", SEED, "--naming", "official", "--out", d / "w")
            weights = dsv4.read_safetensors(d / "w" / "model.safetensors")
            c_rc, c_help = help_of(b, "certify")
            d_rc, d_help = help_of(b, "diff")
            if "--weights" in c_help and "--weights" in d_help:
                run(*gen, "--weights", d / "w" / "model.safetensors")
                self.opts = {"weights": d / "w" / "model.safetensors"}
                self.how = "weights exported by `dsv4 weights export`; golden generated from them (--weights)"
            else:
                run(*gen, "--seed", SEED)
                self.how = ("weights exported by `dsv4 weights export`; golden generated with --seed (certify/diff "
                            "take no --weights yet: the export holds the same weights)")
            self.golden = dsv4.Golden(d / "g.h5")
            self.addCleanup(self.golden.close)
            blocks = sorted({e.module[:-len(".attn_norm")] for e in self.golden.entries.values()
                             if e.module.endswith(".attn_norm")})
            self.norms = {p: weights[f"{p}.attn_norm.weight"].to_float32().astype(np.float64) for p in blocks}
            self.head = weights["head.weight"].to_float32().astype(np.float64)
        else:
            run(*gen, "--seed", SEED)
            self.how = "no `dsv4 weights export` in this binary: golden generated with --seed, weights recovered"
            self.golden = dsv4.Golden(d / "g.h5")
            self.addCleanup(self.golden.close)
            blocks = sorted({e.module[:-len(".attn_norm")] for e in self.golden.entries.values()
                             if e.module.endswith(".attn_norm")})
            self.norms = {p: recovered_norm_weights(self.golden, p) for p in blocks}
            self.head = None
        note(self.how)

    def record(self, buggy_layer=None, path="cand.npz"):
        model = engine(self.golden, self.norms, self.head, buggy_layer)
        rec = dsv4.torch.Recorder(model, golden=self.golden)  # hooks on the golden's module names
        self.addCleanup(rec.remove)
        tokens = torch.from_numpy(self.golden.tokens)
        with torch.no_grad():
            model(tokens[:, :PROMPT], 0)  # step prefill, then decode0, decode1 (auto steps)
            for i in range(DECODE):
                model(tokens[:, PROMPT + i:PROMPT + i + 1], PROMPT + i)
        rec.remove()
        self.assertEqual(rec.unmatched(self.golden), [])
        rec.save(self.d / path, golden=self.golden)
        return rec, self.d / path

    def test_certify_passes_then_a_bug_in_one_module_fails_and_diff_blames_it(self):
        rec, cand = self.record()
        # the computed modules really are computed: bf16 values near, not equal to, the exact ones
        n = f"prefill/layers.{BUGGY_LAYER}.attn_norm/out"
        got = rec.tensors[n]
        want = self.golden.exact(n)
        self.assertEqual(got.dtype, np.float32)
        self.assertFalse(np.array_equal(got.astype(np.float64), want))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        if self.head is not None:  # so is the head: fp32 logits from the exported weight
            h = rec.tensors["decode1/head/out"]
            self.assertEqual(h.dtype, np.float32)
            np.testing.assert_allclose(h, self.golden.exact("decode1/head/out").reshape(h.shape), rtol=1e-6, atol=1e-6)
        # every golden output but the decision data (scores, margins) is in the dump
        missing = [x for x in self.golden.names if x not in rec.tensors and self.golden.role(x) != "decision"]
        self.assertEqual(missing, [])

        # (certify's local verdicts recompute every module as diff does: its PASS covers diff's)
        ok = dsv4.certify(self.golden, cand, **self.opts)
        self.assertEqual(ok.returncode, 0, str(ok))
        self.assertEqual(ok.report["verdict"], "PASS")

        _, bad = self.record(buggy_layer=BUGGY_LAYER, path="bad.npz")
        fail = dsv4.certify(self.golden, bad, **self.opts)
        self.assertEqual(fail.returncode, 1, str(fail))
        failing = [t["name"] for t in fail.report["tensors"] + fail.report["sets"] if t["verdict"] != "PASS"]
        self.assertIn(f"prefill/layers.{BUGGY_LAYER}.attn_norm/out", failing)
        # nothing else fails but the bad norm and the attention reading it (judged on its own input)
        self.assertEqual([n for n in failing if not n.split("/")[1].startswith(f"layers.{BUGGY_LAYER}.attn")], [])
        blame = dsv4.diff(self.golden, bad, **self.opts)
        self.assertEqual(blame.returncode, 1, str(blame))
        first = (blame.report["first_divergent_step"], blame.report["first_divergent_module"])
        self.assertEqual(first, ("prefill", f"layers.{BUGGY_LAYER}.attn_norm"), json.dumps(blame.report)[:2000])
        note(f"{self.how}; certify PASS then FAIL, diff blames {first[1]} in {first[0]}")


if __name__ == "__main__":
    unittest.main()
