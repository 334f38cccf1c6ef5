"""
Tests for L{l4lb._twistedcompat}: the check of the parts of Twisted's
private API l4lb relies on, the Twisted range it names, and that no other
module of l4lb uses Twisted's private API.
"""

from __future__ import annotations

import ast
import configparser
import dis
import importlib
import re
import sys
import types
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest
import twisted
from twisted.internet import base, epollreactor, posixbase, tcp
from twisted.protocols import tls

from l4lb import _twistedcompat as compat

L4LB = Path(compat.__file__).parent
SETUP_CFG = L4LB.parent / "setup.cfg"


def test_the_installed_twisted_has_everything() -> None:
    """The Twisted the tests run with has every private part l4lb uses."""
    assert compat.missing() == []
    compat.check()


@pytest.mark.parametrize(
    "owner, name, named",
    [
        (posixbase, "_NO_FILEDESC", "_NO_FILEDESC"),
        (tls.TLSMemoryBIOProtocol, "_flushSendBIO", "TLSMemoryBIOProtocol._flushSendBIO()"),
        (tls.TLSMemoryBIOProtocol, "_handshakeDone", "TLSMemoryBIOProtocol._handshakeDone"),
        (epollreactor.EPollReactor, "_disconnectSelectable", "_disconnectSelectable()"),
    ],
)
def test_a_missing_part_is_named_with_the_tested_range(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, named: str
) -> None:
    """A Twisted that lacks one of the private parts is refused, with the
    part named, the installed version and the range l4lb is tested with."""
    for klass in getattr(owner, "__mro__", (owner,)):
        if name in vars(klass):
            monkeypatch.delattr(klass, name)
    with pytest.raises(ImportError) as raised:
        compat.check()
    message = str(raised.value)
    assert named in message
    assert f"Twisted {twisted.__version__}" in message
    assert compat.TESTED in message


def test_reactor_state_set_elsewhere_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoll reactor that no longer sets up its descriptor table and
    epoll object itself is refused, naming each attribute."""

    def __init__(self: Any) -> None:
        base.ReactorBase.__init__(self)

    monkeypatch.setattr(epollreactor.EPollReactor, "__init__", __init__)
    lacking = compat.missing()
    for name in ("_poller", "_selectables", "_reads", "_writes"):
        assert f"EPollReactor.{name}" in lacking


def test_reactor_state_replaced_after_construction_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoll reactor that replaces its epoll object after construction
    is refused: l4lb's reactor names it once."""

    def reopen(self: Any) -> None:
        self._poller = None

    monkeypatch.setattr(epollreactor.EPollReactor, "reopen", reopen, raising=False)
    assert "EPollReactor._poller set only by __init__ (not by reopen)" in compat.missing()


def test_a_missing_proxy_parser_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Twisted without its private PROXY protocol parser module is
    refused, naming the module."""
    monkeypatch.setitem(sys.modules, "twisted.protocols.haproxy._v2parser", None)
    assert "twisted.protocols.haproxy._v2parser.V2Parser.feed()" in compat.missing()


def test_a_changed_server_transport_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C{tcp.Server} whose constructor takes other arguments is refused:
    l4lb builds it by hand."""

    def __init__(self: Any, sock: Any, protocol: Any, reactor: Any) -> None:
        pass

    monkeypatch.setattr(tcp.Server, "__init__", __init__)
    assert any(m.startswith("tcp.Server(") for m in compat.missing())


def test_a_name_twisted_takes_for_itself_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Twisted whose epoll reactor gains an attribute of the name l4lb
    gives its own accessor is refused rather than silently shadowed."""
    monkeypatch.setattr(epollreactor.EPollReactor, "poller", None, raising=False)
    assert "no EPollReactor.poller of its own (l4lb adds one)" in compat.missing()


def test_every_added_name_is_checked() -> None:
    """Each name the compat classes add to Twisted's is in the list the
    check looks for in Twisted's classes."""
    for cls, twisted_name in (
        (compat.EPollInternals, "EPollReactor"),
        (compat.TLSTransportInternals, "BufferingTLSTransport"),
    ):
        added = {n for n in vars(cls) if not n.startswith("_")}
        if "__init__" in vars(cls):
            # And the attributes its constructor sets.
            for step in dis.get_instructions(cls.__init__):
                if step.opname == "STORE_ATTR" and not step.argval.startswith("_"):
                    added.add(step.argval)
        assert added == set(compat._ADDED[twisted_name])


def test_tested_range_is_the_bound_in_setup_cfg() -> None:
    """The range the check names is the one C{setup.cfg} installs, and the
    installed Twisted is in it."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    requires = config["options"]["install_requires"].splitlines()
    (twisted_line,) = [r for r in requires if r.strip().lower().startswith("twisted")]
    spec = twisted_line.strip()[len("twisted") :]
    assert spec.replace(" ", "") == compat.TESTED.replace(" ", "")
    lower = re.search(r">=\s*([\d.]+)", spec)
    upper = re.search(r"<\s*([\d.]+)", spec)
    assert lower is not None and upper is not None
    installed = tuple(int(p) for p in twisted.__version__.split(".")[:2])
    assert tuple(int(p) for p in lower.group(1).split(".")) <= installed
    assert installed < tuple(int(p) for p in upper.group(1).split("."))


# What l4lb may not do outside the compat module.


def _private_twisted_names() -> Set[str]:
    """
    The underscore names of the Twisted classes whose internals l4lb uses:
    their attributes and methods, and the attributes their methods set.
    """
    from twisted.internet import udp

    return _private_names_of(
        [epollreactor.EPollReactor, tls.BufferingTLSTransport, tcp.Server, tcp.Port, tcp.Client, udp.Port]
    )


def _private_names_of(classes: List[Any]) -> Set[str]:
    """
    The underscore names Twisted's classes among C{classes} and their bases
    define or set.
    """
    names: Set[str] = set()
    for cls in classes:
        for klass in getattr(cls, "__mro__", ()):
            if not klass.__module__.startswith("twisted"):
                continue
            for name, value in vars(klass).items():
                names.add(name)
                code = getattr(value, "__code__", None)
                # PyPy's built-in methods have a __code__ without co_names.
                if isinstance(code, types.CodeType):
                    names.update(code.co_names)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _twisted_names(tree: ast.Module) -> Dict[str, Any]:
    """
    The names a module binds to something imported from Twisted, and what
    each is.
    """
    bound: Dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
            for alias in node.names:
                try:
                    module = importlib.import_module(node.module or "")
                except ImportError:
                    module = None
                bound[alias.asname or alias.name] = getattr(module, alias.name, None)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("twisted"):
                    bound[(alias.asname or alias.name).split(".")[0]] = None
    return bound


def _resolve(node: ast.expr, bound: Dict[str, Any]) -> Any:
    """
    The Twisted object a base class expression names, or C{None}.
    """
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        return getattr(_resolve(node.value, bound), node.attr, None)
    return None


def _root(node: ast.expr) -> str:
    """
    The name an attribute, call or subscript expression starts from.
    """
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _violations(path: Path, private: Set[str]) -> Iterator[str]:
    """
    Each use of Twisted's private API in the module at C{path}, as
    C{path:line: what}.

    @param private: The private names of the Twisted classes l4lb builds
        on, which no object but a class's own instance may be asked for.
    """
    tree = ast.parse(path.read_text(), str(path))
    from_twisted = _twisted_names(tree)
    where = path.relative_to(L4LB.parent) if path.is_relative_to(L4LB.parent) else path.name

    def visit(node: ast.AST, inherited: Set[str]) -> Iterator[str]:
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                modules = [a.name for a in node.names]
            for module in modules:
                if module.startswith("twisted") and any(p.startswith("_") for p in module.split(".")):
                    yield f"{where}:{line}: imports Twisted's private module {module}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        yield f"{where}:{line}: imports Twisted's private {alias.name}"
        elif isinstance(node, ast.ClassDef):
            # What a class built on Twisted's may not touch on itself: the
            # private names of those Twisted bases.
            bases = [_resolve(b, from_twisted) for b in node.bases if _root(b) in from_twisted]
            own = _private_names_of([b for b in bases if isinstance(b, type)])
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name in own:
                    yield f"{where}:{child.lineno}: overrides Twisted's private {child.name}()"
                yield from visit(child, own)
            return
        elif isinstance(node, ast.Attribute):
            on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            if node.attr in (inherited if on_self else private):
                yield f"{where}:{line}: uses Twisted's private {node.attr}"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "doRead":
                    yield f"{where}:{line}: replaces a doRead method"
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "Server" and _root(func) in from_twisted:
                yield f"{where}:{line}: builds a Twisted transport by hand"
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inherited)

    yield from visit(tree, set())


def test_no_private_twisted_api_outside_the_compat_module() -> None:
    """No module of l4lb but the compat module (and its TLS half) imports Twisted's private
    modules or names, reaches the private attributes of the Twisted classes
    it builds on, overrides their private methods, replaces a C{doRead} or
    builds a Twisted transport by hand."""
    private = _private_twisted_names()
    found: List[str] = []
    for path in sorted(L4LB.rglob("*.py")):
        if path.name not in ("_twistedcompat.py", "_twistedcompat_tls.py"):
            found.extend(_violations(path, private))
    assert found == []


def test_the_scan_finds_each_kind_of_use(tmp_path: Path) -> None:
    """The scan above reports each kind of private use it looks for, so
    that it cannot pass by finding nothing."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from twisted.internet import tcp\n"
        "from twisted.internet.posixbase import _NO_FILEDESC\n"
        "from twisted.protocols.haproxy._v1parser import V1Parser\n"
        "from twisted.protocols.tls import BufferingTLSTransport\n"
        "class T(BufferingTLSTransport):\n"
        "    def _flushReceiveBIO(self):\n"
        "        return self._tlsConnection\n"
        "def f(reactor, port, sock):\n"
        "    port.doRead = None\n"
        "    reactor._poller.poll()\n"
        "    return tcp.Server(sock, None, None, None, 0, reactor)\n"
    )
    found = list(_violations(sample, _private_twisted_names()))
    text = "\n".join(found)
    for expected in (
        "private _NO_FILEDESC",
        "private module twisted.protocols.haproxy._v1parser",
        "overrides Twisted's private _flushReceiveBIO()",
        "private _tlsConnection",
        "replaces a doRead",
        "private _poller",
        "by hand",
    ):
        assert expected in text, text
