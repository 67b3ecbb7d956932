"""Shared by the package's tests: import paths, the independent reference, the smoothd binary, torch."""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Fixtures"
# The tests exercise the source tree, not an installed copy; Fixtures/reference.py is the independent
# NumPy reader that written shards are checked against.
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(FIXTURES))

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def smoothd_binary():
    """(path, None) of the smoothd binary, or (None, why not): $SMOOTHD, else .build/{release,debug}/smoothd."""
    env = os.environ.get("SMOOTHD")
    if env:
        if os.access(env, os.X_OK):
            return env, None
        return None, f"$SMOOTHD={env} is not an executable"
    for build in ("release", "debug"):
        candidate = ROOT / ".build" / build / "smoothd"
        if os.access(candidate, os.X_OK):
            return str(candidate), None
    return None, "no smoothd binary: set $SMOOTHD or build one (swift build)"


def skip_without_binary(test_case):
    """The binary's path, or skip the calling test with the reason (printed in the summary)."""
    path, why = smoothd_binary()
    if path is None:
        print(f"\nskipped: {why}", file=sys.stderr)
        test_case.skipTest(why)
    return path


class TempDirCase(unittest.TestCase):
    """A test case with a fresh temporary directory in self.dir."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()
