"""
The type hints of l4lb hold: mypy with the mypy-zope plugin is clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_clean() -> None:
    """mypy (configured in setup.cfg) reports no error in l4lb/.

    mypy runs under C{L4LB_MYPY_PYTHON} when set: C{script/test-pypy} points
    it at the CPython venv, since mypy does not run on PyPy 3.9 (its
    compiled runtime C{librt} has no PyPy build) and the check is of the
    source, whichever interpreter runs the tests."""
    python = os.environ.get("L4LB_MYPY_PYTHON") or sys.executable
    result = subprocess.run(
        [python, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
