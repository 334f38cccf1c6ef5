"""
Twisted's own reactor tests (C{twisted.internet.test}, built with
C{ReactorBuilder}), run against the C{l4lb-epoll} reactor
(L{l4lb.reactor.L4lbEPollReactor}) only.

Twisted builds one test case per reactor it knows, from each builder's
C{_reactors} list, where l4lb's reactor is not.  This module makes, for
every builder whose tests Twisted runs against its own C{EPollReactor},
the same test case with l4lb's reactor as the reactor factory, so that
pytest runs it.  A builder Twisted skips for C{EPollReactor}
(C{skippedReactors}) is not made for l4lb's reactor either, which is an
C{EPollReactor} underneath; an excluded test is not made at all, so the
run reports no skip for it.

Suites run: L{SUITES}.  Suites left out and tests excluded, each with its
reason: L{LEFT_OUT} and L{EXCLUDED}.  Twisted's test modules need
PyHamcrest (l4lb's C{test} extra installs it); a suite that cannot be
imported fails L{test_every_suite_is_there}, saying why, rather than being
skipped.
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Type

import twisted
from twisted.python import log as legacy_log
from twisted.trial.unittest import SynchronousTestCase

import pytest
from twisted.internet.test.reactormixins import ReactorBuilder

from l4lb.reactor import L4lbEPollReactor

#: Twisted's name for the reactor l4lb's extends, in C{skippedReactors}.
TWISTED_EPOLL = "twisted.internet.epollreactor.EPollReactor"

#: The modules of C{twisted.internet.test} whose builders run here, and why
#: each matters to l4lb.
SUITES: Dict[str, str] = {
    "test_core": "start, stop, crash, system event triggers: the main loop l4lb replaces",
    "test_time": "callLater and its wake-ups: the short way through an idle turn",
    "test_threads": "callFromThread and the thread pool: the waker of the main loop",
    "test_fdset": "addReader/removeReader/addWriter, hang-ups and errors: the dispatch l4lb replaces",
    "test_tcp": "TCP ports, connections, half-close, producers and aborts: what l4lb relays",
    "test_udp": "UDP ports and datagrams: what l4lb's UDP frontends use",
    "test_unix": "UNIX sockets and descriptor passing: the admin socket and nbproc's workers",
    "test_process": "spawnProcess, its pipes and SIGCHLD: nbproc's workers and external checks",
    "test_tls": "TLS transports over the reactor's dispatch (startTLS, connectSSL)",
    "test_newtls": "TLS under a half-closed or producing TCP transport",
    "test_socket": "adoptStreamPort and adoptStreamConnection: how nbproc's workers take their sockets",
    "test_stdio": "standard input and output as descriptors (l4lb-epoll under twistd -n)",
}

#: Modules of C{twisted.internet.test} with builders that are not run, and why.
LEFT_OUT: Dict[str, str] = {
    "test_cfreactor": "macOS's CoreFoundation reactor only",
    "test_win32events": "Windows's reactor only",
    "test_reactormixins": "tests of ReactorBuilder itself, against no particular reactor",
}

if sys.implementation.name == "pypy" and not hasattr(__import__("socket"), "if_nameindex"):
    # Moved out of SUITES, so that the run lists it as left out, with why.
    del SUITES["test_udp"]
    LEFT_OUT["test_udp"] = (
        "on PyPy 3.9 only: its socket module has no if_nameindex, which Twisted's test module"
        " imports; the suite runs on CPython"
    )

#: Tests excluded, by C{Builder.test_method} or by C{test_method} for every
#: builder that has it, with the reason.
EXCLUDED: Dict[str, str] = {
    "ReactorFDSetTestsBuilder.test_lostFileDescriptor": (
        "Twisted skips it for every epoll reactor by class name (EPollReactor): closing a"
        " descriptor takes it out of the epoll set without an event, so a replaced"
        " descriptor cannot be noticed; l4lb's reactor is one"
    ),
    "test_logPrefix": (
        "by design: l4lb's reactor calls doRead/doWrite without Twisted's callWithLogger, so a"
        " message logged with the legacy twisted.python.log from inside a handler no longer"
        " carries the transport's logPrefix() as its system (l4lb logs through"
        " twisted.logger with its own namespaces; see l4lb.reactor).  It passes with"
        " Twisted's EPollReactor"
    ),
}


def _runnable_by_uid_1(path: str) -> bool:
    """
    Whether a process of uid 1 (with this process's group) can execute
    C{path}: each directory above it searchable, the file executable.
    """
    path = os.path.realpath(path)
    parts = [path] + [str(p) for p in Path(path).parents]
    for part in parts:
        info = os.stat(part)
        allowed = stat.S_IXOTH | (stat.S_IXGRP if info.st_gid == os.getgid() else 0)
        if not info.st_mode & allowed:
            return False
    return True


if os.getuid() == 0 and not _runnable_by_uid_1(sys.executable):
    EXCLUDED["test_changeUID"] = (
        "environment: run as root, the test starts this Python as uid 1, which cannot execute"
        f" {os.path.realpath(sys.executable)}; it fails the same way with Twisted's EPollReactor"
    )

if (24,) <= tuple(int(p) for p in twisted.__version__.split(".")[:2]) < (26,):
    EXCLUDED["test_environmentForkEnvNone"] = (
        "Twisted 24 and 25 (seen with 24.7; it passes with 23.10 and 26.10): under pytest the"
        " child's environment and the parent's os.environ differ by COLUMNS; it fails the"
        " same way with Twisted's EPollReactor under pytest"
    )


def _builders(module: Any) -> List[Type[ReactorBuilder]]:
    """
    The builders whose tests Twisted runs against its C{EPollReactor} in
    C{module}, in a stable order.
    """
    found: Dict[str, Type[ReactorBuilder]] = {}
    for name, case in vars(module).items():
        if (
            isinstance(case, type)
            and issubclass(case, SynchronousTestCase)
            and issubclass(case, ReactorBuilder)
            and name.endswith("_EPollReactorTests")
        ):
            builder = case.__bases__[0]
            found[builder.__name__] = builder
    return [found[name] for name in sorted(found)]


def _case(builder: Type[ReactorBuilder]) -> Type[SynchronousTestCase]:
    """
    The test case of C{builder} with l4lb's reactor.
    """
    body: Dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"Twisted's {builder.__name__} against l4lb's epoll reactor.",
        "reactorFactory": L4lbEPollReactor,
    }
    for key in EXCLUDED:
        owner, _, method = key.rpartition(".")
        if owner in ("", builder.__name__) and hasattr(builder, method):
            # Not made at all rather than skipped: an excluded test is
            # listed above with its reason, never reported as run.
            body[method] = None
    name = f"{builder.__name__}_L4lbEPollReactorTests"
    return type(name, (builder, SynchronousTestCase), body)


#: The suites that could not be imported, and why.
UNAVAILABLE: Dict[str, str] = {}


def _collect() -> Dict[str, Type[SynchronousTestCase]]:
    """
    The test cases of every suite in L{SUITES} that can be imported; the
    others go to L{UNAVAILABLE}.
    """
    cases: Dict[str, Type[SynchronousTestCase]] = {}
    for module_name in SUITES:
        try:
            module = importlib.import_module(f"twisted.internet.test.{module_name}")
        except ImportError as e:
            UNAVAILABLE[module_name] = f"{type(e).__name__}: {e}"
            continue
        builders = [
            b for b in _builders(module)
            if TWISTED_EPOLL not in (getattr(b, "skippedReactors", {}) or {})
        ]
        if not builders:
            raise AssertionError(
                f"twisted.internet.test.{module_name} has no builder run against EPollReactor:"
                " the way this module finds Twisted's reactor tests no longer works"
            )
        for builder in builders:
            case = _case(builder)
            cases[case.__name__] = case
    return cases


globals().update(_collect())


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Run each test in its own directory: Twisted's tests make their files
    and UNIX sockets under the current directory (C{mktemp}).  Legacy log
    observers a test leaves behind (C{test_connectionLostLogMsg} adds its
    observer twice and removes it once) are removed, so that they cannot
    change what later tests of the run see of the log.
    """
    monkeypatch.chdir(tmp_path)
    before = list(legacy_log.theLogPublisher.observers)
    yield
    for observer in legacy_log.theLogPublisher.observers:
        if observer not in before:
            legacy_log.removeObserver(observer)


@pytest.mark.parametrize("module_name", sorted(SUITES))
def test_every_suite_is_there(module_name: str) -> None:
    """Each of Twisted's reactor test modules listed above can be imported
    and runs here."""
    if module_name in UNAVAILABLE:
        hint = ""
        if "hamcrest" in UNAVAILABLE[module_name]:
            hint = (
                "; Twisted's test modules need PyHamcrest, which l4lb's test extra"
                " installs (script/install test)"
            )
        why = UNAVAILABLE[module_name]
        pytest.fail(f"twisted.internet.test.{module_name} cannot be imported: {why}{hint}")


def test_every_exclusion_names_a_test_that_exists() -> None:
    """Each excluded test is one of Twisted's tests run here, so that an
    exclusion cannot outlive the test it excludes."""
    known = {
        f"{builder.__name__}.{name}"
        for module_name in SUITES
        if module_name not in UNAVAILABLE
        for builder in _builders(importlib.import_module(f"twisted.internet.test.{module_name}"))
        for name in dir(builder)
        if name.startswith("test_")
    }
    known |= {name.rpartition(".")[2] for name in known}
    assert not UNAVAILABLE, f"not every suite could be imported: {sorted(UNAVAILABLE)}"
    assert set(EXCLUDED) <= known, set(EXCLUDED) - known


def test_suites_run_l4lb_reactor_only() -> None:
    """Every test case made here builds l4lb's reactor and no other."""
    cases = [
        c
        for c in globals().values()
        if isinstance(c, type) and issubclass(c, ReactorBuilder) and issubclass(c, SynchronousTestCase)
    ]
    assert cases
    assert all(c.reactorFactory is L4lbEPollReactor for c in cases)
