"""dsv4.torch.Recorder on small torch module trees: official names, tuple outputs, values recorded
from inside a forward, steps, name maps, dtypes (bf16 bits), the golden's shapes, and its errors."""

import unittest

import numpy as np

from support import COMMITTED_GOLDEN, binary_or_skip, tmpdir, torch_or_skip

try:
    import torch
    from torch import nn
except ImportError:  # the tests skip
    torch = None
    nn = None


def tree():
    """layers.0 with an RMSNorm-like attn_norm, a gate returning (weights, ids), an hc record."""

    class Norm(nn.Module):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    class Gate(nn.Module):
        def forward(self, x):
            w, i = torch.topk(x, 2, dim=-1)
            return w, i

    class Ffn(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = Gate()

        def forward(self, x):
            w, i = self.gate(x)
            return x * w.sum(-1, keepdim=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = Norm()
            self.ffn = Ffn()

        def forward(self, x):
            import dsv4.torch

            dsv4.torch.record("hc_attn/post", x[..., :2].float(), module=self)
            return self.ffn(self.attn_norm(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block()])

        def forward(self, x):
            return self.layers[0](x)

    return Model()


class RecorderTest(unittest.TestCase):
    def setUp(self):
        self.dt = torch_or_skip(self)

    def test_official_names_tuples_inside_records_and_steps(self):
        m = tree()
        rec = self.dt.Recorder(m, modules=["layers.0", "layers.0.attn_norm", "layers.0.ffn", "layers.0.ffn.gate"])
        self.addCleanup(rec.remove)
        x = torch.randn(1, 3, 8, dtype=torch.float64)
        m(x)
        m(x[:, :1])
        want = [f"{s}/{n}" for s in ("prefill", "decode0") for n in (
            "layers.0.hc_attn/post", "layers.0.attn_norm/out", "layers.0.ffn.gate/out0", "layers.0.ffn.gate/out1",
            "layers.0.ffn/out", "layers.0/out")]
        self.assertEqual(rec.names, want)
        norm = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        np.testing.assert_array_equal(rec.tensors["prefill/layers.0.attn_norm/out"], norm.numpy())
        self.assertEqual(rec.tensors["prefill/layers.0.ffn.gate/out1"].dtype, np.int64)
        np.testing.assert_array_equal(rec.tensors["prefill/layers.0.ffn.gate/out1"], torch.topk(norm, 2)[1].numpy())
        self.assertEqual(rec.tensors["decode0/layers.0/out"].shape, (1, 1, 8))
        self.assertEqual(rec.tensors["prefill/layers.0.hc_attn/post"].dtype, np.float32)

    def test_explicit_steps_duplicates_and_outside_a_step(self):
        m = tree()
        rec = self.dt.Recorder(m, modules=["layers.0.attn_norm"])
        self.addCleanup(rec.remove)
        x = torch.randn(1, 2, 8)
        with self.assertRaisesRegex(RuntimeError, "outside a step"):
            m.layers[0](x)  # not the root: no step started
        with rec.step("decode3"):
            m.layers[0](x)
        self.assertIn("decode3/layers.0.attn_norm/out", rec.names)
        with rec.step("decode3"):
            with self.assertRaisesRegex(ValueError, "recorded twice"):
                m.layers[0](x)
        with self.assertRaises(ValueError):
            rec.record("layers.0/out/extra/x", x)
        with self.assertRaises(ValueError):
            with rec.step("warmup"):
                pass

    def test_bf16_is_recorded_as_its_bits(self):
        m = tree()
        x = torch.randn(1, 2, 8).to(torch.bfloat16)
        want = m.layers[0].attn_norm(x).float().numpy()  # before the recorder is attached
        rec = self.dt.Recorder(m, modules=["layers.0.attn_norm"])
        self.addCleanup(rec.remove)
        m(x)
        got = rec.tensors["prefill/layers.0.attn_norm/out"]
        self.assertIsInstance(got, self.dt.BF16)
        np.testing.assert_array_equal(got.to_float32(), want)
        d = tmpdir(self)
        rec.save(d / "c.npz")
        z = np.load(d / "c.npz")
        self.assertEqual(z["prefill/layers.0.attn_norm/out.bf16"].dtype, np.uint16)

    def test_name_maps(self):
        m = tree()
        rec = self.dt.Recorder(m, name_map={"layers.0": "layers.5", "layers.0.ffn.gate": ["layers.5.ffn.gate/out0", None],
                                            "layers.0.attn_norm": "layers.5.attn_norm/out"})
        self.addCleanup(rec.remove)
        m(torch.randn(1, 2, 8))
        self.assertEqual(rec.names, ["prefill/layers.5.hc_attn/post", "prefill/layers.5.attn_norm/out",
                                     "prefill/layers.5.ffn.gate/out0", "prefill/layers.5/out"])
        rec.remove()
        rec2 = self.dt.Recorder(m, name_map=lambda n: "blk.7" if n == "layers.0" else None)
        self.addCleanup(rec2.remove)
        m(torch.randn(1, 2, 8))
        self.assertEqual(rec2.names, ["prefill/blk.7.hc_attn/post", "prefill/blk.7/out"])
        with self.assertRaisesRegex(KeyError, "does not have"):
            self.dt.Recorder(m, name_map={"layers.9.attn": "layers.9.attn"})

    def test_without_golden_or_map_the_output_table_names_the_modules(self):
        binary_or_skip(self)
        m = tree()
        m.layers[0].add_module("mystery", nn.Identity())  # not an official module path
        rec = self.dt.Recorder(m)  # official module paths from `dsv4 outputs`
        self.addCleanup(rec.remove)
        m.layers[0].mystery(torch.zeros(1))
        m(torch.randn(1, 2, 8))
        self.assertEqual(rec.names, [f"prefill/{n}" for n in (
            "layers.0.hc_attn/post", "layers.0.attn_norm/out", "layers.0.ffn.gate/out0", "layers.0.ffn.gate/out1",
            "layers.0.ffn/out", "layers.0/out")])

    def test_removed_recorders_record_nothing(self):
        m = tree()
        rec = self.dt.Recorder(m, modules=["layers.0"])
        rec.remove()
        m(torch.randn(1, 2, 8))
        self.assertEqual(rec.names, [])

    def test_save_takes_the_golden_shapes(self):
        import dsv4

        g = dsv4.Golden(COMMITTED_GOLDEN)
        self.addCleanup(g.close)
        m = nn.Module()
        rec = self.dt.Recorder(m, modules=[])
        self.addCleanup(rec.remove)
        gate = g.exact("prefill/layers.3.ffn.gate/out1")  # [1, 6, 2]
        block = g.exact("prefill/layers.3/out")  # [1, 6, 1024] = [b, s, hc * d]
        with rec.step("prefill"):
            rec.record("layers.3.ffn.gate/out1", torch.from_numpy(gate.reshape(6, 2)))  # official MoE: [b*s, k]
            rec.record("layers.3/out", torch.from_numpy(block.reshape(1, 6, 4, 256)))  # official Block: [b, s, hc, d]
            rec.record("layers.3.ffn/out", torch.zeros(1, 6, 255))
        a = rec.arrays(golden=None)
        self.assertEqual(a["prefill/layers.3/out"].shape, (1, 6, 1024))
        self.assertEqual(a["prefill/layers.3.ffn.gate/out1"].shape, (6, 2))
        with self.assertRaisesRegex(ValueError, "layers.3.ffn/out"):
            rec.arrays(golden=g)
        del rec.tensors["prefill/layers.3.ffn/out"]
        a = rec.arrays(golden=g)
        self.assertEqual(a["prefill/layers.3.ffn.gate/out1"].shape, (1, 6, 2))
        np.testing.assert_array_equal(a["prefill/layers.3/out"], block)


if __name__ == "__main__":
    unittest.main()
