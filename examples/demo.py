"""
A demo of l4lb balancing real connections on this machine.

It starts two servers on 127.0.0.1:9001 (alpha) and 127.0.0.1:9002 (beta)
that greet with their name and then echo, starts C{twistd l4lb} with
C{etc/demo.ini} (a frontend on 127.0.0.1:8080, round robin, weights 1:2),
opens a few connections through it and shows which server answered, then
keeps running until Ctrl-C (or for C{--seconds N}).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "etc" / "demo.ini"


class Greeter(socketserver.BaseRequestHandler):
    """Say the server's name, then echo until the client closes."""

    def handle(self) -> None:
        name = self.server.name  # type: ignore[attr-defined]
        self.request.sendall(f"hello from {name}\n".encode())
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int) -> None:
        super().__init__(("127.0.0.1", port), Greeter)
        self.name = name


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        greeting = s.makefile("rb").readline().decode().strip()
        s.sendall(b"ping\n")
        s.shutdown(socket.SHUT_WR)
        return greeting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long")
    args = parser.parse_args()

    for name, port in (("alpha", 9001), ("beta", 9002)):
        server = Server(name, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    proc = subprocess.Popen(
        [twistd, "--nodaemon", "--pidfile=", "l4lb", "--config", str(CONFIG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    started = threading.Event()

    def relay_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write("  l4lb | " + line)
            if "Proxy demo started." in line:
                started.set()

    threading.Thread(target=relay_output, daemon=True).start()
    try:
        if not started.wait(20):
            print("l4lb did not start; see its output above", file=sys.stderr)
            return 1
        print("\nSix connections through l4lb on 127.0.0.1:8080:")
        for i in range(6):
            print(f"  connection {i + 1}: {ask(8080)}")
        print(
            "\nl4lb is running. Try: nc 127.0.0.1 8080   (Ctrl-C to stop)\n",
            flush=True,
        )
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
