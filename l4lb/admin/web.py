"""
The statistics web pages (C{stats bind}): C{/} the HTML page, C{/;csv} and
C{/stats.csv} the CSV, C{/stats.json}, C{/metrics} for Prometheus, and
C{/ready} for routing daemons (without credentials).
Every page only reads: the pages answer C{GET} and C{HEAD}, nothing else.
An idle connection is closed after C{stats timeout}; L{l4lb.service} caps
how many are served at once (L{l4lb.admin.cap}).
"""

from __future__ import annotations

import base64
import hmac
from typing import Any, Callable, Optional, Tuple

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from l4lb.admin.history import StatsHistory
from l4lb.admin.html import CONTENT_SECURITY_POLICY, stat_html
from l4lb.admin.metrics import registry_for
from l4lb.admin.render import stat_csv, stat_json
from l4lb.admin.stats import stat_rows
from l4lb.admin.summary import read_summary
from l4lb.interfaces import IBalancerRuntime
from l4lb.readiness import readiness


class _Text(Resource):
    """
    A page rendered afresh by C{render} at each request.
    """

    isLeaf = True

    def __init__(
        self, content_type: bytes, render: Callable[[], str], policy: Optional[str] = None
    ) -> None:
        """
        @param policy: The C{Content-Security-Policy} to send, if any.
        """
        super().__init__()
        self.content_type = content_type
        self.render_text = render
        self.policy = policy

    def render_GET(self, request: Request) -> bytes:
        """
        Answer with the current content, never cached.
        """
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-store")
        if self.policy is not None:
            request.setHeader(b"content-security-policy", self.policy.encode("ascii"))
            request.setHeader(b"x-content-type-options", b"nosniff")
        return self.render_text().encode("utf-8")


class _Metrics(Resource):
    """
    The Prometheus exposition of a registry, rendered in the reactor
    thread (C{prometheus_client.twisted.MetricsResource} runs it in a
    thread pool, which the model must not be read from).
    """

    isLeaf = True

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """
        Answer with the current metrics.
        """
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class _Ready(Resource):
    """
    C{/ready}: C{200 ready} when the instance asks for traffic, C{503 not
    ready: REASON} otherwise (L{l4lb.readiness}).  Routing daemons poll it
    without credentials, like HAProxy's C{monitor-uri}: it tells nothing
    but readiness.
    """

    isLeaf = True

    def __init__(self, service: IBalancerRuntime) -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request: Request) -> bytes:
        """
        Answer with the readiness now, never cached.
        """
        answer = readiness(self.service)
        request.setResponseCode(200 if answer.ready else 503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return answer.text().encode("utf-8")


class StatsRoot(Resource):
    """
    The root of the statistics pages, optionally behind basic
    authentication.
    """

    def __init__(
        self,
        service: IBalancerRuntime,
        clock: Any,
        auth: Optional[Tuple[str, str]] = None,
        history: Optional[StatsHistory] = None,
    ):
        """
        @param history: The trends drawn on the HTML page, if kept.
        """
        super().__init__()
        self.auth = auth
        started = getattr(service, "started", None)
        self.started = clock.seconds() if started is None else started

        def rows() -> Any:
            return stat_rows(service, clock.seconds())

        def page() -> str:
            now = clock.seconds()
            current = stat_rows(service, now)
            summary = read_summary(service, now, self.started, current)
            return stat_html(current, summary, history)

        self.ready = _Ready(service)
        self.page = _Text(b"text/html; charset=utf-8", page, CONTENT_SECURITY_POLICY)
        csv_page = _Text(b"text/plain; charset=utf-8", lambda: stat_csv(rows()))
        self.children = {
            b"": self.page,
            b";csv": csv_page,
            b"stats.csv": csv_page,
            b"stats.json": _Text(b"application/json", lambda: stat_json(rows())),
            b"metrics": _Metrics(registry_for(service, clock)),
        }

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        """
        The child page, or the 401 page when the credentials are wrong.
        """
        if path == b"ready" and not request.postpath:
            return self.ready
        if not self.authorized(request):
            return _Unauthorized()
        return super().getChildWithDefault(path, request)

    def render_GET(self, request: Request) -> bytes:
        """
        C{/} without a trailing segment: the HTML page.
        """
        if not self.authorized(request):
            return _Unauthorized().render(request)  # type: ignore[no-any-return]
        return self.page.render_GET(request)

    def authorized(self, request: Request) -> bool:
        """
        Whether C{request} carries the configured credentials (always true
        without C{stats auth}).
        """
        if self.auth is None:
            return True
        header = request.getHeader(b"authorization") or b""
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            return False
        wanted = f"{self.auth[0]}:{self.auth[1]}".encode("utf-8")
        return hmac.compare_digest(given, wanted)


class _Unauthorized(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="l4lb statistics"')
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Authentication required.\n"


class _StatsChannel(HTTPChannel):
    """
    An HTTP/1.1 connection to the statistics pages that times out without
    logging: idle clients are routine here (a scraper keeping its
    connection open between scrapes), and one log line each would bury the
    process log.
    """

    _abort: Any = None

    def timeoutConnection(self) -> None:
        """
        Close the idle connection; abort it if it is still open
        C{abortTimeout} seconds later (a client that stopped reading).
        """
        if self.abortTimeout is not None:
            self._abort = self.callLater(
                self.abortTimeout, self.transport.abortConnection  # type: ignore[union-attr]
            )
        self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Forget the abort timer, then end as usual.
        """
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        super().connectionLost(reason)


class _QuietSite(Site):
    """
    A site that writes no access log: the process log is for connections
    and state changes.
    """

    protocol = _StatsChannel  # type: ignore[assignment]

    def log(self, request: Any) -> None:
        """
        Log nothing.
        """


def stats_site(
    service: IBalancerRuntime,
    clock: Any,
    auth: Optional[Tuple[str, str]] = None,
    timeout: float = 10.0,
    history: Optional[StatsHistory] = None,
) -> Site:
    """
    The web site of the statistics pages.

    @param clock: The reactor's time: the pages' timestamps and the idle
        timers of the connections.
    @param timeout: Seconds a connection may stay idle before it is closed
        (C{stats timeout}); Twisted's own default is twelve hours, which
        lets idle clients hold descriptors the traffic needs.
    @param history: The trends the HTML page draws, if kept.
    """
    site = _QuietSite(StatsRoot(service, clock, auth, history), timeout=timeout, reactor=clock)
    site.displayTracebacks = False
    site.noisy = False
    return site
