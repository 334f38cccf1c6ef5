"""
Tests for the listen backlog: the C{backlog} frontend key and bind option,
the order in which they, C{maxconn} and the global C{maxconn} apply, and
the backlog each listening socket is given.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.testing import MemoryReactorClock

from l4lb.config import ConfigError, parse_config
from l4lb.logs import MemorySink
from l4lb.service import BalancerService
from l4lb.tcp.backlog import FALLBACK_BACKLOG, effective_backlog, with_backlog

HEAD = """\
[global]
maxconn = 3000
[defaults]
timeout connect = 5s
timeout client = 50s
timeout server = 50s
[backend be]
server a = 127.0.0.1:80
[frontend fe]
default_backend = be
"""


def test_frontend_key_and_bind_option_are_parsed() -> None:
    """
    C{backlog = N} sets the frontend's; C{backlog N} after an address sets
    that bind's only.
    """
    config = parse_config(HEAD + "backlog = 700\nbind = 127.0.0.1:80 backlog 90, 127.0.0.1:81\n")
    fe = config.frontends[0]
    assert fe.backlog == 700
    assert [b.backlog for b in fe.binds] == [90, 0]


def test_backlog_is_inherited_from_defaults() -> None:
    """
    C{backlog} in C{[defaults]} applies to a frontend that does not set it.
    """
    text = HEAD.replace("[defaults]\n", "[defaults]\nbacklog = 512\n") + "bind = :80\n"
    assert parse_config(text).frontends[0].backlog == 512


def test_backlog_not_set_is_zero() -> None:
    """
    Without any C{backlog}, the frontend and its binds say 0 (derived).
    """
    fe = parse_config(HEAD + "bind = :80\n").frontends[0]
    assert (fe.backlog, fe.binds[0].backlog) == (0, 0)


@pytest.mark.parametrize(
    "lines, message",
    [
        ("backlog = 0\nbind = :80\n", "0 is out of range; expected an integer from 1"),
        ("backlog = many\nbind = :80\n", "'many' is not an integer"),
        ("bind = :80 backlog\n", "bind option 'backlog' needs a value"),
        ("bind = :80 backlog 0\n", "bind option 'backlog': 0 is out of range"),
        ("bind = :80 backlog x\n", "bind option 'backlog': 'x' is not an integer"),
        ("bind = :80 backlog 2147483648\n", "expected an integer from 1 to 2147483647"),
    ],
)
def test_bad_backlogs(lines: str, message: str) -> None:
    """
    A backlog that is not an integer >= 1 is an error at its line.
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD + lines)
    problems = caught.value.problems
    assert any(message in p.message for p in problems), problems
    assert all(p.line == 11 and p.key in ("backlog", "bind") for p in problems)


def test_precedence() -> None:
    """
    The bind's option wins, then the frontend's key, then its maxconn, then
    the global maxconn; with none at all, a fixed fallback.
    """
    assert effective_backlog(10, 20, 30, 40) == 10
    assert effective_backlog(0, 20, 30, 40) == 20
    assert effective_backlog(0, 0, 30, 40) == 30
    assert effective_backlog(0, 0, 0, 40) == 40
    assert effective_backlog(0, 0, 0, 0) == FALLBACK_BACKLOG
    assert effective_backlog(0, 0, 0, 2**40) == 2**31 - 1


@pytest.mark.parametrize(
    "description, expected",
    [
        ("tcp:80", "tcp:80:backlog=9"),
        ("tcp:80:interface=127.0.0.1", "tcp:80:interface=127.0.0.1:backlog=9"),
        ("tcp6:80:interface=\\:\\:1", "tcp6:80:interface=\\:\\:1:backlog=9"),
        ("unix:/run/l4lb.sock", "unix:/run/l4lb.sock:backlog=9"),
        ("ssl:443:privateKey=k.pem", "ssl:443:privateKey=k.pem:backlog=9"),
        ("tcp:80:backlog=5", "tcp:80:backlog=5"),
        ("TCP:80:BACKLOG=5", "TCP:80:BACKLOG=5"),
        ("unix:/tmp/backlog=x", "unix:/tmp/backlog=x:backlog=9"),
        ("unix:/tmp/a\\:backlog=x", "unix:/tmp/a\\:backlog=x:backlog=9"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_with_backlog(description: str, expected: str) -> None:
    """
    The backlog is added to stream descriptions that take one, unless they
    already name one; an escaped colon does not start an argument.
    """
    assert with_backlog(description, 9) == expected


class ListeningPort:
    """
    A listening port as the frontend's gate handles it.
    """

    def doRead(self) -> None:
        """
        Nothing to accept.
        """

    def startReading(self) -> None:
        """
        Nothing to read.
        """

    def stopReading(self) -> None:
        """
        Nothing to stop.
        """

    def stopListening(self) -> None:
        """
        Nothing to close.
        """


class ListenReactor(MemoryReactorClock):
    """
    A memory reactor whose TCP ports can be gated like real ones.
    """

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        """
        Record the listen, as L{MemoryReactorClock} does.
        """
        super().listenTCP(port, factory, backlog, interface)
        return ListeningPort()


def listen_backlogs(text: str) -> List[int]:
    """
    Start a service for C{text} on a memory reactor and return the backlog
    of each TCP listen, in bind order.
    """
    reactor = ListenReactor()
    service = BalancerService(parse_config(text), reactor, sink=MemorySink())
    service.privilegedStartService()
    return [backlog for (_, _, backlog, _) in reactor.tcpServers]


def test_listens_get_the_configured_backlog() -> None:
    """
    Each TCP listen is given its bind's backlog, else the frontend's.
    """
    text = HEAD + "backlog = 700\nbind = 127.0.0.1:80 backlog 90, 127.0.0.1:81\n"
    assert listen_backlogs(text) == [90, 700]


def test_listens_default_to_maxconn() -> None:
    """
    Without C{backlog}, a listen gets the frontend's maxconn, else the
    global one, never Twisted's default of 50.
    """
    assert listen_backlogs(HEAD + "maxconn = 1200\nbind = 127.0.0.1:80\n") == [1200]
    assert listen_backlogs(HEAD + "bind = 127.0.0.1:80\n") == [3000]


def test_endpoint_description_backlog_is_kept() -> None:
    """
    A Twisted description that names its own backlog keeps it.
    """
    text = HEAD + "backlog = 700\nbind = tcp:80:interface=127.0.0.1:backlog=33\n"
    assert listen_backlogs(text) == [33]
