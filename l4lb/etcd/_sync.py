"""
From the keys under a prefix to a backend's servers.

A key's last segment is a server's name, its value a server line's text:
C{ADDR:PORT [server options]}, where the administrative words C{drain},
C{maint} (and C{ready}) set the server's state as C{set server ... state}
would.  L{ServerSync} turns each put and delete into the runtime API's
changes (L{l4lb.interfaces.IBalancerRuntime}: C{add_server},
C{remove_server}, C{set_server_address}, C{set_server_admin}), so that a
server from etcd is made and changed exactly as one added on the admin
socket.

A server is removed only once its connections have ended: a deleted key
first drains it (no new connection, the established ones finish), then
puts it in maintenance and removes it.  A change of options that cannot be
applied to a running server (anything but its address, its weight and its
state) re-creates it the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set, Tuple

import attr
from twisted.logger import Logger

from l4lb.config.errors import InvalidValue
from l4lb.config.servers import check_name, parse_address, split_words
from l4lb.config.units import is_ip_literal
from l4lb.interfaces import IBalancerRuntime

_log = Logger(namespace="l4lb")

#: The words of a value that set the administrative state, not options.
ADMIN_WORDS = ("ready", "drain", "maint")

#: Seconds between looks at a server waiting for its connections to end
#: before it is removed.
REMOVAL_POLL = 0.5

#: The cause given to the runtime API, shown by C{show servers state} and
#: in the logs.
CAUSE = "etcd"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Wanted:
    """
    A server as a key's value describes it.

    @ivar address: C{ADDR:PORT} as written.
    @ivar host: The address's host.
    @ivar port: The address's port.
    @ivar options: The server options' words, in order.
    @ivar admin: C{"ready"}, C{"drain"} or C{"maint"}.
    """

    address: str
    host: str
    port: int
    options: Tuple[str, ...]
    admin: str

    @property
    def line(self) -> str:
        """
        The server line's text the runtime API takes (no state words).
        """
        return " ".join((self.address,) + self.options)

    @property
    def enabled(self) -> bool:
        """
        Whether the server starts in service rather than in maintenance.
        """
        return self.admin != "maint" and "disabled" not in self.options


def parse_value(text: str) -> Wanted:
    """
    Understand a key's value: C{ADDR:PORT [options] [drain|maint|ready]}.

    @raise InvalidValue: When it has no valid address first.
    """
    words = split_words(text) if text.strip() else []
    if not words:
        raise InvalidValue("empty value; expected ADDR:PORT [server options]")
    host, port = parse_address(words[0])
    admin = "ready"
    options = []
    for word in words[1:]:
        if word.lower() in ADMIN_WORDS:
            admin = word.lower()
        else:
            options.append(word)
    return Wanted(words[0], host, port, tuple(options), admin)


def server_name(key: str, prefix: str) -> str:
    """
    The server a key names: what follows the prefix.

    @raise InvalidValue: When that is not a server name (empty, a deeper
        path, characters a server name cannot have).
    """
    name = key[len(prefix) :]
    if not name or "/" in name:
        raise InvalidValue(
            f"the key {key!r} does not name a server: expected {prefix}NAME"
        )
    check_name(name, "server")
    return name


def _weight_only(before: Tuple[str, ...], after: Tuple[str, ...]) -> Optional[int]:
    """
    The new weight when two option lists differ only by the value of
    C{weight}; else C{None}.
    """
    if len(before) != len(after):
        return None
    weight = None
    for index, (old, new) in enumerate(zip(before, after)):
        if old == new:
            continue
        if index > 0 and before[index - 1] == after[index - 1] == "weight":
            try:
                weight = int(new)
            except ValueError:
                return None
            if not 0 <= weight <= 256:
                return None
            continue
        return None
    return weight


@attr.s(auto_attribs=True)
class ServerSync:
    """
    Keeps the servers of one backend as the keys of one prefix say.

    @ivar service: The running balancer (L{l4lb.interfaces.IBalancerRuntime}).
    @ivar backend: The backend's name.
    @ivar clock: What schedules the looks at servers waiting for removal.
    @ivar known: What each server made from a key was last told, by name:
        the servers this sync owns.
    @ivar waiting: The servers waiting for their connections to end, by
        name, with what to make again once removed (C{None}: nothing).
    """

    service: IBalancerRuntime
    backend: str
    clock: Any
    known: Dict[str, Wanted] = attr.Factory(dict)
    waiting: Dict[str, Optional[Wanted]] = attr.Factory(dict)
    _told: Set[Tuple[str, str]] = attr.Factory(set)
    _poll: Any = None

    # -- what a prefix says ---------------------------------------------------

    def replace_all(self, values: Dict[str, str], prefix: str) -> None:
        """
        Make the servers what a whole listing of the prefix says: the
        servers made from keys that are gone are removed, the others added
        or changed.
        """
        wanted: Dict[str, str] = {}
        for key, value in values.items():
            name = self._name(key, prefix)
            if name is not None:
                wanted[name] = value
        for name in list(self.known):
            if name not in wanted:
                self._safely(name, self.delete, name)
        for name, value in sorted(wanted.items()):
            self._safely(name, self.put, name, value)
        if self.waiting:
            # Removals begun under an earlier watch go on under this one.
            self._finish_waiting()

    def put_key(self, key: str, value: str, prefix: str) -> None:
        """
        A key was created or changed.
        """
        name = self._name(key, prefix)
        if name is not None:
            self._safely(name, self.put, name, value)

    def delete_key(self, key: str, prefix: str) -> None:
        """
        A key was deleted.
        """
        name = key[len(prefix) :]
        if name in self.known:
            self._safely(name, self.delete, name)

    def _safely(self, name: str, change: Callable[..., None], *args: Any) -> None:
        """
        Apply one key's change; one the runtime refuses (a server of an
        C{nbproc} backend) is logged and must not stop the watch.
        """
        try:
            change(*args)
        except Exception as error:
            self._tell_once(name, f"server {self.backend}/{name} from etcd: {error}")

    def _name(self, key: str, prefix: str) -> Optional[str]:
        try:
            return server_name(key, prefix)
        except InvalidValue as error:
            self._tell_once(key, f"etcd key {key!r} ignored: {error.message}")
            return None

    # -- one server ---------------------------------------------------------

    def put(self, name: str, value: str) -> None:
        """
        Make server C{name} what C{value} says: add it, change it, or
        re-create it once its connections end.
        """
        try:
            wanted = parse_value(value)
        except InvalidValue as error:
            self._tell_once(name, f"server {self.backend}/{name} from etcd: {error.message}; ignored")
            return
        backend = self.service.backends.get(self.backend)
        if backend is None:
            return
        if self._in_file(name):
            self._tell_once(
                name,
                f"server {self.backend}/{name} from etcd is ignored: the configuration"
                " file defines a server of that name, and the file wins",
            )
            return
        if name in self.waiting:
            self.waiting[name] = wanted
            self.known[name] = wanted
            self._finish_waiting()
            return
        server = self._find(name)
        if server is None:
            self._add(name, wanted)
            return
        before = self.known.get(name)
        self.known[name] = wanted
        if before is None:
            # A server the runtime knew before this sync (a state file, an
            # earlier process): adopt it, and apply what can be applied.
            before = Wanted(wanted.address, server.address, server.port, wanted.options, server.admin)
        if before == wanted:
            return
        self._forget(name)
        if before.options != wanted.options:
            weight = _weight_only(before.options, wanted.options)
            if weight is None:
                self._recreate(name, server, wanted)
                return
            server.set_weight(weight)
        if (before.host, before.port) != (wanted.host, wanted.port):
            if not is_ip_literal(wanted.host):
                # Only an IP address can be set in place; a name is
                # resolved when the server is made.
                self._recreate(name, server, wanted)
                return
            self.service.set_server_address(server, wanted.host, wanted.port, CAUSE)
        if before.admin != wanted.admin:
            self.service.set_server_admin(server, wanted.admin, CAUSE)

    def delete(self, name: str) -> None:
        """
        Remove server C{name} once its connections have ended; until then
        it is drained.
        """
        self.known.pop(name, None)
        server = self._find(name)
        if server is None or self._in_file(name):
            self.waiting.pop(name, None)
            return
        self.waiting[name] = None
        if server.admin == "ready":
            self.service.set_server_admin(server, "drain", CAUSE)
        self._finish_waiting()

    def _add(self, name: str, wanted: Wanted) -> None:
        try:
            server = self.service.add_server(self.backend, name, wanted.line, wanted.enabled)
        except Exception as error:
            # The same refusal as 'add server' on the admin socket.
            self._tell_once(name, f"server {self.backend}/{name} from etcd cannot be added: {error}")
            self.known.pop(name, None)
            return
        self.known[name] = wanted
        self._forget(name)
        if wanted.admin == "drain":
            self.service.set_server_admin(server, "drain", CAUSE)
        _log.info(
            "Server {backend}/{server} added from etcd ({line}).",
            backend=self.backend,
            server=name,
            line=wanted.line,
        )

    def _recreate(self, name: str, server: Any, wanted: Wanted) -> None:
        _log.info(
            "Server {backend}/{server}: new options from etcd; it is drained and"
            " made again once its connections end.",
            backend=self.backend,
            server=name,
        )
        self.waiting[name] = wanted
        if server.admin == "ready":
            self.service.set_server_admin(server, "drain", CAUSE)
        self._finish_waiting()

    # -- removals that wait for connections --------------------------------

    def _finish_waiting(self) -> None:
        """
        Remove every waiting server whose connections have ended (and make
        again those whose key says so); look again later for the others.
        """
        for name, then in list(self.waiting.items()):
            server = self._find(name)
            if server is not None:
                if server.current or server.sessions:
                    continue
                if server.admin != "maint":
                    self.service.set_server_admin(server, "maint", CAUSE)
                try:
                    self.service.remove_server(self.backend, name)
                except Exception as error:
                    _log.info(
                        "Server {backend}/{server}: removal waits ({reason}).",
                        backend=self.backend,
                        server=name,
                        reason=str(error),
                    )
                    continue
                _log.info(
                    "Server {backend}/{server} removed (its etcd key is {what}).",
                    backend=self.backend,
                    server=name,
                    what="changed" if then is not None else "gone",
                )
            del self.waiting[name]
            if then is not None:
                self._add(name, then)
        if self.waiting and (self._poll is None or not self._poll.active()):
            self._poll = self.clock.callLater(REMOVAL_POLL, self._finish_waiting)

    def stop(self) -> None:
        """
        Stop looking at the servers waiting for removal (the service
        stops).
        """
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None

    # -- helpers ------------------------------------------------------------

    def _in_file(self, name: str) -> bool:
        """
        Whether the configuration file defines server C{name} (a reload may
        have brought it): then it is the file's, not this sync's.
        """
        backend = self.service.backends.get(self.backend)
        if backend is None or not any(s.name == name for s in backend.spec.servers):
            return False
        self.known.pop(name, None)
        self.waiting.pop(name, None)
        return True

    def _find(self, name: str) -> Any:
        try:
            return self.service.find_server(self.backend, name)
        except KeyError:
            return None

    def _forget(self, what: str) -> None:
        """
        Let the problems of C{what} be logged again (it was fixed).
        """
        self._told = {told for told in self._told if told[0] != what}

    def _tell_once(self, what: str, message: str) -> None:
        """
        Log a problem with one key once, not at every re-listing.
        """
        if (what, message) in self._told:
            return
        self._told.add((what, message))
        _log.warn("{message}", message=message)
