"""
Processes under test: starting them pinned to a CPU, stopping them, and
reading their CPU time, memory and descriptors from C{/proc}.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

_TICKS = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """
    Raise this process's soft limit of open files to its hard limit; the
    processes it starts inherit it.

    @return: The new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def choose_cpus() -> tuple[int, List[int]]:
    """
    The CPU for the proxy and those for the load generators and backends:
    the last CPU this process may use for the proxy, the others for the
    rest (all of them when there is only one).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == 1:
        return cpus[0], cpus
    return cpus[-1], cpus[:-1]


class Proc:
    """
    A child process pinned to some CPUs, its output going to a log file.

    @ivar name: A label for messages.
    @ivar argv: The command line.
    @ivar log_path: Where its standard output and error go.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cpus: Iterable[int],
        log_path: str,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin_pipe: bool = False,
    ) -> None:
        """
        @param stdin_pipe: Give it a pipe as standard input, closed when it
            is stopped (or when this process dies), instead of C{/dev/null}.
        """
        self.stdin_pipe = stdin_pipe
        self.name = name
        self.argv = list(argv)
        self.cpus: Set[int] = set(cpus)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.popen: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "Proc":
        """
        Start the process, pinned before it runs its first instruction.
        """
        cpus = self.cpus
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
        return self

    @property
    def pid(self) -> int:
        """
        The process id.
        """
        assert self.popen is not None, f"{self.name} not started"
        return self.popen.pid

    def running(self) -> bool:
        """
        Whether it has not exited.
        """
        return self.popen is not None and self.popen.poll() is None

    def pids(self) -> List[int]:
        """
        The process and its descendants (nginx's workers).
        """
        return process_tree(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        """
        The end of its output, for error messages.
        """
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """
        SIGTERM, then SIGKILL for it and its descendants after C{timeout}.
        """
        if self.popen is None:
            return
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        tree = self.pids() if self.running() else []
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        for pid in tree:
            if pid != self.popen.pid and _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _parents() -> Dict[int, int]:
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
    return parents


def process_tree(pid: int) -> List[int]:
    """
    C{pid} and all its descendants that exist now.
    """
    parents = _parents()
    tree = [pid]
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        tree.extend(children)
        frontier.extend(children)
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """
    User plus system CPU seconds used so far by these processes (all their
    threads), from C{/proc/PID/stat}.
    """
    user, system = _cpu_ticks(pids)
    return (user + system) / _TICKS


def system_seconds(pids: Iterable[int]) -> float:
    """
    The system (kernel) part of L{cpu_seconds}: CPU seconds these processes
    spent in system calls and the kernel work they caused.
    """
    return _cpu_ticks(pids)[1] / _TICKS


def _cpu_ticks(pids: Iterable[int]) -> Tuple[int, int]:
    """
    User and system clock ticks used so far by these processes; a process
    that has gone counts for nothing.
    """
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields 14 and 15 of stat(5); the list starts at field 3.
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def cpu_busy(cpu: int) -> float:
    """
    Seconds CPU C{cpu} has spent busy (anything but idle and I/O wait)
    since boot, from C{/proc/stat}.
    """
    prefix = f"cpu{cpu} "
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(prefix):
                ticks = [int(v) for v in line.split()[1:]]
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                # guest time is already counted in user time
                return (sum(ticks[:8]) - idle) / _TICKS
    return 0.0


def rss_bytes(pids: Iterable[int]) -> int:
    """
    The resident memory of these processes, summed.
    """
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def fd_count(pids: Iterable[int]) -> int:
    """
    The open file descriptors of these processes, summed.
    """
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def wait_listening(ports: Iterable[int], proc: Proc, timeout: float = 20.0) -> None:
    """
    Wait until every TCP port accepts a connection on 127.0.0.1.

    @raise RuntimeError: The process exited or the time ran out.
    """
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"{proc.name} does not listen on {port}:\n{proc.log_tail()}"
                    )
                time.sleep(0.05)


def free_ports(count: int) -> List[int]:
    """
    C{count} distinct TCP and UDP ports on 127.0.0.1 that were free a moment
    ago.
    """
    held: List[socket.socket] = []
    ports: List[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                u.close()
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports
