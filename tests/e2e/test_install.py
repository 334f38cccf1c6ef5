"""
The documented ways of installing l4lb leave twistd able to find it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_compat_editable_install_keeps_the_plugin_visible(tmp_path: Path) -> None:
    """An editable install in compatibility mode (the one README.md gives
    for development) puts the source tree on sys.path, so that
    `twistd --help` lists l4lb and imports it from the source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
            "--disable-pip-version-check", "-e", str(ROOT),
            # PyPy 3.9 has cryptography wheels only up to 43: never build one.
            "--only-binary", "cryptography",
            "--config-settings", "editable_mode=compat",
        ],
        capture_output=True, text=True, timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    help_text = subprocess.run(
        [str(venv / "bin" / "twistd"), "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert "l4lb" in help_text.stdout
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import l4lb; print(l4lb.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert where.stdout.strip() == str(ROOT / "l4lb" / "__init__.py")
