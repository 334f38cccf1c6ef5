"""
Helpers for the upgrade tests: l4lb run from a copy of its code whose
version each upgrade rewrites, a balancer followed across the processes
that take over from one another, and the load processes of
C{handover_load.py}.

An upgrade re-executes the running process's command line with its
environment, so a balancer started with C{PYTHONPATH} pointing at a copy of
the package imports that copy again at every upgrade: rewriting the copy's
version between upgrades is what C{pip install -U} does to the installed
one, and C{show info} then tells which code each process runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import attr

import l4lb

from .harness import Balancer, BalancerFailed, l4lb_path, runtime_command, subprocess_env, wait_until

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent
"""The source tree: the package copied is the one the tests import."""

HOLD_LIMIT = 30.0
"""Seconds a process held by a hold file waits at most before going on."""

SITECUSTOMIZE = '''\
"""
Hold points for the upgrade tests: while a hold file exists beside this
module, a new process writes its pid to held.pid and waits (at most
{limit:.0f} s), for the test to kill it: hold-start at interpreter start,
hold-fds right after it received descriptors over a UNIX socket.
"""
import os
import socket
import time

_HERE = os.path.dirname(os.path.abspath(__file__))


def _hold(flag):
    if not os.path.exists(os.path.join(_HERE, flag)):
        return
    with open(os.path.join(_HERE, "held.pid"), "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + {limit}
    while time.monotonic() < deadline and os.path.exists(os.path.join(_HERE, flag)):
        time.sleep(0.05)


_hold("hold-start")

if hasattr(socket, "recv_fds"):
    _recv_fds = socket.recv_fds

    def recv_fds(sock, bufsize, maxfds, flags=0):
        answer = _recv_fds(sock, bufsize, maxfds, flags)
        if answer[1]:
            _hold("hold-fds")
        return answer

    socket.recv_fds = recv_fds

_recvmsg = socket.socket.recvmsg
_SCM_RIGHTS = getattr(socket, "SCM_RIGHTS", 1)


def recvmsg(self, *args):
    answer = _recvmsg(self, *args)
    if any(level == socket.SOL_SOCKET and kind == _SCM_RIGHTS for level, kind, _ in answer[1]):
        _hold("hold-fds")
    return answer


socket.socket.recvmsg = recvmsg
'''


class CodeCopy:
    """
    A copy of the l4lb package and its twistd plugin in a directory of its
    own, to be put first on C{PYTHONPATH}.

    @ivar root: The directory holding C{l4lb/} and C{twisted/plugins/}.
    @ivar version: The version the copy reports now.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        # Byte code is copied with the sources' times, so it stays valid and
        # the first start does not compile the whole package again.
        shutil.copytree(SOURCE / "l4lb", root / "l4lb")
        plugins = root / "twisted" / "plugins"
        plugins.mkdir(parents=True)
        shutil.copy(SOURCE / "twisted" / "plugins" / "l4lb_plugin.py", plugins)
        (root / "sitecustomize.py").write_text(
            SITECUSTOMIZE.format(limit=HOLD_LIMIT)
        )
        self.version = l4lb.__version__

    def set_version(self, version: str) -> None:
        """
        Rewrite the copy's C{__version__}, as an upgrade of the installed
        package would change it; the next process started imports it.
        """
        init = self.root / "l4lb" / "__init__.py"
        text = init.read_text()
        text, count = re.subn(
            r'^__version__ = ".*"$', f'__version__ = "{version}"', text, flags=re.M
        )
        assert count == 1, "no __version__ line in the copied l4lb/__init__.py"
        init.write_text(text)
        # A byte-code file written within the same second for a source of
        # the same size would be taken as current: remove it.
        for cached in (self.root / "l4lb" / "__pycache__").glob("__init__.*"):
            cached.unlink()
        self.version = version

    def hold(self, flag: str) -> None:
        """
        Make the next process started hold at C{flag} (C{hold-start} or
        C{hold-fds}); see L{SITECUSTOMIZE}.
        """
        (self.root / "held.pid").unlink(missing_ok=True)
        (self.root / flag).touch()

    def release(self) -> None:
        """
        Remove every hold file.
        """
        for flag in ("hold-start", "hold-fds"):
            (self.root / flag).unlink(missing_ok=True)

    def held_pid(self) -> Optional[int]:
        """
        The pid of the process held now, if one is.
        """
        try:
            text = (self.root / "held.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def env(self) -> Dict[str, str]:
        """
        The environment that runs this copy.
        """
        env = subprocess_env()
        env["PYTHONPATH"] = str(self.root)
        return env


def process_gone(pid: int) -> bool:
    """
    Whether process C{pid} has exited: it no longer exists, or only its
    exit status is left for a parent to collect (a zombie).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which is in parentheses.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def info(socket_path: str, timeout: float = 5.0) -> Dict[str, str]:
    """
    C{show info} as a dictionary, asked until a process answers (the socket
    may be between two processes for a moment) or C{timeout} passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = runtime_command(socket_path, "show info", timeout=timeout)
            fields = dict(
                line.split(": ", 1) for line in text.splitlines() if ": " in line
            )
            if "Pid" in fields:
                return fields
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise BalancerFailed(f"no answer to show info on {socket_path}")
        time.sleep(0.02)


class UpgradingBalancer(Balancer):
    """
    A balancer started from a L{CodeCopy}, followed across upgrades: the
    processes that took over are not children of the test, so they are
    known by the pids C{show info} reports.

    @ivar socket_path: Its C{stats socket}.
    @ivar extra_env: Variables added to the copy's environment.
    @ivar pids: Every process that ran it, oldest first.
    """

    def __init__(
        self,
        config: str,
        cwd: str,
        frontends: Sequence[str],
        socket_path: str,
        code: CodeCopy,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        base = Balancer.l4lb(config, cwd, frontends)
        super().__init__(base.argv, cwd, [p.pattern for p in base.ready_patterns])
        self.socket_path = socket_path
        self.code = code
        self.extra_env = dict(env or {})
        self.pids: List[int] = []

    def start(self) -> "UpgradingBalancer":
        """
        Start the first process with the copy's environment.
        """
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env={**self.code.env(), **self.extra_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for stream, sink in ((self.process.stdout, self._stdout), (self.process.stderr, self._stderr)):
            thread = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            thread.start()
            self._readers.append(thread)
        self.pids.append(self.process.pid)
        return self

    def info(self) -> Dict[str, str]:
        """
        C{show info} of whichever process answers the socket now.
        """
        return info(self.socket_path)

    @property
    def current(self) -> int:
        """
        The pid of the newest process.
        """
        return self.pids[-1]

    def wait_generation(self, generation: int, timeout: float = 20.0) -> Dict[str, str]:
        """
        Wait until C{show info} reports C{generation}; remember the new pid.

        @return: That C{show info}.
        """
        seen: Dict[str, str] = {}

        def reached() -> bool:
            nonlocal seen
            seen = self.info()
            return seen.get("Generation") == str(generation)

        if not wait_until(reached, timeout):
            self.fail(f"generation {generation} not reached in {timeout:.0f}s: {seen}")
        pid = int(seen["Pid"])
        if pid not in self.pids:
            self.pids.append(pid)
        return seen

    def signal_upgrade(self) -> None:
        """
        SIGUSR2 to the newest process: nginx's binary upgrade.
        """
        os.kill(self.current, signal.SIGUSR2)

    def command_upgrade(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """
        C{l4lb upgrade --socket PATH}, run to its end.
        """
        return subprocess.run(
            [l4lb_path(), "upgrade", "--socket", self.socket_path],
            cwd=self.cwd,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def running(self) -> bool:
        """
        Whether the newest process runs.
        """
        if not self.pids:
            return False
        if self.process is not None and self.current == self.process.pid:
            return self.process.poll() is None
        return not process_gone(self.current)

    def stop_all(self, timeout: float = 20.0) -> None:
        """
        SIGTERM the newest process and wait until every process is gone;
        SIGKILL whatever is left after C{timeout}, and fail then.
        """
        if self.process is not None:
            self.process.poll()
        if not process_gone(self.current):
            os.kill(self.current, signal.SIGTERM)
        left = lambda: sorted(  # noqa: E731
            {p for p in self.pids if not self._gone(p)} | set(self.strays())
        )
        if not wait_until(lambda: not left(), timeout):
            stuck = left()
            for pid in stuck:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.fail(f"processes {stuck} still running {timeout:.0f}s after SIGTERM (killed)")
        self.join_output()

    def strays(self) -> List[int]:
        """
        The running processes with this balancer's configuration file in
        their arguments (new processes an upgrade started, workers), known
        by pid or not: after a stop, any of them is a leak.
        """
        words = self.argv
        config = words[words.index("--config") + 1].encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    arguments = f.read().split(b"\0")
            except OSError:
                continue
            if config in arguments and not process_gone(int(entry)):
                found.append(int(entry))
        return found

    def _gone(self, pid: int) -> bool:
        if self.process is not None and pid == self.process.pid:
            return self.process.poll() is not None
        return process_gone(pid)

    def gone(self, pid: int) -> bool:
        """
        Whether the process C{pid} of this balancer has exited.
        """
        return self._gone(pid)


class LoadProcess:
    """
    A C{handover_load.py} process: started, told to stop, its JSON read.
    """

    def __init__(self, args: Sequence[str], ready: str = "RUNNING", timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "handover_load.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = _readline(self.process, timeout)
        if not self.first_line.startswith(ready):
            self.kill()
            raise AssertionError(
                f"{' '.join(args)}: expected {ready}, got {self.first_line!r}: {self.stderr()}"
            )

    def stop(self, timeout: float = 60.0) -> Dict[str, Any]:
        """
        Ask it to finish, wait (bounded) and return what it counted.
        """
        try:
            out, err = self.process.communicate("stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"load process still running {timeout:.0f}s after stop")
        if self.process.returncode != 0:
            raise AssertionError(f"load process exited {self.process.returncode}: {err}")
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def stderr(self) -> str:
        """
        What it wrote on standard error, once it has exited.
        """
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def kill(self) -> None:
        """
        Kill it if it still runs, and reap it.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _readline(process: "subprocess.Popen[str]", timeout: float) -> str:
    """
    The first line C{process} prints, waited for at most C{timeout} seconds.
    """
    lines: List[str] = []
    reader = threading.Thread(
        target=lambda: lines.append(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Switch:
    """
    One upgrade, timed from the test's side.

    @ivar generation: The generation it started.
    @ivar old_pid: The process it replaced.
    @ivar new_pid: The process that took over.
    @ivar triggered: C{time.monotonic()} when the signal or command went.
    @ivar up: C{time.monotonic()} when C{show info} first answered with the
        new generation.
    @ivar version: The version the new process reported.
    """

    generation: int
    old_pid: int
    new_pid: int
    triggered: float
    up: float
    version: str
