"""dsv4.audit: run_compositions writes dumps with manifests that `dsv4 audit --dumps` reads; a
deterministic engine passes; an engine whose sums depend on the batch size fails as batch
variance, blamed on the module where the dependence enters, the rest as consequences."""

import tempfile
import unittest

import numpy as np

import dsv4
import dsv4.audit
from support import binary_or_skip


def toy_engine(batch_dependent_at=None):
    """A two-module "model" under canonical names: layers.0.attn_norm/out = tokens scaled; then
    layers.0.attn/out = a sum over the features. With ``batch_dependent_at``, that module adds a
    rounding-size term that depends on the batch size (a split-K whose split follows the batch)."""
    def engine(batch):
        t = np.asarray(batch, dtype=np.float64)  # [b, s]
        x = np.stack([t / 7.0, t / 11.0, t / 13.0], axis=-1)  # [b, s, 3]
        out = {"prefill/layers.0.attn_norm/out": x}
        y = x.sum(axis=-1, keepdims=True)
        if batch_dependent_at == "layers.0.attn":
            y = y + len(batch) * 1e-12
        out["prefill/layers.0.attn/out"] = y
        out["prefill/layers.0.ffn/out"] = y * 2.0
        return out
    return engine


class AuditDumps(unittest.TestCase):
    def setUp(self):
        self.binary = binary_or_skip(self)
        self.seqs = {"A": [5, 9, 1, 4], "B": [7, 7, 2, 0], "C": [1, 2, 3, 4]}

    def test_deterministic_engine_passes(self):
        with tempfile.TemporaryDirectory() as d:
            paths = dsv4.audit.run_compositions(toy_engine(), self.seqs, d, batch_sizes=(4,), rows=(0, 3))
            self.assertEqual(len(paths), 3 * (2 + 2))
            r = dsv4.audit.audit_dumps(paths, binary=self.binary)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            kinds = {c["kind"] for c in r.report["comparisons"]}
            self.assertEqual(kinds, {"run-to-run nondeterminism", "batch variance"})

    def test_batch_dependent_module_is_blamed(self):
        with tempfile.TemporaryDirectory() as d:
            paths = dsv4.audit.run_compositions(toy_engine("layers.0.attn"), self.seqs, d, batch_sizes=(4,),
                                                rows=(0, 3))
            r = dsv4.audit.audit_dumps(paths, binary=self.binary)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            moved = [c for c in r.report["comparisons"] if c["moved"]]
            self.assertTrue(moved)
            for c in moved:
                self.assertEqual(c["kind"], "batch variance")
                self.assertEqual(c["moved"][0]["name"], "prefill/layers.0.attn/out")
                self.assertEqual(c["moved"][0]["role"], "cause")
                self.assertEqual([m["name"] for m in c["moved"][1:]], ["prefill/layers.0.ffn/out"])
            # Repeats of the sequence alone stay bit-identical: run to run the engine is deterministic.
            same = [c for c in r.report["comparisons"] if c["kind"] == "run-to-run nondeterminism"]
            self.assertTrue(same)
            self.assertTrue(all(not c["moved"] for c in same))

    def test_manifest_is_checked(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(ValueError):
                dsv4.audit.write_manifest(d + "/x.npz", "r", ["A"], schedule="sometimes")


if __name__ == "__main__":
    unittest.main()
