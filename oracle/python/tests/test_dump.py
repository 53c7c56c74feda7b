"""dsv4.write_dump writes every layout certify reads, bf16 by each format's convention, and the
binary agrees: the golden's own exact values PASS in every format, one perturbed tensor FAILs."""

import json
import unittest

import h5py
import numpy as np

import dsv4
from dsv4.dump import BF16, read_safetensors, safetensors_header
from support import COMMITTED_GOLDEN, binary_or_skip, tmpdir


def sample():
    rng = np.random.default_rng(7)
    return {
        "prefill/layers.0.attn/out": rng.standard_normal((1, 3, 4)),
        "prefill/layers.0.hc_attn/post": rng.standard_normal((1, 3, 4)).astype(np.float32),
        "prefill/layers.0.ffn.gate/out1": np.array([[[1, 5], [0, 7], [-1, 2]]], dtype=np.int32),
        "prefill/layers.0.attn_norm/out": BF16.from_float(rng.standard_normal((1, 3, 4))),
    }


class Bf16(unittest.TestCase):
    def test_rounding_to_nearest_even(self):
        x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.5, 1e-40, np.inf], dtype=np.float32)
        bits = BF16.from_float(x).bits
        self.assertEqual(bits.tolist(), [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x0001, 0x7F80])
        np.testing.assert_array_equal(BF16.from_float(x).to_float32()[[0, 3, 5]], x[[0, 3, 5]])
        self.assertTrue(np.isnan(BF16.from_float(np.array([np.nan], np.float32)).to_float32()[0]))
        with self.assertRaises(TypeError):
            BF16(np.zeros(2, np.int16))


class Layouts(unittest.TestCase):
    def check(self, name_to_array):
        t = sample()
        for n, a in t.items():
            got = name_to_array[n]
            if isinstance(a, BF16):
                self.assertEqual(got.dtype, np.uint16, n)
                np.testing.assert_array_equal(got, a.bits, err_msg=n)
            else:
                want = a.astype(np.int64) if a.dtype.kind == "i" else a
                self.assertEqual(got.dtype, want.dtype, n)
                np.testing.assert_array_equal(got, want, err_msg=n)

    def test_npz(self):
        p = tmpdir(self) / "c.npz"
        dsv4.write_dump(p, sample())
        z = np.load(p)
        self.assertIn("prefill/layers.0.attn_norm/out.bf16", z.files)
        self.check({k.removesuffix(".bf16"): z[k] for k in z.files})

    def test_h5(self):
        p = tmpdir(self) / "c.h5"
        dsv4.write_dump(p, sample())
        with h5py.File(p, "r") as f:
            d = f["prefill/layers.0.attn_norm/out"]
            self.assertEqual(d.attrs["dtype"], b"bfloat16")
            self.check({n: f[n][()] for n in sample()})

    def test_safetensors(self):
        p = tmpdir(self) / "c.safetensors"
        dsv4.write_dump(p, sample())
        h = safetensors_header(p)
        self.assertEqual(h["prefill/layers.0.attn_norm/out"]["dtype"], "BF16")
        self.assertEqual(h["prefill/layers.0.ffn.gate/out1"]["dtype"], "I64")
        r = read_safetensors(p)
        self.check({n: (a.bits if isinstance(a, BF16) else a) for n, a in r.items()})

    def test_directory(self):
        p = tmpdir(self) / "dump"
        dsv4.write_dump(p, sample())
        self.assertTrue((p / "prefill" / "layers.0.attn_norm" / "out.bf16.npy").is_file())
        self.check({n: np.load(p / (n + (".bf16.npy" if n.endswith("attn_norm/out") else ".npy"))) for n in sample()})

    def test_refused(self):
        d = tmpdir(self)
        with self.assertRaises(ValueError):
            dsv4.write_dump(d / "x.npz", {"prefill/a/out.bf16": np.zeros(2)})
        with self.assertRaises(TypeError):
            dsv4.write_dump(d / "x.npz", {"prefill/a/out": np.zeros(2, dtype=bool)})
        self.assertFalse((d / "x.npz").exists())


class CertifyReadsThem(unittest.TestCase):
    """The binary judges what the writer wrote: exact values pass, a perturbed tensor fails."""

    def setUp(self):
        binary_or_skip(self)
        self.g = dsv4.Golden(COMMITTED_GOLDEN)
        self.addCleanup(self.g.close)

    def test_every_layout_passes_and_a_perturbation_fails(self):
        d = tmpdir(self)
        exact = self.g.arrays("exact")
        for fmt, path in (("npz", d / "c.npz"), ("h5", d / "c.h5"), ("safetensors", d / "c.safetensors"),
                          ("dir", d / "c")):
            tensors = {n: (a.astype(np.float32) if fmt == "safetensors" and a.dtype == np.float64 else a)
                       for n, a in exact.items()}
            dsv4.write_dump(path, tensors)
            r = dsv4.certify(self.g, path, end_to_end_only=True)
            self.assertEqual(r.returncode, 0, f"{fmt}: {r}")
            self.assertIsNotNone(r.report, fmt)
        # before the golden's first decision flip, end to end is decisive: exactly that tensor fails
        bad = dict(exact)
        name = "prefill/layers.0.ffn/out"
        bad[name] = exact[name] * 1.05
        dsv4.write_dump(d / "bad.npz", bad)
        r = dsv4.certify(self.g, d / "bad.npz", end_to_end_only=True)
        self.assertEqual(r.returncode, 1, str(r))
        failing = [t["name"] for t in r.report["tensors"] + r.report["sets"] if t["verdict"] != "PASS"]
        self.assertEqual(failing, [name], json.dumps(r.report)[:1000])


if __name__ == "__main__":
    unittest.main()
