"""
The C{l4lb} command.

    l4lb check FILE     validate a configuration file, as haproxy -c -f FILE
    l4lb convert FILE   convert a haproxy.cfg to lb.ini, or an lb.ini to haproxy.cfg
    l4lb ctl COMMAND    send a command to a running balancer's runtime API
                        (--output FILE writes the answer to FILE atomically)
    l4lb upgrade        hand a running balancer over to a new process that
                        runs the code installed now (no refused connection)

C{l4lb check} parses the file and resolves its server host names (without
binding anything), prints warnings and errors on standard error, one per
line, and C{Configuration file is valid} on standard output when there is no
error.  It exits with 0 when the file is valid, 1 when it is not and 2 for a
usage error or, as C{haproxy -c}, for a file without errors that has no
listener (no frontend with a C{bind}: it would not start).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional, Sequence

from twisted.internet.defer import Deferred

import l4lb
from l4lb.config.check import CheckReport, check_config_file, report_check


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l4lb",
        description="l4lb, a Layer 4 load balancer. Run it with"
        " 'twistd -n l4lb --config FILE'.",
    )
    parser.add_argument(
        "--version", action="version", version=f"l4lb {l4lb.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate a configuration file (nothing is bound)",
        description="Parse FILE and resolve its server host names; print"
        " every warning and error, one per line.  Exit 0 when the file is"
        " valid, 1 when it is not, 2 when it has no error but no listener"
        " (no frontend with a bind).",
    )
    check.add_argument("file", metavar="FILE", help="the lb.ini or haproxy.cfg file")
    convert = commands.add_parser(
        "convert",
        help="convert haproxy.cfg to lb.ini, or lb.ini to haproxy.cfg",
        description="Convert FILE to the other format: a haproxy.cfg to lb.ini,"
        " an lb.ini to haproxy.cfg (the format is told by the content)."
        "  Comments are kept.  Problems go to standard error; exit 1 when the"
        " file has errors (the converted text is written all the same).",
    )
    convert.add_argument("file", metavar="FILE", help="the haproxy.cfg or lb.ini file")
    convert.add_argument(
        "-o", "--output", metavar="OUT", help="write to OUT instead of standard output"
    )
    ctl = commands.add_parser(
        "ctl",
        help="send a command to the runtime API (stats socket)",
        description="Send COMMAND to a running balancer's 'stats socket' and"
        " print the answer, e.g. 'l4lb ctl show stat' or"
        " 'l4lb ctl set server web/s1 state drain'.  Exit 1 when the socket"
        " cannot be reached.",
    )
    ctl.add_argument(
        "--socket",
        metavar="PATH",
        default=DEFAULT_SOCKET,
        help=f"the runtime API's socket (default {DEFAULT_SOCKET})",
    )
    ctl.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the answer to FILE (replaced at once, never left half"
        " written) instead of standard output, e.g. 'l4lb ctl --output"
        " /var/lib/l4lb/state show servers state' for the server-state file",
    )
    ctl.add_argument("words", metavar="COMMAND", nargs="+", help="the command, e.g. show info")
    upgrade = commands.add_parser(
        "upgrade",
        help="hand a running balancer over to a new process (new code, no refused connection)",
        description="Ask the balancer listening on the runtime API socket to start its"
        " command line again as a new process, which takes its listening"
        " sockets and runtime state and serves, while the old process lets its"
        " connections finish and exits.  The 'stats socket' needs 'expose-fd"
        " listeners'.  Print the outcome; exit 0 once the new process took"
        " over, 1 when the upgrade failed (the old process serves on).",
    )
    upgrade.add_argument(
        "--socket",
        metavar="PATH",
        help="the runtime API's socket (default: the 'stats socket' of --config,"
        f" else {DEFAULT_SOCKET})",
    )
    upgrade.add_argument(
        "--config", metavar="FILE", help="read the socket's path from this file's 'stats socket'"
    )
    upgrade.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=180.0,
        help="give up waiting for the outcome after this long (default 180)",
    )
    return parser


#: Where C{l4lb ctl} connects when C{--socket} is not given.
DEFAULT_SOCKET = "/run/l4lb/admin.sock"


def ctl(path: str, command: str, timeout: float = 30.0, output: Optional[str] = None) -> int:
    """
    Run C{l4lb ctl}: send one command line to the UNIX socket C{path} and
    copy the answer to standard output, or to the file C{output}.

    @param output: A file the answer replaces atomically (written beside
        it, then renamed), so that a server-state file is never read half
        written; C{None} for standard output.
    @return: The exit status: 0 once answered, 1 when the socket cannot be
        reached or C{output} cannot be written.
    """
    try:
        answer = _ask(path, command, timeout)
    except OSError as e:
        sys.stderr.write(f"l4lb: cannot talk to {path}: {e.strerror or e}\n")
        return 1
    if output is not None:
        return _replace_file(output, answer)
    sys.stdout.write(answer.decode("utf-8", "replace"))
    sys.stdout.flush()
    return 0


def _ask(path: str, command: str, timeout: float) -> bytes:
    """
    Send one command line to the UNIX socket C{path}; return the answer,
    read until the balancer closes the connection.

    @raise OSError: When the socket cannot be reached or does not answer.
    """
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode("utf-8") + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def upgrade(path: Optional[str], config: Optional[str], timeout: float) -> int:
    """
    Run C{l4lb upgrade}: send C{upgrade} to the runtime API and print the
    outcome.

    @return: 0 when the new process took over, 1 otherwise.
    """
    if path is None and config is not None:
        from l4lb.config import ConfigError, load_config

        try:
            where = load_config(config).global_settings.stats_socket
        except ConfigError as e:
            sys.stderr.write(f"{e}\n")
            return 1
        if where is None:
            sys.stderr.write(f"l4lb: {config} has no 'stats socket'\n")
            return 1
        path = where.path
    path = path or DEFAULT_SOCKET
    try:
        text = _ask(path, "upgrade", timeout).decode("utf-8", "replace")
    except OSError as e:
        sys.stderr.write(f"l4lb: cannot talk to {path}: {e.strerror or e}\n")
        return 1
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0 if text.startswith("Upgrade done") else 1


def _replace_file(path: str, data: bytes) -> int:
    """
    Replace the file C{path} with C{data} in one step.

    @return: 0, or 1 (with a message) when it cannot be written.
    """
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".l4lb-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as e:
        sys.stderr.write(f"l4lb: cannot write {path}: {e.strerror or e}\n")
        return 1
    return 0


def _wait(reactor: Any, d: "Deferred[CheckReport]") -> CheckReport:
    """
    Run C{reactor} until C{d} fires, unless it has fired already (nothing
    to resolve), and return its result.
    """
    outcome: List[Any] = []
    d.addBoth(outcome.append)
    if not outcome:
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
    result = outcome[0]
    if isinstance(result, CheckReport):
        return result
    # An unexpected failure: show its traceback rather than hide it.
    result.raiseException()
    raise AssertionError("unreachable")


def check(path: str, reactor: Optional[Any] = None) -> int:
    """
    Run C{l4lb check FILE}.

    @param reactor: The reactor whose C{nameResolver} resolves host names;
        the global reactor by default.  It is run only when there are names
        to resolve.
    @return: The exit status.
    """
    active: Any = reactor
    if active is None:
        from twisted.internet import reactor as global_reactor

        active = global_reactor
    report = _wait(active, check_config_file(path, active))
    return report_check(report, sys.stdout, sys.stderr)


def main(argv: Optional[Sequence[str]] = None, reactor: Optional[Any] = None) -> int:
    """
    The entry point of the C{l4lb} console script.

    @param argv: The arguments after the program name; C{sys.argv[1:]} by
        default.
    @param reactor: The reactor to use instead of the global one.
    @return: The exit status.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    if args.command == "check":
        return check(args.file, reactor)
    if args.command == "convert":
        from l4lb.convertcmd import convert

        return convert(args.file, args.output, sys.stdout, sys.stderr)
    if args.command == "ctl":
        return ctl(args.socket, " ".join(args.words), output=args.output)
    if args.command == "upgrade":
        return upgrade(args.socket, args.config, args.timeout)
    parser.print_usage(sys.stderr)
    sys.stderr.write("l4lb: error: a command is required, e.g. 'l4lb check FILE'\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
