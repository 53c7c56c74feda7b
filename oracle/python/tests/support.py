"""Shared helpers of the dsv4 package tests (plain unittest: no pytest needed)."""

import subprocess
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
COMMITTED_GOLDEN = REPO / "goldens" / "tiny-s1-p6-d2.h5"


def binary_or_skip(test: unittest.TestCase) -> str:
    import dsv4

    try:
        return dsv4.find_binary()
    except dsv4.BinaryNotFound as e:
        test.skipTest(str(e))


def torch_or_skip(test: unittest.TestCase):
    try:
        import torch  # noqa: F401
    except ImportError:
        test.skipTest("PyTorch is not installed (Debian: python3-torch)")
    import dsv4.torch

    return dsv4.torch


def help_of(binary: str, *cmd: str):
    """(exit code, --help text) of a dsv4 subcommand."""
    p = subprocess.run([binary, *cmd, "--help"], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def note(msg: str) -> None:
    """A line in the test log (ctest --output-on-failure / -V shows it)."""
    print(f"[dsv4 python tests] {msg}", flush=True)


def tmpdir(test: unittest.TestCase) -> Path:
    import tempfile

    d = tempfile.TemporaryDirectory(prefix="dsv4-pytest-")
    test.addCleanup(d.cleanup)
    return Path(d.name)


