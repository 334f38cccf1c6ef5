"""
Micro-benchmark of the relay's hot path: what one chunk costs once a
session is established, on the classic data path (a leg's C{dataReceived},
the byte count, the time note and the other transport's C{write}) and on
the lean one (one C{recv} and one C{send} between loopback socket pairs).

Each measurement runs for about C{--seconds} (0.5 by default) and is
repeated C{--rounds} times (the best is kept); the script stops by itself::

    python bench/bench_relay.py [--seconds 0.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Set

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import MemoryReactorClock  # noqa: E402

from l4lb.balancers import find_factory  # noqa: E402
from l4lb.config.model import Backend, Frontend, ServerSpec, Timeouts  # noqa: E402
from l4lb.logs import MemorySink  # noqa: E402
from l4lb.pool import BackendState  # noqa: E402
from l4lb.tcp import lean  # noqa: E402
from l4lb.tcp.frontend import FrontendFactory, FrontendState  # noqa: E402
from l4lb.tcp.limits import ConnectionLimiter  # noqa: E402

#: Bytes per chunk on the classic path (what a Twisted transport reads at most).
CLASSIC_CHUNK = 65536
#: Bytes per chunk on the lean path: small, so that the sockets never fill.
LEAN_CHUNK = 512


class _NullTransport:
    """
    A transport that takes every write and does nothing with it.
    """

    disconnecting = False
    connected = True
    producer = None

    def __init__(self, host: str, port: int) -> None:
        self.peer = IPv4Address("TCP", host, port)

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 80)

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: List[bytes]) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass


def established(reactor: Any) -> Any:
    """
    A frontend on C{reactor} with one session established on the classic
    path; returns C{(client leg, server leg)}.
    """
    timeouts = Timeouts(connect=5.0, client=50.0, server=50.0)
    spec = ServerSpec(name="s1", host="127.0.0.1", port=80, address="127.0.0.1", weight=1)
    backend_spec = Backend(name="be", servers=(spec,), timeouts=timeouts)
    frontend_spec = Frontend(name="fe", binds=(), default_backend="be", timeouts=timeouts)
    backend = BackendState(backend_spec, find_factory("roundrobin"))
    gate = ConnectionLimiter(0).gate(0)
    frontend = FrontendState(frontend_spec, backend, gate, reactor, MemorySink())
    frontend.lean = False
    factory = FrontendFactory(frontend)
    client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    client.makeConnection(_NullTransport("127.0.0.1", 40000))
    session = client.session
    server = session.buildProtocol(IPv4Address("TCP", "127.0.0.1", 80))
    server.makeConnection(_NullTransport("127.0.0.1", 80))
    return client, server


def per_chunk(work: Callable[[int], None], seconds: float, rounds: int, batch: int = 2000) -> float:
    """
    The best time per call of C{work} (called with a batch size) over
    C{rounds} runs of about C{seconds}, in nanoseconds.
    """
    best = float("inf")
    for _ in range(rounds):
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            work(batch)
            done += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - start) / done)
    return best * 1e9


def classic(seconds: float, rounds: int) -> float:
    """
    Nanoseconds per chunk relayed by the classic path, both directions.
    """
    client, server = established(MemoryReactorClock())
    chunk = b"x" * CLASSIC_CHUNK
    client_received = client.dataReceived
    server_received = server.dataReceived

    def work(n: int) -> None:
        for _ in range(n // 2):
            client_received(chunk)
            server_received(chunk)

    return per_chunk(work, seconds, rounds)


class _FdReactor(MemoryReactorClock):
    """
    A memory reactor that records descriptors, as the lean path needs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fd_readers: Set[Any] = set()
        self.fd_writers: Set[Any] = set()

    def addReader(self, reader: Any) -> None:
        self.fd_readers.add(reader)

    def removeReader(self, reader: Any) -> None:
        self.fd_readers.discard(reader)

    def addWriter(self, writer: Any) -> None:
        self.fd_writers.add(writer)

    def removeWriter(self, writer: Any) -> None:
        self.fd_writers.discard(writer)


class _SocketTransport(_NullTransport):
    """
    A transport that owns a socket, for the lean path to take.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__("127.0.0.1", 40000)
        self.socket = sock

    def stopReading(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass


def lean_path(seconds: float, rounds: int) -> float:
    """
    Nanoseconds per chunk relayed by the lean path (C{recv} and C{send}
    between socket pairs), client to server; the reads of the far end
    that keep the sockets from filling are not counted.
    """
    reactor = _FdReactor()
    client_leg, _ = established(reactor)
    session = client_leg.session
    near_client, far_client = socket.socketpair()
    near_server, far_server = socket.socketpair()
    for sock in (near_client, far_client, near_server, far_server):
        sock.setblocking(False)
    relay = lean.LeanRelay(session, _SocketTransport(near_client), _SocketTransport(near_server))
    relay.start()
    side = relay.client
    chunk = b"x" * LEAN_CHUNK
    spent = [0.0]

    def work(n: int) -> None:
        for _ in range(n):
            far_client.send(chunk)
            start = time.perf_counter()
            side.doRead()
            spent[0] += time.perf_counter() - start
            far_server.recv(65536)

    best = float("inf")
    for _ in range(rounds):
        spent[0] = 0.0
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            work(1000)
            done += 1000
        best = min(best, spent[0] / done)
    relay.detach(flush=False)
    for sock in (near_client, far_client, near_server, far_server):
        sock.close()
    return best * 1e9


def main(argv: List[str]) -> int:
    """
    Run both measurements and print them.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"classic: {classic(args.seconds, args.rounds):8.0f} ns per chunk (64 KiB, in memory)")
    print(f"lean:    {lean_path(args.seconds, args.rounds):8.0f} ns per chunk (512 B, recv + send)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
