"""
Fixtures for the end-to-end tests: real backends, config files, and l4lb
started with C{twistd} from the venv the tests run in.

The tests run what is installed, not the source tree: install l4lb into the
venv first (C{pip install .}), and run pytest with that venv's python.
Everything under this directory carries the C{e2e} marker, so
C{pytest -m "not e2e"} runs the unit tests alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Protocol, Sequence, TypeVar

import pytest

from .backends import ThreadedServer
from .harness import (
    Balancer,
    BackendSection,
    FrontendSection,
    render_config,
    twistd_path,
)

HERE = Path(__file__).resolve().parent

S = TypeVar("S", bound=ThreadedServer)


class StartServer(Protocol):
    """
    The C{servers} fixture: starts a backend, which is stopped after the test.
    """

    def __call__(self, server: S) -> S:
        """
        Start C{server} and return it.
        """


UNHANDLED = ("Traceback (most recent call last)", "Unhandled Error", "Unhandled error")
"""Output that means l4lb let an exception escape."""


def pytest_configure(config: pytest.Config) -> None:
    """
    Register the C{e2e} marker.
    """
    config.addinivalue_line(
        "markers", "e2e: runs l4lb with twistd against real loopback sockets"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """
    Mark every test collected from this directory C{e2e}.
    """
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def twistd() -> str:
    """
    The path of C{twistd}; fails clearly when the venv has none.
    """
    path = twistd_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"no twistd next to {os.path.dirname(path)}: install l4lb into this venv")
    return path


@pytest.fixture
def rundir(tmp_path: Path) -> Path:
    """
    An empty working directory for subprocesses, outside the source tree so
    that they import the installed l4lb.
    """
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture
def servers() -> Iterator[StartServer]:
    """
    Start a backend server and stop it after the test: C{servers(EchoServer("s1"))}.
    """
    started: List[ThreadedServer] = []

    def start(server: S) -> S:
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


class BalancerFactory:
    """
    Writes configs and starts balancers for one test; stops them all after it.
    """

    def __init__(self, tmp_path: Path, rundir: Path) -> None:
        self.tmp_path = tmp_path
        self.rundir = rundir
        self.started: List[Balancer] = []
        self._configs = 0
        self.relay: Optional[str] = None
        self.reactor: Optional[str] = None

    def write(self, text: str, name: Optional[str] = None) -> Path:
        """
        Write a config file and return its absolute path.
        """
        self._configs += 1
        path = self.tmp_path / (name or f"lb{self._configs}.ini")
        path.write_text(text)
        return path

    def start(
        self,
        frontends: Sequence[FrontendSection],
        backends: Sequence[BackendSection],
        **options: object,
    ) -> Balancer:
        """
        Render and write a config, start l4lb with it and wait until every
        frontend logged that it started.

        @param options: C{defaults} and C{global_} for L{render_config}; the
            factory's C{relay}, when set, becomes C{tune.relay}; its
            C{reactor}, when set, becomes twistd's C{--reactor}.
        """
        if self.relay is not None:
            given: Any = options.get("global_") or {}
            options["global_"] = {"tune.relay": self.relay, **given}
        text = render_config(frontends, backends, **options)  # type: ignore[arg-type]
        return self.start_file(self.write(text), [fe.name for fe in frontends])

    def start_file(self, config: Path, frontends: Sequence[str]) -> Balancer:
        """
        Start l4lb with an existing config file and wait until it is ready.
        """
        lb = Balancer.l4lb(str(config), str(self.rundir), frontends, reactor=self.reactor)
        self.started.append(lb)
        lb.start()
        lb.wait_ready()
        return lb


@pytest.fixture
def balancers(twistd: str, tmp_path: Path, rundir: Path) -> Iterator[BalancerFactory]:
    """
    A L{BalancerFactory}; every balancer it started is stopped with SIGTERM
    after the test. An unclean exit, or a traceback anywhere in the output,
    fails the test.
    """
    factory = BalancerFactory(tmp_path, rundir)
    yield factory
    errors = []
    for lb in factory.started:
        if lb.process is None:
            continue
        if lb.process.returncode is None:
            try:
                lb.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                lb.kill()
        crashes = [
            line
            for line in lb.lines() + lb.stderr_lines()
            if any(mark in line for mark in UNHANDLED)
        ]
        if crashes and not errors:
            errors.append(f"unhandled errors in the output\n{lb.output(200)}")
    if errors:
        pytest.fail("\n\n".join(errors))


CLIENT_COUNTS: List[str] = []
"""Lines of the real-clients suite's counts, printed at the end of the run."""


@pytest.fixture
def client_counts(request: pytest.FixtureRequest) -> Callable[..., None]:
    """
    Record what a real client did through l4lb (requests, errors, lost
    replies, ...) so that the run prints it in its summary, passed or not:
    C{client_counts("redis-benchmark", requests=20000, errors=0)}.
    """

    def record(client: str, **counts: object) -> None:
        shown = " ".join(f"{key.replace('_', ' ')}={value}" for key, value in counts.items())
        CLIENT_COUNTS.append(f"{request.node.name}: {client}: {shown}")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """
    Print the real clients' counts recorded with C{client_counts}.
    """
    if CLIENT_COUNTS:
        terminalreporter.section("real clients through l4lb")
        for line in CLIENT_COUNTS:
            terminalreporter.write_line(line)


@pytest.fixture(params=["lean", "classic"])
def both_relays(request: pytest.FixtureRequest, balancers: BalancerFactory) -> str:
    """
    Run a test once with each data path (C{tune.relay = lean} and
    C{classic}): every balancer it starts uses that path.
    """
    balancers.relay = request.param
    return str(request.param)
