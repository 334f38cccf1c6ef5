"""
C{l4lb ctl --output FILE}: the answer replaces the file in one step.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from l4lb.cli import main


def serve_once(path: str, answer: bytes) -> threading.Thread:
    """
    A UNIX socket at C{path} that reads one command line, sends C{answer}
    and closes, in a thread (bounded by a timeout).
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(10)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_output_replaces_the_file(tmp_path: Path) -> None:
    """
    The answer is written to the file given, which it replaces whole; no
    temporary file is left beside it.
    """
    path = str(tmp_path / "admin.sock")
    target = tmp_path / "servers.state"
    target.write_text("old content that is longer than the answer\n")
    thread = serve_once(path, b"1\n# be_id be_name\n")
    code = main(["ctl", "--socket", path, "--output", str(target), "show", "servers", "state"])
    thread.join(10)
    assert code == 0
    assert target.read_text() == "1\n# be_id be_name\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.sock", "servers.state"]


def test_output_untouched_when_the_socket_is_unreachable(tmp_path: Path) -> None:
    """
    When the socket cannot be reached, C{l4lb ctl} exits 1 and the file
    keeps what it had.
    """
    target = tmp_path / "servers.state"
    target.write_text("kept\n")
    code = main(
        ["ctl", "--socket", str(tmp_path / "none.sock"), "--output", str(target), "help"]
    )
    assert code == 1
    assert target.read_text() == "kept\n"
