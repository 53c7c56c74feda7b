"""dsv4.Golden reads the committed golden as h5py sees it, and refuses what is not a golden; its
names are the ones the C++ output table lists (`dsv4 outputs`), in an order where every module's
inputs come before its outputs."""

import hashlib
import json
import shutil
import subprocess
import unittest

import h5py
import numpy as np

import dsv4
from support import COMMITTED_GOLDEN, binary_or_skip, tmpdir


class GoldenReads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.g = dsv4.Golden(COMMITTED_GOLDEN)
        cls.f = h5py.File(COMMITTED_GOLDEN, "r")

    @classmethod
    def tearDownClass(cls):
        cls.g.close()
        cls.f.close()

    def test_names_are_the_exact_datasets(self):
        direct = set()
        self.f["exact"].visititems(lambda n, o: direct.add(n) if isinstance(o, h5py.Dataset) else None)
        self.assertEqual(set(self.g.names), direct)
        official = set()
        self.f["official"].visititems(lambda n, o: official.add(n) if isinstance(o, h5py.Dataset) else None)
        self.assertEqual(official, direct)
        self.assertGreater(len(direct), 100)

    def test_arrays_shapes_dtypes_roles_match_h5py(self):
        manifest = json.loads(self.f["manifest"][()].decode())
        listed = {d["path"]: d for d in manifest["datasets"]}
        for n in self.g.names:
            for mode, read in (("exact", self.g.exact), ("official", self.g.official)):
                a = read(n)
                b = self.f[f"{mode}/{n}"][()]
                self.assertEqual(a.dtype, b.dtype, n)
                np.testing.assert_array_equal(a, b, err_msg=n)
                self.assertEqual(tuple(b.shape), self.g.shape(n), n)
                self.assertEqual(np.dtype(listed[f"{mode}/{n}"]["dtype"]), self.g.dtype(n), n)
            self.assertEqual(self.g.role(n), listed["exact/" + n]["role"], n)
        # ids are int64 and discrete; margins and scores are decision data
        self.assertEqual(self.g.dtype("prefill/layers.0.ffn.gate/out1"), np.int64)
        self.assertEqual(self.g.role("prefill/layers.0.ffn.gate/out1"), "discrete")
        self.assertEqual(self.g.role("prefill/layers.2.attn.indexer/margin"), "decision")

    def test_manifest_config_inputs(self):
        manifest = json.loads(self.f["manifest"][()].decode())
        self.assertEqual(self.g.config, manifest["config"])
        self.assertEqual(self.g.config["dsv4_name"], "tiny")
        np.testing.assert_array_equal(self.g.tokens, self.f["inputs/tokens"][()])
        self.assertEqual(self.g.step_names, ["prefill", "decode0", "decode1"])
        np.testing.assert_array_equal(self.g.input("start_pos"), [s["start_pos"] for s in self.g.steps])
        self.assertEqual(self.g.weights["seed"], "1")
        tol = self.g.tolerance("prefill/layers.2.attn/out")
        self.assertEqual(tol, manifest["tolerance"]["tensors"]["prefill/layers.2.attn/out"])
        self.assertEqual(self.g.entry("prefill/head/out").official_grid, "fp32")
        self.assertEqual(self.g.entry("prefill/layers.2.attn/out").official_grid, "bf16")
        self.assertEqual(self.g.verify_hashes(), [])
        with self.assertRaises(KeyError):
            self.g.exact("prefill/layers.2.attn/nothing")


class GoldenRefuses(unittest.TestCase):
    def test_a_changed_dataset_is_named_by_verify_hashes(self):
        p = tmpdir(self) / "g.h5"
        shutil.copy(COMMITTED_GOLDEN, p)
        with h5py.File(p, "r+") as f:
            d = f["exact/decode0/layers.3.attn/out"]
            a = d[()]
            a[0, 0, 5] += 1e-9
            d[...] = a
        with dsv4.Golden(p) as g:
            self.assertEqual(g.verify_hashes(), ["exact/decode0/layers.3.attn/out"])

    def test_a_changed_manifest_and_a_non_golden_are_refused(self):
        p = tmpdir(self) / "g.h5"
        shutil.copy(COMMITTED_GOLDEN, p)
        with h5py.File(p, "r+") as f:
            text = f["manifest"][()].decode().replace('"batch": 1', '"batch": 2', 1)
            self.assertNotEqual(hashlib.sha256(text.encode()).hexdigest(), f.attrs["manifest_sha256"])
            del f["manifest"]
            f["manifest"] = np.bytes_(text.encode())
        with self.assertRaisesRegex(ValueError, "SHA-256"):
            dsv4.Golden(p)
        q = p.with_name("other.h5")
        with h5py.File(q, "w") as f:
            f["x"] = np.zeros(3)
        with self.assertRaisesRegex(ValueError, "not a dsv4 golden"):
            dsv4.Golden(q)


class NamesComeFromTheOutputTable(unittest.TestCase):
    def setUp(self):
        self.bin = binary_or_skip(self)

    def test_the_golden_holds_exactly_the_listed_outputs_with_their_roles(self):
        with dsv4.Golden(COMMITTED_GOLDEN) as g:
            outs = dsv4.outputs_of(g)
            listed = {o["name"]: o for o in outs}
            self.assertEqual(len(listed), len(outs), "a name listed twice")
            self.assertEqual(set(listed), set(g.names))
            fp32 = 0
            for n, o in listed.items():
                self.assertEqual(o["golden_role"], g.role(n), n)
                grid = g.entry(n).official_grid  # the narrowest grid the official values lie on
                if o["official_dtype"] == "bfloat16":
                    self.assertEqual(grid, "bf16", n)
                elif o["official_dtype"] == "float32":
                    self.assertIn(grid, ("fp32", "bf16"), n)
                    fp32 += grid == "fp32"
                self.assertEqual(g.dtype(n), np.int64 if o["official_dtype"] == "int64" else np.float64, n)
            self.assertGreater(fp32, 50)  # post, comb, gate weights and scores, logits
            self.assertEqual([o["step"] for o in outs][0], "prefill")
            self.assertFalse(listed["prefill/layers.3.ffn.gate/choice_scores"]["recorded"])
            self.assertNotIn("prefill/layers.0.ffn.gate/choice_scores", listed)  # hash-routed layer

    def test_execution_order_inputs_before_outputs(self):
        outs = dsv4.outputs("tiny", 6, 2)
        where = {o["name"]: i for i, o in enumerate(outs)}
        checked = 0
        for i, o in enumerate(outs):
            for inp in o["inputs"]:
                if inp["name"] == "tokens" or inp["optional"]:
                    continue
                self.assertIn(inp["name"], where, f"{o['name']} reads {inp['name']}, which is not listed")
                self.assertLess(where[inp["name"]], i, f"{o['name']} listed before its input {inp['name']}")
                checked += 1
        self.assertGreater(checked, 300)
        steps = [o["step"] for o in outs]
        self.assertEqual(steps, sorted(steps, key=lambda s: -1 if s == "prefill" else int(s[6:])))
        ln = next(o for o in outs if o["name"] == "decode0/layers.3.attn_norm/out")
        self.assertEqual(ln["inputs"], [{"name": "decode0/layers.3.hc_attn/y", "optional": False}])
        self.assertEqual(ln["official_dtype"], "bfloat16")

    def test_bad_input_is_one_line_and_exit_2(self):
        for args in (["--config", "no-such-config"], ["--config", "tiny", "--prompt-len", "0"],
                     ["--config", "tiny", "--decode-steps", "-1"], ["--config", "tiny", "--prompt-len", "100000"]):
            p = subprocess.run([self.bin, "outputs", *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, args)
            self.assertEqual(p.stdout, "", args)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, (args, p.stderr))
        p = subprocess.run([self.bin, "outputs", "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("execution order", p.stdout)


if __name__ == "__main__":
    unittest.main()
