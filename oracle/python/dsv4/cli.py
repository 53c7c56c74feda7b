"""Run the `dsv4` binary: certify, diff, outputs — each returning the exit code and the parsed JSON.

The binary is found, in order: the ``DSV4_BIN`` environment variable; ``dsv4`` on ``PATH``; the
repository's ``build/bin/dsv4`` (this package's checkout, then the current directory and its parents).
Exit codes are the CLI's: 0 success, 1 a check failed, 2 bad input (``stderr`` names it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence


class BinaryNotFound(RuntimeError):
    pass


def find_binary() -> str:
    """The path of the `dsv4` executable (see the module docstring); BinaryNotFound when none."""
    env = os.environ.get("DSV4_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise BinaryNotFound(f"DSV4_BIN={env} is not an executable file")
        return env
    on_path = shutil.which("dsv4")
    if on_path:
        return on_path
    here = Path(__file__).resolve()
    starts = [here.parents[3] if len(here.parents) > 3 else here.parent, Path.cwd()]
    for start in starts:
        for d in [start, *start.parents]:
            cand = d / "build" / "bin" / "dsv4"
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    raise BinaryNotFound("dsv4 binary not found: set DSV4_BIN, put dsv4 on PATH, or build the repository "
                         "(bash .ci/setup makes build/bin/dsv4)")


@dataclass
class Result:
    """What a `dsv4` command did: its exit code, its JSON report (None when it wrote none), its output."""

    returncode: int
    report: Optional[dict]
    stdout: str
    stderr: str
    args: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"dsv4 exit {self.returncode}: {' '.join(self.args)}\n{self.stdout}{self.stderr}"


def option_args(opts: dict) -> List[str]:
    """Keyword options as CLI arguments: ``candidate_format="bfloat16"`` -> ``--candidate-format
    bfloat16``; True -> a flag; False/None -> left out; a list -> the values joined by commas."""
    out: List[str] = []
    for k, v in opts.items():
        if v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            out += [flag, ",".join(os.fspath(x) if isinstance(x, os.PathLike) else str(x) for x in v)]
        else:
            out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
    return out


def run(args: Sequence[str], timeout: Optional[float] = None, binary: Optional[str] = None) -> Result:
    """Run ``dsv4 <args>``; the Result has no report."""
    cmd = [binary or find_binary(), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, None, p.stdout, p.stderr, cmd)


def _path(x) -> str:
    return getattr(x, "path", None) or os.fspath(x)  # a Golden, or a path


def _with_json_report(args: List[str], timeout, binary) -> Result:
    with tempfile.TemporaryDirectory(prefix="dsv4-") as d:
        report = os.path.join(d, "report.json")
        r = run([*args, "--json", report], timeout=timeout, binary=binary)
        if os.path.exists(report):
            with open(report) as f:
                r.report = json.load(f)
    return r


def certify(golden, candidate, *, timeout: Optional[float] = None, binary: Optional[str] = None, **opts) -> Result:
    """``dsv4 certify --golden G --candidate C --json <tmp> [options]``: the Result's report is the
    certify report (schema dsv4-certify-report/2); returncode 0 PASS, 1 FAIL, 2 bad input, 4 PARTIAL
    (a golden with exact values of some modules only: the others NOT JUDGED, report["unjudged"];
    ``passed`` is False).
    Options as keywords: ``map="m.json"``, ``require="modules"``, ``candidate_format="bfloat16"``,
    ``end_to_end_only=True``, ``quiet=True``, ... (any flag of `dsv4 certify --help`)."""
    return _with_json_report(["certify", "--golden", _path(golden), "--candidate", os.fspath(candidate),
                              *option_args(opts)], timeout, binary)


def diff(golden, candidate, *, teacher_forced: bool = True, timeout: Optional[float] = None,
         binary: Optional[str] = None, **opts) -> Result:
    """``dsv4 diff --golden G --candidate C --teacher-forced --json <tmp> [options]``: the report
    names ``first_divergent_module``; returncode 0 none diverges, 1 one does, 2 bad input."""
    return _with_json_report(["diff", "--golden", _path(golden), "--candidate", os.fspath(candidate),
                              *option_args({"teacher_forced": teacher_forced, **opts})], timeout, binary)


def outputs(config: str = "tiny", prompt_len: Optional[int] = None, decode_steps: Optional[int] = None, *,
            binary: Optional[str] = None) -> List[dict]:
    """Every output a run records, in execution order, from the C++ output table (`dsv4 outputs
    --json`): dicts with name, step, module, output, site, role, golden_role, official_dtype,
    recorded, localised, decision, inputs [{name, optional}]. RuntimeError on a nonzero exit."""
    r = run(["outputs", "--config", os.fspath(config), "--json",
             *option_args({"prompt_len": prompt_len, "decode_steps": decode_steps})], binary=binary)
    if r.returncode != 0:
        raise RuntimeError(str(r).strip())
    return json.loads(r.stdout)["outputs"]


def outputs_of(golden, *, binary: Optional[str] = None) -> List[dict]:
    """`outputs` for a golden's config (its manifest's, written to a temporary config.json) and
    schedule (its prefill length and number of decode steps)."""
    from .golden import Golden

    g = golden if isinstance(golden, Golden) else Golden(golden)
    steps = g.steps
    with tempfile.TemporaryDirectory(prefix="dsv4-") as d:
        cfg = os.path.join(d, "config.json")
        with open(cfg, "w") as f:
            json.dump({k: v for k, v in g.config.items() if k != "dsv4_name"}, f)
        return outputs(cfg, steps[0]["length"], len(steps) - 1, binary=binary)
