"""
Tests for L{l4lb.tcp.lean}: the lean data path's own mechanics (specific
to it: registrations, remainders, pipes), driven over real socket pairs
with a recording memory reactor, for a real established session.  What
both data paths must do alike is tested on both in test_relay.py and
test_relay_stages.py.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterator, List, Set, Tuple

import pytest
from twisted.internet import error
from twisted.python.failure import Failure
from twisted.internet.testing import MemoryReactorClock, StringTransport

from l4lb.tcp import lean
from l4lb.service import set_pipe_limit
from l4lb.tcp.lean import CHUNK, LeanRelay
from tests.relaykit import Relay

# Bounds every loop that fills or drains a socket.
MAX_ROUNDS = 2000


class FakeReactor(MemoryReactorClock):
    """
    A memory reactor and clock that records which descriptors are
    registered, and counts the changes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readers: Set[object] = set()
        self.writers: Set[object] = set()
        self.changes = 0

    def addReader(self, reader: object) -> None:
        self.changes += reader not in self.readers
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.changes += reader in self.readers
        self.readers.discard(reader)

    def addWriter(self, writer: object) -> None:
        self.changes += writer not in self.writers
        self.writers.add(writer)

    def removeWriter(self, writer: object) -> None:
        self.changes += writer in self.writers
        self.writers.discard(writer)


class FakeTransport:
    """
    Stands for a Twisted TCP transport that owns C{socket}.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.written: List[bytes] = []
        self.lost: List[Failure] = []
        self.stopped = 0
        self.connected = True
        self.disconnecting = False
        self.closing = 0

    def stopReading(self) -> None:
        self.stopped += 1

    def stopWriting(self) -> None:
        self.stopped += 1

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def loseConnection(self) -> None:
        self.closing += 1

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        self.lost.append(reason)
        self.socket.close()


class Pair:
    """
    A relay between two socket pairs: C{client} talks to the relay's client
    socket, C{server} to its server socket.
    """

    def __init__(self) -> None:
        self.client, client_sock = socket.socketpair()
        server_sock, self.server = socket.socketpair()
        for sock in (client_sock, server_sock, self.client, self.server):
            sock.setblocking(False)
        self.reactor = FakeReactor()
        self.reactor.advance(7)
        # A real session, established (in memory), whose data path is then
        # this relay over the socket pairs.
        kit = Relay(reactor=self.reactor)
        leg, _ = kit.accept()
        kit.complete()
        self.session = leg.session
        self.client_transport = FakeTransport(client_sock)
        self.server_transport = FakeTransport(server_sock)
        self.relay = LeanRelay(self.session, self.client_transport, self.server_transport)
        self.session.path = self.relay
        self.relay.start()

    def close(self) -> None:
        for sock in (
            self.client,
            self.server,
            self.client_transport.socket,
            self.server_transport.socket,
        ):
            sock.close()

    def fill(self) -> int:
        """
        Send from the client until the relay keeps a remainder for the
        server; return the bytes the client sent.
        """
        sent = 0
        chunk = b"x" * CHUNK
        for _ in range(MAX_ROUNDS):
            try:
                sent += self.client.send(chunk)
            except BlockingIOError:
                pass
            self.relay.client.doRead()
            if self.relay.server.pending is not None:
                return sent
        raise AssertionError("the server socket never filled up")

    def drain_server(self) -> Tuple[int, bool]:
        """
        Read everything the server end can get, moving the relay along;
        return the bytes read and whether an end of stream was seen.
        """
        got = 0
        for _ in range(MAX_ROUNDS):
            try:
                data = self.server.recv(CHUNK)
            except BlockingIOError:
                data = None
            if data == b"":
                return got, True
            if data:
                got += len(data)
            before = self.session.bytes_in
            if self.relay.server in self.reactor.writers:
                self.relay.server.doWrite()
            elif self.relay.client in self.reactor.readers:
                self.relay.client.doRead()
                if data is None and self.session.bytes_in == before:
                    return got, False
            elif data is None:
                return got, False
        raise AssertionError("draining did not finish")


@pytest.fixture
def pair() -> Iterator[Pair]:
    """
    A started relay over two socket pairs, closed after the test.
    """
    p = Pair()
    yield p
    p.close()


def test_chunk_relayed_without_registration_changes(pair: Pair) -> None:
    """A chunk is sent on at once, counted, and leaves the reactor's registrations alone."""
    changes = pair.reactor.changes
    pair.client.send(b"request")
    pair.relay.client.doRead()
    pair.server.send(b"response!")
    pair.relay.server.doRead()
    assert pair.server.recv(100) == b"request"
    assert pair.client.recv(100) == b"response!"
    assert (pair.session.bytes_in, pair.session.bytes_out) == (7, 9)
    assert pair.session.last_activity == 7
    assert pair.reactor.changes == changes
    assert pair.reactor.readers == {pair.relay.client, pair.relay.server}


def test_start_takes_the_sockets_from_the_transports(pair: Pair) -> None:
    """Starting stops both transports' reading and writing and registers both sides."""
    assert pair.client_transport.stopped == 2
    assert pair.server_transport.stopped == 2
    assert pair.reactor.readers == {pair.relay.client, pair.relay.server}
    assert pair.reactor.writers == set()


def test_full_destination_pauses_the_source(pair: Pair) -> None:
    """A destination that does not take a chunk stops reading of the source and keeps at most one chunk."""
    pair.fill()
    pending = pair.relay.server.pending
    assert pending is not None and len(pending) <= CHUNK
    assert pair.relay.client not in pair.reactor.readers
    assert pair.reactor.writers == {pair.relay.server}


def test_draining_resumes_and_keeps_every_byte(pair: Pair) -> None:
    """Once the slow reader drains, the source is read again and every byte arrives once."""
    sent = pair.fill()
    got, eof = pair.drain_server()
    assert not eof
    assert got == sent == pair.session.bytes_in
    assert pair.relay.server.pending is None
    assert pair.reactor.writers == set()
    assert pair.relay.client in pair.reactor.readers


def test_end_of_stream_passed_on(pair: Pair) -> None:
    """An end of stream from the client shuts the server's write half and tells the session."""
    pair.client.shutdown(socket.SHUT_WR)
    pair.relay.client.doRead()
    assert (pair.session.client_eof_seen, pair.session.server_eof_seen) == (True, False)
    assert pair.server.recv(10) == b""
    assert pair.relay.client not in pair.reactor.readers
    # The other direction still flows.
    pair.server.send(b"late")
    pair.relay.server.doRead()
    assert pair.client.recv(10) == b"late"


def test_end_of_stream_waits_for_the_remainder(pair: Pair) -> None:
    """An end of stream after a backlog is passed on only once the backlog is sent."""
    sent = pair.fill()
    pair.client.shutdown(socket.SHUT_WR)
    got, eof = pair.drain_server()
    assert eof
    assert got == sent
    assert (pair.session.client_eof_seen, pair.session.server_eof_seen) == (True, False)


def test_reset_destination_closes_its_transport_once(pair: Pair) -> None:
    """A destination that was reset is closed by its transport, once, and the relay lets go."""
    pair.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pair.server.close()
    pair.client.send(b"to nobody")
    pair.relay.client.doRead()
    pair.relay.client.doRead()
    assert len(pair.server_transport.lost) == 1
    assert pair.client_transport.lost == []
    assert not pair.relay.attached
    assert pair.reactor.readers == pair.reactor.writers == set()
    pair.server = socket.socket()


def test_graceful_detach_hands_the_remainder_back(pair: Pair) -> None:
    """Detaching to close gracefully gives the kept remainder to the destination's transport."""
    pair.fill()
    pending = pair.relay.server.pending
    assert pending is not None
    kept = bytes(pending)
    pair.relay.detach(flush=True)
    assert pair.server_transport.written == [kept]
    assert pair.reactor.readers == pair.reactor.writers == set()
    assert pair.client_transport.lost == pair.server_transport.lost == []


def test_abort_drops_the_remainder(pair: Pair) -> None:
    """Detaching to abort drops the remainder and leaves closing to the transports."""
    pair.fill()
    pair.relay.detach(flush=False)
    pair.relay.detach(flush=True)
    assert pair.server_transport.written == []
    assert pair.relay.server.pending is None
    assert pair.reactor.readers == pair.reactor.writers == set()


def test_only_plain_tcp_transports_are_usable() -> None:
    """Transports that are not Twisted TCP connections keep the classic path."""
    assert not lean.usable(FakeReactor(), StringTransport(), StringTransport())


def test_close_without_remainder_closes_both_now(pair: Pair) -> None:
    """A graceful close with nothing left to send closes both sockets at once."""
    pair.relay.close()
    for transport in (pair.client_transport, pair.server_transport):
        assert [f.type for f in transport.lost] == [error.ConnectionDone]
        assert transport.closing == 0
    assert pair.reactor.readers == pair.reactor.writers == set()


def test_close_with_remainder_leaves_it_to_the_transport(pair: Pair) -> None:
    """A graceful close lets the transport holding a remainder send it before closing."""
    pair.fill()
    pair.relay.close()
    assert len(pair.server_transport.written) == 1
    assert pair.server_transport.closing == 1 and pair.server_transport.lost == []
    assert len(pair.client_transport.lost) == 1


def test_first_bytes_sent_at_once_when_the_server_takes_them() -> None:
    """
    Bytes given to C{start} (a PROXY header, bytes read while connecting)
    go to a server socket with room at once, before anything from the
    client, and the client is read right away.
    """
    p = Pair()
    try:
        p.relay.detach(flush=False)
        relay = LeanRelay(p.session, p.client_transport, p.server_transport)
        relay.start(b"PROXY header\r\n")
        assert relay.client in p.reactor.readers
        assert relay.server not in p.reactor.writers
        assert relay.server.pending is None
        p.client.send(b"after")
        relay.client.doRead()
        assert p.server.recv(100) == b"PROXY header\r\nafter"
    finally:
        p.close()


def test_first_bytes_wait_for_a_full_server_before_the_client_is_read() -> None:
    """
    When the server socket cannot take all of the first bytes, the rest
    waits for writability and the client is only read once they are sent.
    """
    p = Pair()
    try:
        p.relay.detach(flush=False)
        # Fill the server socket's buffers from the relay's end.
        server_sock = p.server_transport.socket
        filled = 0
        for _ in range(MAX_ROUNDS):
            try:
                filled += server_sock.send(b"f" * CHUNK)
            except BlockingIOError:
                break
        relay = LeanRelay(p.session, p.client_transport, p.server_transport)
        first = b"h" * 1000
        relay.start(first)
        assert relay.client not in p.reactor.readers
        assert relay.server in p.reactor.writers
        p.client.send(b"after")
        got = b""
        for _ in range(MAX_ROUNDS):
            try:
                got += p.server.recv(CHUNK)
            except BlockingIOError:
                pass
            if relay.server in p.reactor.writers:
                relay.server.doWrite()
            if relay.client in p.reactor.readers:
                break
        assert relay.client in p.reactor.readers
        relay.client.doRead()
        for _ in range(MAX_ROUNDS):
            try:
                got += p.server.recv(CHUNK)
            except BlockingIOError:
                break
        assert got == b"f" * filled + first + b"after"
    finally:
        p.close()


def open_fds() -> int:
    """
    Descriptors open in this process now.
    """
    return len(os.listdir("/proc/self/fd"))


def bulk_until_spliced(p: Pair) -> bytes:
    """
    Relay full chunks from the client until the direction moves to
    C{splice}; return what the server end received meanwhile.
    """
    got = b""
    for i in range(lean.SPLICE_AFTER):
        p.client.sendall(bytes([65 + i]) * CHUNK)
        p.relay.client.doRead()
        while len(got) < (i + 1) * CHUNK:
            got += p.server.recv(CHUNK)
    assert p.relay.client.pipe_w >= 0, "the direction did not move to splice"
    return got


def test_bulk_transfer_moves_to_splice_and_keeps_every_byte(pair: Pair) -> None:
    """
    After a few full chunks in a row a direction is spliced through a pipe
    of its own; the bytes arrive intact, in order, and counted.
    """
    got = bulk_until_spliced(pair)
    tail = bytes(range(256)) * 1024
    expected = got + tail
    offset = 0
    for _ in range(MAX_ROUNDS):
        if offset < len(tail):
            try:
                offset += pair.client.send(tail[offset : offset + CHUNK])
            except BlockingIOError:
                pass
        pair.relay.client.doRead()
        try:
            got += pair.server.recv(CHUNK)
        except BlockingIOError:
            pass
        if len(got) >= len(expected):
            break
    assert got == expected
    assert pair.session.bytes_in == len(expected)
    assert pair.relay.client.in_pipe == 0
    assert pair.relay.client.pipe_w >= 0


def test_spliced_slow_reader_pauses_the_source(pair: Pair) -> None:
    """
    A spliced direction whose destination is full keeps the rest in its
    pipe (bounded by the pipe), stops reading the source, and resumes once
    the destination drained, without losing a byte.
    """
    bulk_until_spliced(pair)
    sent = 0
    for _ in range(MAX_ROUNDS):
        try:
            sent += pair.client.send(b"z" * CHUNK)
        except BlockingIOError:
            pass
        pair.relay.client.doRead()
        if pair.relay.client.in_pipe:
            break
    assert pair.relay.client.in_pipe > 0
    assert pair.relay.client not in pair.reactor.readers
    assert pair.relay.server in pair.reactor.writers
    got = 0
    for _ in range(MAX_ROUNDS):
        try:
            got += len(pair.server.recv(CHUNK))
        except BlockingIOError:
            if pair.relay.server in pair.reactor.writers:
                pair.relay.server.doWrite()
            elif pair.relay.client in pair.reactor.readers:
                before = pair.session.bytes_in
                pair.relay.client.doRead()
                if pair.session.bytes_in == before:
                    break
    assert got == sent
    assert pair.relay.client.in_pipe == 0
    assert pair.relay.client in pair.reactor.readers


def test_detach_hands_back_what_the_pipe_holds_and_closes_it(pair: Pair) -> None:
    """
    Detaching gracefully turns what a pipe still holds into a remainder
    for the destination's transport, and closes the pipe's descriptors.
    """
    before = open_fds()
    bulk_until_spliced(pair)
    assert open_fds() == before + 2
    for _ in range(MAX_ROUNDS):
        try:
            pair.client.send(b"q" * CHUNK)
        except BlockingIOError:
            pass
        pair.relay.client.doRead()
        if pair.relay.client.in_pipe:
            break
    held = pair.relay.client.in_pipe
    assert held > 0
    pair.relay.detach(flush=True)
    assert [len(w) for w in pair.server_transport.written] == [held]
    assert pair.server_transport.written[0] == b"q" * held
    assert open_fds() == before


def test_abort_closes_the_pipe(pair: Pair) -> None:
    """An abort drops what the pipe holds and closes it."""
    before = open_fds()
    bulk_until_spliced(pair)
    pair.relay.detach(flush=False)
    assert pair.server_transport.written == []
    assert open_fds() == before


def test_end_of_stream_through_the_pipe(pair: Pair) -> None:
    """An end of stream on a spliced direction is passed on like any other."""
    bulk_until_spliced(pair)
    pair.client.shutdown(socket.SHUT_WR)
    pair.relay.client.doRead()
    assert (pair.session.client_eof_seen, pair.session.server_eof_seen) == (True, False)
    pair.server.setblocking(True)
    pair.server.settimeout(5)
    assert pair.server.recv(1) == b""


def test_pipes_are_counted_and_limited(pair: Pair) -> None:
    """
    Open pipes are counted while a relay holds them; at the limit
    (C{maxpipes}) a bulk transfer keeps being copied, every byte intact.
    """
    before = lean.PIPES.open
    bulk_until_spliced(pair)
    assert lean.PIPES.open == before + 1
    pair.relay.detach(flush=False)
    assert lean.PIPES.open == before
    limit = lean.PIPES.limit
    lean.PIPES.limit = lean.PIPES.open
    try:
        p = Pair()
        try:
            got = b""
            for i in range(lean.SPLICE_AFTER + 2):
                p.client.sendall(bytes([65 + i]) * CHUNK)
                p.relay.client.doRead()
                while len(got) < (i + 1) * CHUNK:
                    got += p.server.recv(CHUNK)
            assert p.relay.client.pipe_w == -1
            assert got == b"".join(bytes([65 + i]) * CHUNK for i in range(lean.SPLICE_AFTER + 2))
        finally:
            p.close()
    finally:
        lean.PIPES.limit = limit


def test_pipe_limit_from_the_configuration() -> None:
    """Without C{maxpipes}, a quarter of C{maxconn} may be open, as in HAProxy."""
    limit = lean.PIPES.limit
    try:
        set_pipe_limit(400, None)
        assert lean.PIPES.limit == 100
        set_pipe_limit(400, 7)
        assert lean.PIPES.limit == 7
    finally:
        lean.PIPES.limit = limit


def test_held_up_names_a_server_that_does_not_read(pair: Pair) -> None:
    """
    While a remainder waits for the server socket (the client socket is not
    read meanwhile), the relay says data is held up toward the server and
    not toward the client; once the server drained it, neither.
    """
    assert pair.relay.held_up() == (False, False)
    pair.fill()
    assert pair.relay.held_up() == (True, False)
    pair.drain_server()
    assert pair.relay.held_up() == (False, False)


def test_held_up_names_a_client_that_does_not_read(pair: Pair) -> None:
    """
    While a remainder waits for the client socket, the relay says data is
    held up toward the client, not toward the server.
    """
    for _ in range(MAX_ROUNDS):
        try:
            pair.server.send(b"y" * CHUNK)
        except BlockingIOError:
            pass
        pair.relay.server.doRead()
        if pair.relay.client.pending is not None:
            break
    assert pair.relay.held_up() == (False, True)


def test_held_up_counts_what_a_pipe_keeps(pair: Pair) -> None:
    """
    A spliced direction whose destination is full keeps the rest in its
    pipe: that is held up toward the server too.
    """
    bulk_until_spliced(pair)
    for _ in range(MAX_ROUNDS):
        try:
            pair.client.send(b"z" * CHUNK)
        except BlockingIOError:
            pass
        pair.relay.client.doRead()
        if pair.relay.client.in_pipe:
            break
    assert pair.relay.held_up() == (True, False)


def test_a_stalled_destination_taking_its_data_is_activity(pair: Pair) -> None:
    """
    When a destination that did not read takes the remainder, the session's
    last activity is that moment: the source was paused by the relay, not
    idle.
    """
    pair.fill()
    before = pair.session.last_activity
    pair.reactor.advance(5)
    for _ in range(MAX_ROUNDS):
        try:
            pair.server.recv(CHUNK)
        except BlockingIOError:
            pair.relay.server.doWrite()
            if pair.relay.server.pending is None:
                break
    # Nothing was read from the client meanwhile.
    assert pair.relay.client in pair.reactor.readers
    assert pair.session.last_activity == before + 5
