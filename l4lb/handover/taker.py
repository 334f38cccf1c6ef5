"""
The new process's side of a handover: ask the running process for its
listening sockets and runtime state (before the reactor runs, once the
configuration is known to be valid), and commit once serving.

These calls block, with timeouts: they run while the process starts, when
nothing else waits on it, and the commit is a few bytes on a local socket.
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any, Dict, List, Optional

import attr

import l4lb
from l4lb.handover.sockets import Key, close_unused
from l4lb.handover.state import CarriedState, load

#: Seconds allowed for the running process to answer.
ANSWER_TIMEOUT = 30.0

#: The most descriptors read with one message.
_MAX_FDS = 255


class HandoverError(Exception):
    """
    The handover cannot go on; the message says why, in one line.
    """


@attr.s(auto_attribs=True)
class Taken:
    """
    What the running process handed over.

    @ivar connection: The runtime API connection, kept for the commit.
    @ivar sockets: The listening sockets by key.
    @ivar carried: The runtime state.
    @ivar donor_pid: The running process's pid.
    @ivar donor_generation: Its generation.
    """

    connection: socket.socket
    sockets: Dict[Key, int]
    carried: CarriedState
    donor_pid: int
    donor_generation: int


def take_over(path: str, timeout: float = ANSWER_TIMEOUT) -> Taken:
    """
    Ask the process listening on the runtime API socket C{path} for its
    listening sockets and runtime state.

    @raise HandoverError: When it cannot be reached, refuses, or answers
        something else; no descriptor is left open then.
    """
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds: List[int] = []
    try:
        connection.settimeout(timeout)
        try:
            connection.connect(path)
        except OSError as e:
            raise HandoverError(
                f"cannot reach the running process on {path}: {e.strerror or e}"
            ) from None
        ask = {"pid": os.getpid(), "version": l4lb.__version__}
        connection.sendall(b"_handover " + json.dumps(ask).encode("utf-8") + b"\n")
        line = _read_line(connection, fds)
        taken = _parse(line, fds, connection)
    except HandoverError:
        _close_all(fds)
        connection.close()
        raise
    except OSError as e:
        _close_all(fds)
        connection.close()
        raise HandoverError(f"the running process on {path} did not answer: {e}") from None
    return taken


def _read_line(connection: socket.socket, fds: List[int]) -> bytes:
    """
    Read the answer's first line, collecting the descriptors that come
    with its bytes into C{fds}, in order.
    """
    data = bytearray()
    room = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
    while b"\n" not in data:
        chunk, ancillary, flags, _ = connection.recvmsg(65536, room)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                usable = len(payload) - len(payload) % got.itemsize
                got.frombytes(payload[:usable])
                fds.extend(got)
        if flags & getattr(socket, "MSG_CTRUNC", 0):
            raise HandoverError("too many descriptors came at once")
        if not chunk:
            raise HandoverError("the running process closed the connection")
        data += chunk
    return bytes(data[: data.index(b"\n")])


def _parse(line: bytes, fds: List[int], connection: socket.socket) -> Taken:
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("{"):
        raise HandoverError(text or "the running process answered nothing")
    try:
        answer = json.loads(text)
        keys = [(str(kind), str(where)) for kind, where in answer["sockets"]]
        carried = load(answer["state"])
        donor = answer["donor"]
        donor_pid, donor_generation = int(donor["pid"]), int(donor["generation"])
    except (ValueError, KeyError, TypeError) as e:
        raise HandoverError(f"the running process's answer is not understood: {e}") from None
    if len(keys) != len(fds):
        raise HandoverError(
            f"{len(fds)} descriptor(s) received for {len(keys)} listening socket(s)"
        )
    return Taken(connection, dict(zip(keys, fds)), carried, donor_pid, donor_generation)


def commit(taken: Taken, timeout: float = 10.0) -> None:
    """
    Tell the running process that this one serves: it stops accepting and
    finishes its connections.

    @raise HandoverError: When it did not confirm; it then serves on.
    """
    connection = taken.connection
    try:
        connection.settimeout(timeout)
        connection.sendall(b"commit\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    except OSError as e:
        raise HandoverError(f"the commit was not confirmed: {e}") from None
    finally:
        connection.close()
    if answer.strip() != b"committed":
        raise HandoverError(
            f"the commit was not confirmed: {answer.decode('utf-8', 'replace').strip()!r}"
        )


def abandon(taken: Optional[Taken]) -> None:
    """
    Give up a handover: close the connection (the running process serves
    on) and whatever descriptor no bind took.
    """
    if taken is None:
        return
    close_unused(taken.sockets)
    taken.connection.close()


def _close_all(fds: List[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Report:
    """
    Where a new process started by an upgrade tells the running one why
    it failed (the descriptor named by C{L4LB_TAKEOVER_REPORT}); writing
    does nothing without one.
    """

    def __init__(self, fd: Optional[int]) -> None:
        self.fd = fd

    @classmethod
    def from_environ(cls, environ: Any) -> "Report":
        """
        The report named by C{environ} (the variable is removed, so that a
        later upgrade of this process starts clean).
        """
        from l4lb.handover.donor import REPORT_ENV

        text = environ.pop(REPORT_ENV, None)
        try:
            fd = int(text) if text else None
            if fd is not None:
                os.fstat(fd)
        except (ValueError, OSError):
            fd = None
        return cls(fd)

    def write(self, text: str) -> None:
        """
        Report C{text} (a line is added).
        """
        if self.fd is None:
            return
        try:
            os.write(self.fd, text.rstrip("\n").encode("utf-8", "replace") + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        """
        Close the report: the upgrade went through.
        """
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
