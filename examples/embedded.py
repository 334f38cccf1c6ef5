"""
l4lb inside another Twisted program: the configuration is built in code,
the balancer runs on the program's own reactor, and the program talks
through it.

    python examples/embedded.py

It starts an echo server of its own on a free loopback port, puts a
balancer in front of it (also on a free loopback port), sends a line
through the balancer, prints the answer and the connection's log line,
and stops.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, endpoints, protocol, task
from twisted.protocols.basic import LineReceiver

from l4lb.api import (
    Backend,
    BindSpec,
    Config,
    Frontend,
    MemorySink,
    ServerSpec,
    Timeouts,
    service_from_config,
)


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Ask(LineReceiver):
    delimiter = b"\n"

    def __init__(self) -> None:
        self.answer: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendLine(b"hello through l4lb")

    def lineReceived(self, line: bytes) -> None:
        self.answer.callback(line)
        self.transport.loseConnection()


async def main(reactor: Any) -> None:
    echo_factory = protocol.Factory.forProtocol(Echo)
    echo = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        echo_factory
    )
    echo_port = echo.getHost().port

    config = Config(
        frontends=(
            Frontend(
                name="app",
                binds=(BindSpec("tcp:0:interface=127.0.0.1"),),
                default_backend="app_servers",
                timeouts=Timeouts(client=30.0),
            ),
        ),
        backends=(
            Backend(
                name="app_servers",
                servers=(
                    ServerSpec(name="local", host="127.0.0.1", port=echo_port, address="127.0.0.1"),
                ),
                timeouts=Timeouts(connect=2.0, server=30.0),
            ),
        ),
    )
    logs = MemorySink()
    balancer = service_from_config(config, reactor, sink=logs)
    balancer.startService()
    await balancer.ready
    port = balancer.ports["app"][0].getHost().port

    client = Ask()
    await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
        protocol.Factory.forProtocol(lambda: client)
    )
    answer = await client.answer
    print("answer:", answer.decode())

    # The line is written once both sockets are closed.
    for _ in range(500):
        if logs.lines:
            break
        await task.deferLater(reactor, 0.01)
    print("log:", logs.lines[0])

    await balancer.stopService()
    await echo.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
