"""
Headless Chromium for the end-to-end tests and the documentation's
screenshots: load a page, keep its DOM and every message its console
printed (a Content-Security-Policy violation, a script error, a resource
that failed), or take a screenshot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import List, Sequence, Tuple

#: A console message in Chromium's log (C{--enable-logging=stderr}).
_CONSOLE = re.compile(r":CONSOLE[:(]")

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars")


def chromium() -> str:
    """
    The path of a headless-capable Chromium.

    @raise AssertionError: When there is none (a test that needs it fails,
        it does not skip).
    """
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("a headless browser is needed: apt-get install chromium")


def load(url: str, extra: Sequence[str] = (), timeout: float = 90.0) -> Tuple[str, List[str]]:
    """
    Load C{url} and return its DOM once loaded and the console messages
    Chromium logged meanwhile.
    """
    done = subprocess.run(
        [chromium(), *_FLAGS, "--enable-logging=stderr", "--v=0", *extra, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    console = [line for line in done.stderr.splitlines() if _CONSOLE.search(line)]
    return done.stdout, console


def screenshot(url: str, path: str, width: int, height: int, timeout: float = 90.0) -> List[str]:
    """
    Save a PNG of C{url} at C{width} x C{height} pixels to C{path}; return
    the console messages logged meanwhile.
    """
    done = subprocess.run(
        [chromium(), *_FLAGS, "--enable-logging=stderr", "--v=0",
         f"--window-size={width},{height}", f"--screenshot={path}", url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return [line for line in done.stderr.splitlines() if _CONSOLE.search(line)]
