"""An outside engine certified end to end (issues 13 and 15): `oracle/python/examples/torch_v4.py`, a
clean-room PyTorch V4 forward written from ref/spec, loads the weights `dsv4 weights export` writes,
runs the golden's tokens (prefill, decode steps across a compressed-entry boundary, MTP) in the
official dtype policy with torch's own matmul/softmax/rsqrt/topk, and records every module output
with dsv4.torch.Recorder. Certify PASSes its dump with every golden output required and every
module judged locally; porting bugs injected into one layer FAIL, and diff blames the module they
are in. RMSNorm's eps outside the root stays the documented miss (oracle/compare/README.md)."""

import importlib.util
import json
import subprocess
import tempfile
import unittest
from pathlib import Path

import numpy as np

import dsv4
from support import REPO, binary_or_skip, help_of, note, torch_or_skip

CONFIG, SEED, PROMPT, DECODE = "tiny", 1, 36, 4  # decode p = 36..39: p = 39 completes a ratio-4 entry


def load_engine():
    path = REPO / "oracle" / "python" / "examples" / "torch_v4.py"
    spec = importlib.util.spec_from_file_location("torch_v4", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TorchEngine(unittest.TestCase):
    """One exported checkpoint and one golden for the class (the engine runs once per test)."""

    ready = False

    def setUp(self):
        self.bin = binary_or_skip(self)
        torch_or_skip(self)
        import torch

        torch.set_num_threads(1)
        if not TorchEngine.ready:
            self._prepare()

    def _prepare(self):
        rc, text = help_of(self.bin, "weights", "export")
        if rc != 0 or "--naming" not in text or "--weights" not in help_of(self.bin, "certify")[1]:
            self.skipTest("this dsv4 has no `weights export` / `certify --weights`")
        cls = TorchEngine
        cls._dir = tempfile.TemporaryDirectory(prefix="dsv4-torch-engine-")
        d = cls.d = Path(cls._dir.name)

        def run(*args):
            p = subprocess.run([self.bin, *map(str, args)], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, f"dsv4 {' '.join(map(str, args))}: {p.stderr}")

        run("weights", "export", "--config", CONFIG, "--seed", SEED, "--naming", "official", "--out", d / "w")
        cls.weights_path = d / "w" / "model.safetensors"
        run("golden", "generate", "--config", CONFIG, "--weights", cls.weights_path, "--prompt-len", PROMPT,
            "--decode-steps", DECODE, "--out", d / "g.h5")
        with open(d / "w" / "config.json") as f:
            cls.cfg = json.load(f)
        cls.eng = load_engine()
        cls.weights = cls.eng.load_checkpoint(str(cls.weights_path))
        cls.golden = dsv4.Golden(d / "g.h5")
        cls.ready = True

    @classmethod
    def tearDownClass(cls):
        if cls.ready:
            cls.golden.close()
            cls._dir.cleanup()
            cls.ready = False

    def dump(self, name, bugs=(), bug_layers=None):
        model = self.eng.Transformer(self.weights, self.cfg, "cpu", bugs, bug_layers, max_batch=1)
        rec = self.eng.record_golden(model, self.golden)
        self.assertEqual(rec.unmatched(self.golden), [])
        return rec, rec.save(self.d / f"{name}.npz", golden=self.golden)

    def certify(self, cand):
        return dsv4.certify(self.golden, cand, weights=self.weights_path)

    def diff(self, cand):
        return dsv4.diff(self.golden, cand, weights=self.weights_path)

    def test_clean_engine_certifies_with_every_output_judged_locally(self):
        rec, cand = self.dump("clean")
        g = self.golden
        # complete: every golden output but the decision data (scores, margins), in every step
        missing = [n for n in g.names if n not in rec.tensors and g.role(n) != "decision"]
        self.assertEqual(missing, [])
        self.assertEqual({n.split("/")[0] for n in rec.tensors}, {"prefill"} | {f"decode{i}" for i in range(DECODE)})
        self.assertIn("decode3/layers.2.attn.compressor/out", rec.tensors)  # the decode compressor ran
        self.assertIn("decode2/mtp.0.head/out", rec.tensors)
        # computed, not replayed: the engine's own arithmetic differs from the official values somewhere
        n = "prefill/layers.4.attn/out"
        self.assertFalse(np.array_equal(rec.tensors[n].to_float32().reshape(g.shape(n)), g.official(n)))
        ok = self.certify(cand)
        self.assertEqual(ok.returncode, 0, str(ok))
        rep = ok.report
        self.assertEqual((rep["verdict"], rep["summary"]["missing"]), ("PASS", 0))
        judged = rep["summary"]["tensors_checked"] + rep["summary"]["sets_checked"]
        self.assertEqual(judged, len([n for n in g.names if g.role(n) != "decision"]))
        # every value output is judged locally (recomputed from the engine's own inputs) but the embedding
        no_local = [t["name"] for t in rep["tensors"] if not t["local"]["available"]]
        self.assertEqual(sorted({x.split("/", 1)[1] for x in no_local}), ["embed/out"])
        d = self.diff(cand)
        self.assertEqual(d.returncode, 0, str(d))
        self.assertEqual(d.report["failed_modules"], 0)
        note(f"torch_v4: certify PASS ({rep['summary']['tensors_checked']} tensors, "
             f"{rep['summary']['sets_checked']} sets), diff PASS ({d.report['checked_modules']} module checks)")

    def test_softmax_scale_bug_fails_and_diff_blames_the_attention(self):
        _, cand = self.dump("softmax", bugs=["softmax_scale"], bug_layers=[2])
        bad = self.certify(cand)
        self.assertEqual(bad.returncode, 1, str(bad))
        failing = [t["name"] for t in bad.report["tensors"] + bad.report["sets"] if t["verdict"] != "PASS"]
        self.assertTrue(failing)
        # every failure is in layer 2's attention (the local verdicts judge later modules on their own inputs)
        self.assertEqual([n for n in failing if not n.split("/")[1].startswith("layers.2.attn")], [], failing)
        blame = self.diff(cand)
        self.assertEqual(blame.returncode, 1, str(blame))
        self.assertEqual(blame.report["first_divergent_step"], "prefill")
        self.assertTrue(blame.report["first_divergent_module"].startswith("layers.2.attn"),
                        blame.report["first_divergent_module"])
        note(f"softmax scale x(1+1/128) in layer 2: certify FAILs {len(failing)} outputs, first "
             f"{failing[0]}; diff blames {blame.report['first_divergent_module']}")

    def test_other_porting_bugs_are_blamed_on_their_module(self):
        cases = [("comb_untransposed", 3, "layers.3.hc_attn"), ("route_scale_twice", 4, "layers.4.ffn"),
                 ("no_kv_fp8", 1, "layers.1.attn")]
        for bug, layer, module in cases:
            with self.subTest(bug=bug):
                _, cand = self.dump(bug, bugs=[bug], bug_layers=[layer])
                blame = self.diff(cand)
                self.assertEqual(blame.returncode, 1, str(blame))
                self.assertEqual((blame.report["first_divergent_step"], blame.report["first_divergent_module"]),
                                 ("prefill", module))

    def test_rmsnorm_eps_outside_the_root_is_still_the_documented_miss(self):
        # 1/(sqrt(ms) + eps) for (ms + eps)^-1/2 moves the output by ~5e-7 relative at ms ~ 1: below the
        # structure tests' 2^-16 floor (oracle/compare/README.md, Known limits). When this starts to
        # FAIL, the miss is caught: update that paragraph and this test.
        _, cand = self.dump("eps", bugs=["norm_eps_outside"], bug_layers=[2])
        r = self.diff(cand)
        self.assertEqual(r.returncode, 0, str(r))

    def test_short_fp32_decode_outputs_of_a_faithful_engine_pass(self):
        # THE FINDING of this engine (oracle/python/README.md, "An outside engine"): in decode step 13 of
        # prompt 8 (tokens = the seed's, so the golden's first 22), layers.4's gate weights (fp32, 2
        # values) are 1.9 ulp off the exact ones: the logits are bit-identical to the yardstick's own
        # sequential fp32 sum and torch's softplus is within 1 ulp of the correctly rounded one — the
        # libm error the official CUDA stack has too (spec 01 §1.13 item 3). Certify used to allow only
        # 2 x official (2.3e-8) + 1 ulp there and rejected the engine; since short outputs are judged
        # with their family's error scale (oracle/compare/README.md, Tolerance model, "Short outputs")
        # this faithful engine PASSes. The test fails if the pooled yardstick is switched off (with
        # torch 1.13's ulps, which reproduce the reject; other torch builds may not hit it).
        d = self.d
        args = ["golden", "generate", "--config", CONFIG, "--weights", self.weights_path, "--prompt-len", 8,
                "--decode-steps", 14, "--out", d / "g8.h5"]
        p = subprocess.run([self.bin, *map(str, args)], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with dsv4.Golden(d / "g8.h5") as g:
            model = self.eng.Transformer(self.weights, self.cfg, "cpu", max_batch=1)
            rec = self.eng.record_golden(model, g)
            cand = rec.save(d / "c8.npz", golden=g)
            r = dsv4.diff(g, cand, weights=self.weights_path)
        failed = [o for m in r.report["modules"] for o in m.get("outputs", []) if o["verdict"] != "PASS"]
        self.assertEqual(failed, [], failed[:3])
        self.assertEqual(r.returncode, 0, str(r))
        gate = [o for m in r.report["modules"] for o in m.get("outputs", [])
                if o["name"] == "decode13/layers.4.ffn.gate/out0"]
        self.assertEqual(len(gate), 1)
        note(f"decode13/layers.4.ffn.gate/out0 (once a false reject): {gate[0]['reason']}")


if __name__ == "__main__":
    unittest.main()
