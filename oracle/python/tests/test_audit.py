"""dsv4.audit: run_compositions runs an engine callable over the audit's compositions (alone and
repeated, a prefill of the whole sequence, rows of batches with random companions) and writes
dumps with manifests that `dsv4 audit --dumps` reads. A deterministic engine passes; an engine
whose sum order follows the batch size fails as batch variance, one whose decode steps sum in
another order as prefill/decode variance — each blamed on the module where the dependence enters,
the later modules as consequences."""

import json
import os
import unittest

import numpy as np

import dsv4
import dsv4.audit
from support import binary_or_skip, tmpdir

VOCAB = 1000
LAYERS = 2
GUILTY = "layers.1.attn"


def toy_engine(dependence=None):
    """A numpy "model" under canonical names, fp32, position by position: embed/out = features of
    the token [b, s, 32]; per layer: attn_norm/out = x / 2, attn/out = 4 heads each summing 8 terms,
    ffn/out = 3 · attn, layers.L/out = the next layer's input. Every term is summed one after
    another — except in layers.1.attn with ``dependence``: "batch" adds the 8 terms as two partial
    sums of 4 when the batch size is even (a split-K chosen by the batch size), "phase" adds them
    in reverse order in the decode steps (a decode kernel of its own)."""

    def heads(x, split):
        t = x.reshape(*x.shape[:-1], 4, 8)  # [b, s, 4 heads, 8 terms]
        order = range(7, -1, -1) if split == "reverse" else range(8)
        if split == "pairs":
            lo, hi = t[..., 0], t[..., 4]
            for j in range(1, 4):
                lo, hi = lo + t[..., j], hi + t[..., 4 + j]
            return lo + hi
        acc = np.zeros(t.shape[:-1], dtype=np.float32)
        for j in order:
            acc = acc + t[..., j]
        return acc

    def engine(tokens, prefill_len):
        b, length = tokens.shape
        k = np.arange(1, 33, dtype=np.float32)
        feats = np.sin(tokens[..., None].astype(np.float32) * np.float32(0.37) * k).astype(np.float32)
        steps = [("prefill", 0, prefill_len)] + [(f"decode{i}", p, p + 1) for i, p in enumerate(range(prefill_len,
                                                                                                  length))]
        out = {}
        for step, lo, hi in steps:
            x = feats[:, lo:hi]
            out[f"{step}/embed/out"] = x
            for layer in range(LAYERS):
                m = f"layers.{layer}"
                n = x / np.float32(2)
                split = None
                if m + ".attn" == GUILTY and dependence == "batch" and b % 2 == 0:
                    split = "pairs"
                if m + ".attn" == GUILTY and dependence == "phase" and step != "prefill":
                    split = "reverse"
                a = heads(n, split)  # [b, s, 4]
                f = a * np.float32(3)
                y = x + np.repeat(f, 8, axis=-1)
                out.update({f"{step}/{m}.attn_norm/out": n, f"{step}/{m}.attn/out": a, f"{step}/{m}.ffn/out": f,
                            f"{step}/{m}/out": y})
                x = y
        return out

    return engine


class RunCompositions(unittest.TestCase):
    def setUp(self):
        self.binary = binary_or_skip(self)
        rng = np.random.default_rng(7)
        # 20 tokens, 2 decode steps: positions 18-19, above tiny's window_size - 1 = 15 (spec 02 §2.11.4).
        self.seqs = {"A": rng.integers(0, VOCAB, 20).tolist(), "B": rng.integers(0, VOCAB, 20).tolist()}

    def manifests(self, paths):
        out = {}
        for p in paths:
            with open(p + ".audit.json") as f:
                out[os.path.basename(p)] = json.load(f)
        return out

    def test_full_matrix_of_a_deterministic_engine_passes(self):
        d = tmpdir(self)
        paths = dsv4.audit.run_compositions(toy_engine(), {"A": self.seqs["A"]}, d, vocab_size=VOCAB)
        m = self.manifests(paths)
        # dsv4 audit --full's compositions: 1 + 3 alone, the prefill, batch 4 rows 0 3, 7 rows 0 3, 64 rows 0 3 63.
        self.assertEqual(sorted(m), sorted(
            ["r0-A-alone-0.npz", "r0-A-alone-1.npz", "r0-A-alone-2.npz", "r0-A-alone-3.npz", "r0-A-prefill.npz",
             "r0-A-batch4-row0.npz", "r0-A-batch4-row3.npz", "r0-A-batch7-row0.npz", "r0-A-batch7-row3.npz",
             "r0-A-batch64-row0.npz", "r0-A-batch64-row3.npz", "r0-A-batch64-row63.npz"]))
        self.assertEqual(m["r0-A-batch64-row63.npz"]["sequences"], [None] * 63 + ["A"])
        self.assertEqual(m["r0-A-prefill.npz"], {"run": "r0", "sequences": ["A"], "schedule": "prefill"})
        self.assertEqual(m["r0-A-alone-0.npz"]["schedule"], "incremental")
        with np.load(os.path.join(d, "r0-A-batch7-row3.npz")) as z:
            comp = z["prefill/embed/out"]
            self.assertEqual(comp.shape, (7, 18, 32))
            self.assertEqual(z["decode1/layers.1/out"].shape, (7, 1, 32))
            self.assertEqual(len({comp[k].tobytes() for k in range(7)}), 7)  # random companions, all distinct
        r = dsv4.audit.audit_dumps(paths, binary=self.binary)
        self.assertEqual(r.returncode, 0, r)
        kinds = [c["kind"] for c in r.report["comparisons"]]
        self.assertEqual(sorted(set(kinds)), ["batch variance", "prefill/decode variance",
                                              "run-to-run nondeterminism"])
        self.assertEqual(len(kinds), 11)
        self.assertTrue(all(c["compared"] > 0 and c["excluded"] == 0 for c in r.report["comparisons"]))

    def test_batch_dependent_engine_fails_as_batch_variance(self):
        d = tmpdir(self)
        paths = dsv4.audit.run_compositions(toy_engine("batch"), self.seqs, d, vocab_size=VOCAB, repeats=1,
                                            batch_sizes=(4, 7), rows=(0, 3))
        self.assertEqual(len(paths), 2 * (2 + 1 + 4))
        r = dsv4.audit.audit_dumps(paths, binary=self.binary)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("batch variance: first tensor whose bits move: prefill/" + GUILTY + "/out", r.stdout)
        by_kind = {}
        for c in r.report["comparisons"]:
            by_kind.setdefault(c["kind"], []).append(c)
        # Even batches split the sum: batch 4 moves at both rows, for both sequences; the odd batch 7
        # sums as alone and stays bit-identical; repeats and the prefill stay bit-identical.
        moved = [c for c in by_kind["batch variance"] if c["moved"]]
        self.assertEqual(sorted((c["sequence"], "batch 4" in c["other"]) for c in moved),
                         [("A", True), ("A", True), ("B", True), ("B", True)])
        for c in moved:
            self.assertEqual(c["moved"][0]["name"], "prefill/" + GUILTY + "/out")
            self.assertEqual(c["moved"][0]["role"], "cause")
            # Later movers are downstream of the cause only (which positions move is up to rounding);
            # layers.0 and the embedding never move.
            later = {x["name"] for x in c["moved"][1:]}
            self.assertLessEqual(later, {f"{s}/{n}" for s in ("prefill", "decode0", "decode1")
                                         for n in ("layers.1.attn/out", "layers.1.ffn/out", "layers.1/out")})
            self.assertTrue({"prefill/layers.1.ffn/out", "prefill/layers.1/out"} <= later)
            self.assertTrue(all(x["role"] == "consequence" for x in c["moved"][1:]))
        self.assertTrue(all(not c["moved"] for c in by_kind["batch variance"] if "batch 7" in c["other"]))
        self.assertTrue(all(not c["moved"] for k in ("run-to-run nondeterminism", "prefill/decode variance")
                            for c in by_kind[k]))

    def test_phase_dependent_engine_fails_as_prefill_decode_variance(self):
        d = tmpdir(self)
        paths = dsv4.audit.run_compositions(toy_engine("phase"), self.seqs, d, vocab_size=VOCAB, repeats=1,
                                            batch_sizes=(4,), rows=(3,))
        r = dsv4.audit.audit_dumps(paths, binary=self.binary, config="tiny")
        self.assertEqual(r.returncode, 1, r)
        moved = [c for c in r.report["comparisons"] if c["moved"]]
        self.assertEqual(sorted(c["sequence"] for c in moved), ["A", "B"])
        for c in moved:
            self.assertEqual(c["kind"], "prefill/decode variance")
            self.assertEqual(c["moved"][0]["name"], "decode0/" + GUILTY + "/out")
        # The same engine judged as a model whose window reaches past position 19: §2.11.4 excludes
        # every decode position, nothing is left to move — and the audit says so.
        r = dsv4.audit.audit_dumps(paths, binary=self.binary, config="v4-flash")
        self.assertEqual(r.returncode, 0, r)
        pd = [c for c in r.report["comparisons"] if c["kind"] == "prefill/decode variance"]
        self.assertTrue(pd and all(c["compared"] == 0 and c["excluded"] > 0 for c in pd))
        self.assertTrue(any("§2.11.4" in n for n in r.report["notes"]))

    def test_bad_arguments_are_refused(self):
        d = tmpdir(self)
        with self.assertRaises(ValueError):
            dsv4.audit.write_manifest(os.path.join(d, "x.npz"), "r", ["A"], schedule="sometimes")
        with self.assertRaises(ValueError):  # random companions without a vocabulary
            dsv4.audit.run_compositions(toy_engine(), self.seqs, d)
        with self.assertRaises(ValueError):  # a run label that is not a file name
            dsv4.audit.run_compositions(toy_engine(), self.seqs, d, vocab_size=VOCAB, run="../x")
        with self.assertRaises(ValueError):  # an engine that drops the batch dimension
            dsv4.audit.run_compositions(lambda t, p: {"prefill/embed/out": np.zeros(3)}, self.seqs, d,
                                        vocab_size=VOCAB, batch_sizes=(4,), rows=(0,))


if __name__ == "__main__":
    unittest.main()
