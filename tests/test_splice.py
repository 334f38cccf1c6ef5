"""
L{l4lb.tcp.splice}: the C library's C{splice} behaves as C{os.splice}
does, on real sockets and a pipe.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Callable, Iterator, Tuple

import pytest

from l4lb.tcp import splice


@pytest.fixture
def plumbing() -> Iterator[Tuple[socket.socket, socket.socket, socket.socket, socket.socket, int, int]]:
    """
    Two connected socket pairs and a non-blocking pipe, closed after the
    test.
    """
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    for s in (a, b, c, d):
        s.setblocking(False)
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield a, b, c, d, r, w
    for s in (a, b, c, d):
        s.close()
    os.close(r)
    os.close(w)


@pytest.mark.parametrize("name", ["platform", "libc"])
def test_bytes_move_through_the_pipe(name: str, plumbing: Tuple) -> None:
    """
    What one socket received goes through the pipe to the other socket,
    intact; an empty socket raises C{BlockingIOError}; an end of stream
    gives 0.
    """
    move: Callable[..., int] = splice.splice if name == "platform" else splice._from_libc()  # type: ignore[assignment]
    assert move is not None
    a, b, c, d, r, w = plumbing
    payload = os.urandom(5000)
    a.sendall(payload)
    n = move(b.fileno(), w, 65536, flags=splice.FLAGS)
    assert n == len(payload)
    assert move(r, c.fileno(), n, flags=splice.FLAGS) == n
    assert d.recv(10000) == payload
    with pytest.raises(BlockingIOError):
        move(b.fileno(), w, 65536, flags=splice.FLAGS)
    a.shutdown(socket.SHUT_WR)
    assert move(b.fileno(), w, 65536, flags=splice.FLAGS) == 0


def test_errors_carry_their_errno(plumbing: Tuple) -> None:
    """A failing call raises the OSError of its errno (a closed descriptor here)."""
    move = splice._from_libc()
    assert move is not None
    _, b, _, _, _, w = plumbing
    r2, w2 = os.pipe()
    os.close(r2)
    os.close(w2)
    with pytest.raises(OSError) as caught:
        move(r2, w, 10, flags=splice.FLAGS)
    assert caught.value.errno == errno.EBADF
