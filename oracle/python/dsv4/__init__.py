"""dsv4 — Python access to the dsv4 DeepSeek-V4 reference oracle (oracle/python/README.md).

* :class:`Golden` reads a golden file (names, shapes, dtypes, exact/official arrays, manifest, config);
* :func:`outputs` lists every recorded output in execution order from the C++ output table
  (`dsv4 outputs --json`);
* :func:`certify` / :func:`diff` run the `dsv4` binary and return its exit code and parsed JSON;
* :func:`write_dump` writes a candidate dump (.npz, .h5, .safetensors, a directory of .npy);
* ``dsv4.torch.Recorder`` (needs PyTorch) records a torch model's module outputs as such a dump;
* :func:`run_compositions` runs an engine callable over a reproducibility audit's batch compositions
  and writes the dumps with their manifests; :func:`audit_dumps` runs `dsv4 audit --dumps` on them
  (``dsv4.audit``).
"""

from .audit import audit_dumps, run_compositions, write_manifest
from .cli import BinaryNotFound, Result, certify, diff, find_binary, outputs, outputs_of, run
from .dump import BF16, read_safetensors, safetensors_header, write_dump
from .golden import Entry, Golden

__version__ = "0.1.0"
__all__ = ["BF16", "BinaryNotFound", "Entry", "Golden", "Result", "audit_dumps", "certify", "diff", "find_binary",
           "outputs", "outputs_of", "read_safetensors", "run", "run_compositions", "safetensors_header",
           "write_dump", "write_manifest"]
