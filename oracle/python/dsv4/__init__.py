"""dsv4 — Python access to the dsv4 DeepSeek-V4 reference oracle (oracle/python/README.md).

* :class:`Golden` reads a golden file (names, shapes, dtypes, exact/official arrays, manifest, config);
* :func:`outputs` lists every recorded output in execution order from the C++ output table
  (`dsv4 outputs --json`);
* :func:`certify` / :func:`diff` run the `dsv4` binary and return its exit code and parsed JSON;
* :func:`write_dump` writes a candidate dump (.npz, .h5, .safetensors, a directory of .npy);
* ``dsv4.torch.Recorder`` (needs PyTorch) records a torch model's module outputs as such a dump.
"""

from .cli import BinaryNotFound, Result, certify, diff, find_binary, outputs, outputs_of, run
from .dump import BF16, read_safetensors, safetensors_header, write_dump
from .golden import Entry, Golden

__version__ = "0.1.0"
__all__ = ["BF16", "BinaryNotFound", "Entry", "Golden", "Result", "certify", "diff", "find_binary", "outputs",
           "outputs_of", "read_safetensors", "run", "safetensors_header", "write_dump"]
