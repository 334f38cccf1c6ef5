"""
Tests for L{l4lb.lazytls} and L{l4lb.tcp.listen}: Twisted's reactor without
TLS loaded until it is used, and plain TCP binds without Twisted's
endpoints.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any, Dict, Optional

import pytest

from l4lb.lazytls import defer_tls
from l4lb.tcp.listen import TCPServerEndpoint, plain_tcp, server_endpoint

#: Run in a fresh interpreter: defer TLS, install the reactor, then use TLS.
FRESH = textwrap.dedent(
    """
    import sys
    from l4lb.lazytls import defer_tls
    assert defer_tls()
    from twisted.internet import epollreactor
    epollreactor.install()
    from twisted.internet import reactor, tcp
    from twisted.internet.interfaces import IReactorSSL
    loaded = [m for m in ("OpenSSL", "cryptography", "service_identity") if m in sys.modules]
    print("before", loaded, IReactorSSL.providedBy(reactor), hasattr(tcp.Server, "startTLS"))
    from twisted.internet import ssl
    options = ssl.CertificateOptions()
    from twisted.internet.protocol import Factory
    port = reactor.listenSSL(0, Factory(), options, interface="127.0.0.1")
    print("after", "OpenSSL" in sys.modules, type(port).__name__)
    port.stopListening()
    """
)


def test_deferred_until_used() -> None:
    """
    With TLS deferred, the reactor starts without pyOpenSSL, cryptography
    or service_identity, still offers C{listenSSL}, and TLS loads when
    used; TCP transports have no C{startTLS}.
    """
    done = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before [] True False", "after True Port"]


def test_nothing_deferred_once_imported() -> None:
    """
    Once the reactor's modules are imported (as in this process), nothing
    is changed.
    """
    import twisted.internet.tcp

    assert twisted.internet.tcp.Server is not None
    assert defer_tls() is False


@pytest.mark.parametrize(
    "description, expected",
    [
        ("tcp:80", {"port": 80, "interface": "", "backlog": 50}),
        ("tcp:8080:interface=127.0.0.1:backlog=4096", {"port": 8080, "interface": "127.0.0.1", "backlog": 4096}),
        ("tcp6:443:interface=\\:\\:1", {"port": 443, "interface": "::1", "backlog": 50}),
        ("tcp6:443", {"port": 443, "interface": "::", "backlog": 50}),
        ("TCP:port=81", {"port": 81, "interface": "", "backlog": 50}),
        ("ssl:443:privateKey=k.pem", None),
        ("unix:/run/lb.sock", None),
        ("tcp:80:reuse=yes", None),
        ("tcp:http", None),
        ("tcp:80:backlog=x", None),
        ("tcp:80:interface=a:interface=b", None),
    ],
)
def test_plain_tcp(description: str, expected: Optional[Dict[str, Any]]) -> None:
    """
    Plain TCP descriptions are read as Twisted reads them; anything else is
    left to Twisted.
    """
    assert plain_tcp(description) == expected


def test_server_endpoint_listens() -> None:
    """
    A plain TCP endpoint listens with C{listenTCP}, as Twisted's does;
    another description gets Twisted's endpoint.
    """
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    endpoint = server_endpoint(reactor, "tcp6:0:interface=\\:\\:1:backlog=7")
    assert isinstance(endpoint, TCPServerEndpoint)
    ports = []
    endpoint.listen("factory").addCallback(ports.append)
    assert len(ports) == 1
    assert reactor.tcpServers == [(0, "factory", 7, "::1")]
    assert not isinstance(server_endpoint(reactor, "unix:/tmp/x.sock"), TCPServerEndpoint)
