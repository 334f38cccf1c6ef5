"""
L{HangupWatcher} on real loopback sockets: it reports a reset and consumes
nothing.
"""

from __future__ import annotations

import socket
import struct
from typing import Iterator, List, Tuple

import pytest
from twisted.internet.testing import MemoryReactor

from l4lb.tcp.watch import HangupWatcher


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    accepted.setblocking(False)
    listener.close()
    yield client, accepted
    client.close()
    accepted.close()


def watch(sock: socket.socket) -> Tuple[HangupWatcher, MemoryReactor, List[int]]:
    reactor = MemoryReactor()
    calls: List[int] = []
    watcher = HangupWatcher(sock, reactor, lambda: calls.append(1))
    watcher.start()
    return watcher, reactor, calls


def test_reset_is_reported_once(pair: Tuple[socket.socket, socket.socket]) -> None:
    """A client that resets is reported, once, and the watcher stops."""
    client, accepted = pair
    watcher, reactor, calls = watch(accepted)
    assert watcher in reactor.getReaders()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    watcher.doRead()
    watcher.doRead()
    assert calls == [1]
    assert watcher not in reactor.getReaders()


def test_data_is_left_for_the_relay(pair: Tuple[socket.socket, socket.socket]) -> None:
    """Waiting data is not consumed, and the watcher steps aside."""
    client, accepted = pair
    watcher, reactor, calls = watch(accepted)
    client.sendall(b"hello")
    watcher.doRead()
    assert calls == []
    assert watcher not in reactor.getReaders()
    accepted.setblocking(True)
    assert accepted.recv(5) == b"hello"


def test_clean_end_of_stream_is_left_for_the_relay(
    pair: Tuple[socket.socket, socket.socket]
) -> None:
    """A client half-close is not a hang-up: the relay reads the EOF later."""
    client, accepted = pair
    watcher, reactor, calls = watch(accepted)
    client.shutdown(socket.SHUT_WR)
    watcher.doRead()
    assert calls == []
    assert watcher not in reactor.getReaders()
    accepted.setblocking(True)
    assert accepted.recv(1) == b""


def test_nothing_waiting_keeps_watching(pair: Tuple[socket.socket, socket.socket]) -> None:
    """A spurious wake-up with nothing to read keeps the watcher in place."""
    client, accepted = pair
    watcher, reactor, calls = watch(accepted)
    watcher.doRead()
    assert calls == [] and watcher in reactor.getReaders()
