"""
The programs the fleet test runs inside its network namespaces, with the
standard library only: C{serve} (the backends) and the clients C{spread},
C{hold} and C{udp}.  Each client prints one JSON document on stdout.

    python fleet_peer.py serve NAME=ADDR ... --tcp PORT --udp PORT
    python fleet_peer.py spread --vip IP --port P --sources A,B,...
    python fleet_peer.py hold --vip IP --port P --sources A,B,... --seconds T
    python fleet_peer.py udp --vip IP --port P --sources A,B,...

A backend greets every TCP connection with C{NAME PEER\\n}, where PEER is
the address the connection came from (which balancer instance carried
it), then echoes; it answers every UDP datagram with C{NAME PEER } and the
datagram.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

#: Seconds a client waits for any one answer.
ANSWER_TIMEOUT = 3.0


def serve(names: List[str], tcp_port: int, udp_port: int) -> None:
    """
    Serve every C{NAME=ADDR} on C{tcp_port} (greet, then echo) and
    C{udp_port} (answer) until killed.
    """
    selector = selectors.DefaultSelector()
    for item in names:
        name, _, address = item.partition("=")
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, tcp_port))
        listener.listen(512)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, ("accept", name))
        datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagrams.bind((address, udp_port))
        datagrams.setblocking(False)
        selector.register(datagrams, selectors.EVENT_READ, ("udp", name))
    print("serving", flush=True)
    while True:
        for key, _ in selector.select():
            kind, name = key.data
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if kind == "accept":
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                try:
                    conn.send(f"{name} {peer[0]}\n".encode())
                except OSError:
                    conn.close()
                    continue
                selector.register(conn, selectors.EVENT_READ, ("echo", name))
            elif kind == "udp":
                try:
                    data, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    continue
                sock.sendto(f"{name} {peer[0]} ".encode() + data, peer)
            else:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        sock.sendall(data)
                        continue
                    except OSError:
                        pass
                selector.unregister(sock)
                sock.close()


def _open(vip: str, port: int, source: str) -> Tuple[socket.socket, str, str]:
    """
    Connect from C{source} to the virtual address and read the greeting.

    @return: The socket, the backend's name and the instance's address.
    """
    sock = socket.socket()
    sock.settimeout(ANSWER_TIMEOUT)
    sock.bind((source, 0))
    sock.connect((vip, port))
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("closed before the greeting")
        line += chunk
    name, via = line.decode().split()
    return sock, name, via


def spread(vip: str, port: int, sources: List[str], per_source: int) -> Dict[str, Any]:
    """
    C{per_source} short connections from each source: which backend and
    which instance each reached.
    """
    results: List[Dict[str, Any]] = []
    for source in sources:
        for _ in range(per_source):
            try:
                sock, name, via = _open(vip, port, source)
                sock.close()
                results.append({"source": source, "backend": name, "via": via})
            except OSError as e:
                results.append({"source": source, "error": str(e)})
    return {"connections": results}


class _Held(threading.Thread):
    """
    One long-lived connection that sends a numbered line every
    C{interval} seconds and checks each echo, until told to stop.
    """

    def __init__(self, vip: str, port: int, source: str, interval: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.vip, self.port, self.source = vip, port, source
        self.interval = interval
        self.stop = stop
        self.backend = ""
        self.via = ""
        self.exchanged = 0
        self.error: Optional[str] = None
        self.broken_at: Optional[float] = None

    def run(self) -> None:
        try:
            sock, self.backend, self.via = _open(self.vip, self.port, self.source)
        except OSError as e:
            self.error = f"open: {e}"
            self.broken_at = time.monotonic()
            return
        try:
            while not self.stop.is_set():
                line = f"{self.source} {self.exchanged}\n".encode()
                sock.sendall(line)
                got = b""
                while len(got) < len(line):
                    chunk = sock.recv(len(line) - len(got))
                    if not chunk:
                        raise ConnectionError("closed by the other side")
                    got += chunk
                if got != line:
                    raise ConnectionError(f"echo differs: {got!r}")
                self.exchanged += 1
                self.stop.wait(self.interval)
            sock.close()
        except OSError as e:
            self.error = str(e) or type(e).__name__
            self.broken_at = time.monotonic()
            sock.close()


def hold(
    vip: str, port: int, sources: List[str], seconds: float, interval: float, probe: float
) -> Dict[str, Any]:
    """
    One long-lived connection per source, exchanging a line every
    C{interval} seconds, and meanwhile a new short connection every
    C{probe} seconds (sources in turn), for C{seconds}.
    """
    stop = threading.Event()
    start = time.monotonic()
    held = [_Held(vip, port, source, interval, stop) for source in sources]
    for thread in held:
        thread.start()
    probes: List[Dict[str, Any]] = []
    index = 0
    deadline = start + seconds
    while time.monotonic() < deadline:
        source = sources[index % len(sources)]
        index += 1
        at = time.monotonic() - start
        try:
            sock, name, via = _open(vip, port, source)
            sock.close()
            probes.append({"at": round(at, 3), "source": source, "backend": name, "via": via})
        except OSError as e:
            probes.append({"at": round(at, 3), "source": source, "error": str(e)})
        time.sleep(probe)
    stop.set()
    for thread in held:
        thread.join(ANSWER_TIMEOUT * 2)
    return {
        "held": [
            {
                "source": t.source,
                "backend": t.backend,
                "via": t.via,
                "exchanged": t.exchanged,
                "error": t.error,
                "broken_at": None if t.broken_at is None else round(t.broken_at - start, 3),
            }
            for t in held
        ],
        "probes": probes,
    }


def udp(vip: str, port: int, sources: List[str], rounds: int, source_port: int) -> Dict[str, Any]:
    """
    C{rounds} datagrams from each source (from C{source_port}, so that a
    later run is the same flow): which backend answered each.
    """
    answers: List[Dict[str, Any]] = []
    for source in sources:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(ANSWER_TIMEOUT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((source, source_port))
            for number in range(rounds):
                sock.sendto(b"q%d" % number, (vip, port))
                try:
                    data = sock.recv(65535)
                    name, via, _ = data.decode().split(" ", 2)
                    answers.append({"source": source, "backend": name, "via": via})
                except OSError as e:
                    answers.append({"source": source, "error": str(e)})
    return {"answers": answers}


def main(argv: List[str]) -> int:
    """
    Run one of the programs; see the module's docstring.
    """
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="program", required=True)
    p = sub.add_parser("serve")
    p.add_argument("names", nargs="+")
    p.add_argument("--tcp", type=int, required=True)
    p.add_argument("--udp", type=int, required=True)
    for program in ("spread", "hold", "udp"):
        p = sub.add_parser(program)
        p.add_argument("--vip", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sources", required=True)
        p.add_argument("--per-source", type=int, default=1)
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--seconds", type=float, default=10.0)
        p.add_argument("--interval", type=float, default=0.2)
        p.add_argument("--probe", type=float, default=0.05)
        p.add_argument("--source-port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.program == "serve":
        serve(args.names, args.tcp, args.udp)
        return 0
    sources = args.sources.split(",")
    if args.program == "spread":
        result = spread(args.vip, args.port, sources, args.per_source)
    elif args.program == "hold":
        result = hold(args.vip, args.port, sources, args.seconds, args.interval, args.probe)
    else:
        result = udp(args.vip, args.port, sources, args.rounds, args.source_port)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
