"""
L{HangupWatcher} on real loopback sockets: it reports a reset, and either
consumes nothing or hands the client's bytes to the session, bounded.
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


def watch_reading(
    sock: socket.socket, limit: int
) -> Tuple[HangupWatcher, MemoryReactor, List[int], List[bytes]]:
    reactor = MemoryReactor()
    calls: List[int] = []
    data: List[bytes] = []
    watcher = HangupWatcher(sock, reactor, lambda: calls.append(1), data.append, limit)
    watcher.start()
    return watcher, reactor, calls, data


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


def test_reading_watcher_hands_data_over_and_keeps_watching(
    pair: Tuple[socket.socket, socket.socket]
) -> None:
    """With C{on_data}, the client's bytes are read and handed over, and a later reset is still seen."""
    client, accepted = pair
    watcher, reactor, calls, data = watch_reading(accepted, 1000)
    client.sendall(b"hello")
    watcher.doRead()
    assert data == [b"hello"]
    assert watcher in reactor.getReaders()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    watcher.doRead()
    assert calls == [1]
    assert watcher not in reactor.getReaders()


def test_reading_watcher_stops_at_its_limit(pair: Tuple[socket.socket, socket.socket]) -> None:
    """No more than C{limit} bytes are read; the rest stays for the relay."""
    client, accepted = pair
    watcher, reactor, calls, data = watch_reading(accepted, 4)
    client.sendall(b"abcdefgh")
    watcher.doRead()
    assert data == [b"abcd"]
    assert watcher not in reactor.getReaders()
    accepted.setblocking(True)
    assert accepted.recv(100) == b"efgh"


def test_reading_watcher_leaves_the_end_of_stream(
    pair: Tuple[socket.socket, socket.socket]
) -> None:
    """An end of stream stops the reading watcher and is read again by the relay."""
    client, accepted = pair
    watcher, reactor, calls, data = watch_reading(accepted, 1000)
    client.sendall(b"last")
    client.shutdown(socket.SHUT_WR)
    watcher.doRead()
    watcher.doRead()
    assert data == [b"last"] and calls == []
    assert watcher not in reactor.getReaders()
    accepted.setblocking(True)
    assert accepted.recv(1) == b""
