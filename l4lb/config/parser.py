"""
Turning C{lb.ini} into a L{l4lb.config.model.Config}.

    config = load_config("/etc/l4lb/lb.ini")
    config, warnings = load_config_with_warnings("/etc/l4lb/lb.ini")

Every error of the file is collected and raised together as one
L{ConfigError}; a file with any error never yields a C{Config}.  Warnings
(as HAProxy gives them: a missing timeout, a backend without servers, a
timeout set where it cannot apply) do not stop parsing and come back from
the C{*_with_warnings} functions; a L{ConfigError} carries them too, in
C{ConfigError.warnings}.

Host names of servers are not resolved here: see
L{l4lb.config.resolve.resolve_config}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import attr

from l4lb.config._ini import decode_text
from l4lb.config._resolvers import build_resolvers, build_templates, check_references
from l4lb.config._sections import Section, SectionReader
from l4lb.config.dns import RESOLVERS
from l4lb.config.errors import ConfigError, InvalidValue, Problem, sort_problems
from l4lb.config.keywords import BACKEND, DEFAULTS, FRONTEND, GLOBAL, LISTEN
from l4lb.config.model import (
    Backend,
    BindSpec,
    Config,
    Frontend,
    GlobalSettings,
    LogTarget,
    ServerSpec,
    SourceRule,
    StickTableSpec,
    Timeouts,
    UdpCheckSpec,
)
from l4lb.config.protect import protection_problems
from l4lb.config.servers import mode_problems, parse_server
from l4lb.config.udp import UDP_CHECK_KEYS, build_udp_check, udp_bind
from l4lb.config.units import allowed_list, nearest

_TIMEOUT_FIELDS = {
    "timeout " + field.replace("_", "-"): field
    for field in attr.fields_dict(Timeouts)
}


class _Reader(SectionReader):
    """
    Reads one file into a L{Config}, collecting every error and warning.
    """

    def read(self, text: str) -> Config:
        """
        Read C{text}; the result is meaningful only without errors.
        """
        return self._assemble(self.read_sections(text))

    def _assemble(self, sections: List[Section]) -> Config:
        defaults = next(
            (s for s in sections if s.kind == DEFAULTS), Section(DEFAULTS, "", "defaults", 0)
        )
        backend_names = [s.name for s in sections if s.kind in (BACKEND, LISTEN)]
        frontends: List[Frontend] = []
        backends: List[Backend] = []
        global_settings = GlobalSettings()
        resolvers = [build_resolvers(s, self.error) for s in sections if s.kind == RESOLVERS]
        for section in sections:
            if section.kind == GLOBAL:
                global_settings = self._global(section)
            if section.kind in (FRONTEND, LISTEN):
                frontend = self._frontend(section, defaults, backend_names)
                if frontend is not None:
                    frontends.append(frontend)
            if section.kind in (BACKEND, LISTEN):
                backends.append(self._backend(section, defaults))
            if section.kind in (FRONTEND, BACKEND, LISTEN):
                self._missing_timeouts(section, defaults)
        check_references(sections, backends, resolvers, self.error)
        self._check_modes(sections, defaults)
        self._check_sni_routes(sections, defaults)
        if global_settings.nbproc > 1:
            self._check_shared_binds(sections, frontends)
        return Config(
            global_settings=global_settings,
            frontends=tuple(frontends),
            backends=tuple(backends),
            source=self.source,
            resolvers=tuple(resolvers),
        )

    @staticmethod
    def _get(section: Section, defaults: Section, keyword: str, default: Any) -> Any:
        for where in (section, defaults):
            if keyword in where.settings:
                return where.settings[keyword].value
        return default

    def _global(self, section: Section) -> GlobalSettings:
        empty = Section(DEFAULTS, "", "defaults", 0)
        return GlobalSettings(
            maxconn=self._get(section, empty, "maxconn", 0),
            log=self._get(section, empty, "log", LogTarget()),
            spread_checks=self._get(section, empty, "spread-checks", 0),
            stats_socket=self._get(section, empty, "stats socket", None),
            stats_bind=self._get(section, empty, "stats bind", None),
            stats_auth=self._get(section, empty, "stats auth", None),
            hard_stop_after=self._get(section, empty, "hard-stop-after", 30.0),
            relay=self._get(section, empty, "tune.relay", "lean"),
            nbproc=self._get(section, empty, "nbproc", 1),
            maxpipes=self._get(section, empty, "maxpipes", None),
            stats_timeout=self._get(section, empty, "stats timeout", 10.0),
            stats_maxconn=self._get(section, empty, "stats maxconn", 10),
            grace=self._get(section, empty, "grace", 0.0),
            server_state_file=self._get(section, empty, "server-state-file", None),
            server_state_base=self._get(section, empty, "server-state-base", None),
        )

    def _timeouts(self, section: Section, defaults: Section) -> Timeouts:
        values = {
            field: self._get(section, defaults, keyword, None)
            for keyword, field in _TIMEOUT_FIELDS.items()
        }
        return Timeouts(**values)

    def _frontend(
        self, section: Section, defaults: Section, backend_names: List[str]
    ) -> Optional[Frontend]:
        if "bind" not in section.present:
            if section.kind == LISTEN:
                # HAProxy allows a listen section without bind: it is then
                # only a backend.
                return None
            self.error(
                section.line,
                section.header,
                "bind",
                "a frontend needs at least one bind, e.g. 'bind = *:80'",
            )
        if section.kind == LISTEN:
            default_backend = section.name
        elif "default_backend" in section.settings:
            setting = section.settings["default_backend"]
            default_backend = str(setting.value)
            if default_backend not in backend_names:
                self.error(
                    setting.line,
                    section.header,
                    "default_backend",
                    no_backend(default_backend, backend_names),
                )
        else:
            default_backend = ""
        if section.kind != LISTEN and "default_backend" not in section.present:
            defined = allowed_list(backend_names) or "none"
            self.error(
                section.line,
                section.header,
                "default_backend",
                "a frontend needs 'default_backend = NAME'; backends"
                f" defined: {defined}",
            )

        def get(keyword: str, default: Any) -> Any:
            return self._get(section, defaults, keyword, default)

        mode = get("mode", "tcp")
        binds = tuple(section.binds)
        self._check_accept_proxy(section, defaults, binds, mode)
        source_rules, stick_table = self._protection(section, mode)
        if mode == "udp":
            binds = self._udp_binds(section, binds)
        return Frontend(
            name=section.name,
            binds=binds,
            default_backend=default_backend,
            maxconn=get("maxconn", 0),
            timeouts=self._timeouts(section, defaults),
            log=get("log", True),
            mode=get("mode", "tcp"),
            dontlognull=get("option dontlognull", False),
            maxsessions=get("maxsessions", 0),
            log_format=get("log-format", "tcplog"),
            inspect_delay=get("tcp-request inspect-delay", None),
            sni_routes=tuple(section.sni_routes),
            sni_fallback=get("sni-fallback", "default"),
            sni_max_hello=get("sni-max-hello", 16384),
            accept_proxy_from=get("accept-proxy-from", ()),
            source_rules=source_rules,
            stick_table=stick_table,
            rate_limit_sessions=get("rate-limit sessions", 0),
            backlog=get("backlog", 0),
        )

    def _protection(
        self, section: Section, mode: str
    ) -> Tuple[Tuple[SourceRule, ...], Optional[StickTableSpec]]:
        """
        The C{tcp-request connection} rules and C{stick-table} of a
        frontend, checked together (L{protection_problems}).
        """
        rules = self._get(section, section, "tcp-request connection", ())
        table: Optional[StickTableSpec] = None
        if "stick-table" in section.settings:
            setting = section.settings["stick-table"]
            assert isinstance(setting.value, StickTableSpec)
            table = attr.evolve(setting.value, line=setting.line)
        for line, key, message in protection_problems(rules, table, mode, section.line):
            self.error(line, section.header, key, message)
        if mode != "tcp" and "rate-limit sessions" in section.settings:
            self.error(
                section.settings["rate-limit sessions"].line,
                section.header,
                "rate-limit sessions",
                "applies to 'mode tcp' frontends only (a UDP frontend accepts no connections)",
            )
        maxconn = section.settings.get("maxconn")
        if table is not None and maxconn is not None and isinstance(maxconn.value, int):
            if table.size < maxconn.value:
                self.warn(
                    table.line,
                    section.header,
                    "stick-table",
                    f"size {table.size} is below the frontend's maxconn {maxconn.value}:"
                    " when every tracked source has open connections, new sources"
                    " are not tracked (nor limited); make the table larger",
                )
        return rules, table

    def _check_accept_proxy(
        self, section: Section, defaults: Section, binds: Tuple[BindSpec, ...], mode: str
    ) -> None:
        """
        An C{accept-proxy} bind needs C{accept-proxy-from} (whose headers to
        trust) and C{mode tcp}; C{accept-proxy-from} without such a bind
        does nothing.
        """
        proxied = [b for b in binds if b.accept_proxy]
        trusted = self._get(section, defaults, "accept-proxy-from", ())
        for bind in proxied:
            if mode != "tcp":
                self.error(
                    bind.line or section.line,
                    section.header,
                    "bind",
                    f"'{bind.text} accept-proxy': the PROXY protocol is read on"
                    " TCP connections only ('mode tcp')",
                )
            elif not trusted and "accept-proxy-from" not in section.present:
                self.error(
                    bind.line or section.line,
                    section.header,
                    "bind",
                    f"'{bind.text} accept-proxy' needs 'accept-proxy-from = RANGES'"
                    " in the section: the peers (such as 10.0.0.0/8 or"
                    " 127.0.0.1) whose PROXY headers are trusted",
                )
        if trusted and not proxied and "accept-proxy-from" in section.settings:
            self.warn(
                section.settings["accept-proxy-from"].line,
                section.header,
                "accept-proxy-from",
                "no bind of this section has 'accept-proxy': the ranges are"
                " not used (write 'bind = ADDRESS:PORT accept-proxy')",
            )

    def _backend(self, section: Section, defaults: Section) -> Backend:
        default_server = defaults.default_server + section.default_server
        servers: List[ServerSpec] = []
        for name, entry in section.servers:
            server, errors = parse_server(name, entry.value, entry.line, default_server)
            for message in errors:
                self.error(entry.line, section.header, entry.key, message)
            if server is not None:
                servers.append(server)
        templates, slots = build_templates(section, default_server, self.error)
        servers.extend(slots)
        if not section.servers and not section.templates and "servers-from" not in section.settings:
            self.warn(
                section.line,
                section.header,
                "",
                "backend has no server; its connections are closed at once"
                " and logged with <NOSRV>; add 'server NAME = ADDRESS:PORT'",
            )

        def get(keyword: str, default: Any) -> Any:
            return self._get(section, defaults, keyword, default)

        balance, balance_args = get("balance", ("roundrobin", ()))
        tcp_check = get("option tcp-check", False)
        tcp_check_rules = get("tcp-check", ())
        if "tcp-check" in section.settings and not tcp_check:
            self.warn(
                section.settings["tcp-check"].line,
                section.header,
                "tcp-check",
                f"the rules are not used by backend {section.name!r} because"
                " 'option tcp-check' is not set; add 'option tcp-check = true'",
            )
        for server in servers:
            for message in mode_problems(server, get("mode", "tcp")):
                self.error(
                    server.line or section.line, section.header, f"server {server.name}", message
                )
        return Backend(
            name=section.name,
            servers=tuple(servers),
            balance=balance,
            balance_args=balance_args,
            hash_type=get("hash-type", "map-based"),
            hash_balance_factor=get("hash-balance-factor", 0),
            retries=get("retries", 3),
            redispatch=get("option redispatch", 0),
            timeouts=self._timeouts(section, defaults),
            mode=get("mode", "tcp"),
            allbackups=get("option allbackups", False),
            tcp_check=tcp_check,
            tcp_check_rules=tcp_check_rules,
            log_health_checks=get("option log-health-checks", False),
            udp_responses=get("udp-responses", 0),
            udp_requests=get("udp-requests", 0),
            udp_check=self._udp_check(section, defaults),
            load_server_state_from_file=get("load-server-state-from-file", "none"),
            server_state_file_name=get("server-state-file-name", None),
            servers_from=get("servers-from", None),
            templates=templates,
        )

    def _udp_binds(self, section: Section, binds: Tuple[BindSpec, ...]) -> Tuple[BindSpec, ...]:
        converted = []
        for bind in binds:
            try:
                converted.append(udp_bind(bind))
            except InvalidValue as error:
                self.error(bind.line or section.line, section.header, "bind", error.message)
        return tuple(converted)

    def _udp_check(self, section: Section, defaults: Section) -> Optional[UdpCheckSpec]:
        values = {
            k: self._get(section, defaults, k, None)
            for k in UDP_CHECK_KEYS
            if self._get(section, defaults, k, None) is not None
        }
        spec, errors = build_udp_check(values)
        lines = [
            where.settings[k].line
            for where in (section, defaults)
            for k in UDP_CHECK_KEYS
            if k in where.settings
        ]
        for message in errors:
            self.error(min(lines, default=section.line), section.header, "udp-check", message)
        return spec

    def _check_shared_binds(self, sections: List[Section], frontends: List[Frontend]) -> None:
        """
        With C{nbproc} above 1 the worker processes share the main
        process's listening sockets; an C{ssl:} endpoint description keeps
        its TLS settings in the main process's port, so it cannot be
        shared (C{ssl crt} on the bind can).
        """
        headers = {s.name: s.header for s in sections if s.kind in (FRONTEND, LISTEN)}
        for frontend in frontends:
            if frontend.mode != "tcp":
                continue
            for bind in frontend.binds:
                if bind.endpoint.lower().startswith("ssl:"):
                    self.error(
                        bind.line,
                        headers.get(frontend.name, f"frontend {frontend.name}"),
                        "bind",
                        f"{bind.text or bind.endpoint!r}: an 'ssl:' endpoint description"
                        " cannot be shared with the worker processes of 'nbproc'; write"
                        " the address with 'ssl crt PATH' instead, or set 'nbproc = 1'",
                    )

    def _check_modes(self, sections: List[Section], defaults: Section) -> None:
        """
        A frontend and its backend must have the same mode: a UDP frontend
        cannot relay to TCP servers, nor the other way round.
        """
        backends = {s.name: s for s in sections if s.kind in (BACKEND, LISTEN)}
        for section in sections:
            setting = section.settings.get("default_backend")
            if section.kind != FRONTEND or setting is None:
                continue
            backend = backends.get(str(setting.value))
            if backend is None:
                continue
            mode = self._get(section, defaults, "mode", "tcp")
            backend_mode = self._get(backend, defaults, "mode", "tcp")
            if mode != backend_mode:
                self.error(
                    setting.line,
                    section.header,
                    "default_backend",
                    f"frontend {section.name!r} is 'mode {mode}' but backend"
                    f" {backend.name!r} is 'mode {backend_mode}'; a frontend"
                    f" needs a backend of its own mode (set 'mode = {mode}' in"
                    f" [{backend.header}] or use another backend)",
                )

    def _check_sni_routes(self, sections: List[Section], defaults: Section) -> None:
        """
        Every C{use_backend} names a backend of the frontend's mode, and
        only a TCP frontend routes by server name.
        """
        backends = {s.name: s for s in sections if s.kind in (BACKEND, LISTEN)}
        names = list(backends)
        for section in sections:
            mode = self._get(section, defaults, "mode", "tcp")
            terminating = [
                b.text or b.endpoint
                for b in section.binds
                if b.crt is not None or b.endpoint.startswith("ssl:")
            ]
            if section.sni_routes and terminating:
                route = section.sni_routes[0]
                self.error(
                    route.line,
                    section.header,
                    f"use_backend {route.backend}",
                    "routing by server name reads the ClientHello of TLS"
                    " connections that l4lb relays without terminating them,"
                    f" but bind {terminating[0]!r} terminates TLS; route in"
                    " a frontend without 'ssl' binds",
                )
            for route in section.sni_routes:
                key = f"use_backend {route.backend}"
                backend = backends.get(route.backend)
                if mode != "tcp":
                    self.error(
                        route.line,
                        section.header,
                        key,
                        "routing by TLS server name needs 'mode tcp'",
                    )
                elif backend is None:
                    self.error(
                        route.line, section.header, key, no_backend(route.backend, names)
                    )
                elif self._get(backend, defaults, "mode", "tcp") != "tcp":
                    self.error(
                        route.line,
                        section.header,
                        key,
                        f"backend {route.backend!r} is not 'mode tcp'; SNI"
                        " routing relays TCP connections",
                    )

    def _missing_timeouts(self, section: Section, defaults: Section) -> None:
        if self._get(section, defaults, "mode", "tcp") == "udp":
            # UDP sessions use 'timeout udp', which has a default.
            return
        needed = []
        if section.kind == FRONTEND or (
            section.kind == LISTEN and "bind" in section.present
        ):
            needed.append("timeout client")
        if section.kind in (BACKEND, LISTEN):
            needed.extend(["timeout connect", "timeout server"])
        missing = [
            k
            for k in needed
            if self._get(section, defaults, k, None) is None
            # A timeout with a bad value already has its error.
            and not any(k in s.present and k not in s.settings for s in (section, defaults))
        ]
        if missing:
            self.warn(
                section.line,
                section.header,
                "",
                f"missing timeouts: {allowed_list(missing)} not set here nor"
                " in [defaults], so idle or unanswered connections are never"
                " closed; set each to a non-zero time (for example"
                " timeout connect = 5s, timeout client = 50s,"
                " timeout server = 50s)",
            )


def no_backend(name: str, names: Any) -> str:
    """
    The error for a reference to a backend that is not defined: the
    nearest defined name and every defined name.
    """
    message = f"no backend named {name!r}"
    guess = nearest(name, names)
    if guess is not None:
        message += f"; did you mean {guess!r}?"
    defined = allowed_list(names) or "none"
    return f"{message}; backends defined: {defined}"


def parse_config_with_warnings(
    text: str, source: str = "<memory>"
) -> Tuple[Config, List[Problem]]:
    """
    Parse the text of an C{lb.ini} file.

    @param source: The file name used in problems.
    @return: The configuration and the warnings, in file order.
    @raise ConfigError: With every error of the file (and its warnings).
    """
    reader = _Reader(source)
    config = reader.read(text)
    warnings = sort_problems(reader.warnings)
    if reader.errors:
        raise ConfigError(sort_problems(reader.errors), warnings)
    return config, warnings


def parse_config(text: str, source: str = "<memory>") -> Config:
    """
    Parse the text of an C{lb.ini} file, ignoring warnings.

    @raise ConfigError: With every error of the file.
    """
    return parse_config_with_warnings(text, source)[0]


def load_config_with_warnings(path: str) -> Tuple[Config, List[Problem]]:
    """
    Read and parse an C{lb.ini} file, or a C{haproxy.cfg}: the format is
    told by the content (L{l4lb.config.haproxycfg.is_haproxy_format}).

    @return: The configuration and the warnings, in file order.
    @raise ConfigError: With every error, including a file that cannot be
        read and each line that is not UTF-8 text.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            [Problem(path, 0, "", "", f"cannot read the configuration: {reason}")]
        )
    text, problems = decode_text(data, path)
    if problems:
        raise ConfigError(problems)
    from l4lb.config.haproxycfg import is_haproxy_format, parse_haproxy_config_with_warnings

    if is_haproxy_format(text):
        return parse_haproxy_config_with_warnings(text, path)
    return parse_config_with_warnings(text, path)


def load_config(path: str) -> Config:
    """
    Read and parse an C{lb.ini} file, ignoring warnings.

    @raise ConfigError: With every error, including a file that cannot be
        read.
    """
    return load_config_with_warnings(path)[0]
