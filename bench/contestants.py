"""
The contestants (a direct connection, HAProxy, nginx's stream module,
l4lb) and the backends they share: how to find them, configure them and
start them pinned to a CPU.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from bench.configs import (
    Backends,
    Frontends,
    haproxy_config,
    l4lb_config,
    nginx_backend_config,
    nginx_stream_config,
)
from bench.procs import Proc, fd_count, process_tree, wait_listening

HELPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers.py")
INSTALL_HINT = "apt-get install -y haproxy nginx libnginx-mod-stream wrk"


def find_program(name: str) -> Optional[str]:
    """
    A program on C{PATH} or in C{/usr/sbin} (where Debian puts daemons).
    """
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def nginx_stream_module() -> tuple[bool, Optional[str]]:
    """
    Whether nginx has its stream module, and the C{.so} to load when it is
    a dynamic module (Debian's C{libnginx-mod-stream}).
    """
    nginx = find_program("nginx")
    if nginx is None:
        return False, None
    try:
        out = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False, None
    flags = out.stdout + out.stderr
    if "--with-stream " in flags + " " and "--with-stream=dynamic" not in flags:
        return True, None
    for pattern in ("/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/lib*/nginx/modules/ngx_stream_module.so"):
        for path in glob.glob(pattern):
            return True, path
    return False, None


def nginx_version() -> tuple[int, ...]:
    """
    nginx's version as numbers, C{()} when unknown.
    """
    nginx = find_program("nginx")
    if nginx is None:
        return ()
    m = re.search(r"nginx/([\d.]+)", _first_line([nginx, "-v"]))
    return tuple(int(p) for p in m.group(1).split(".") if p) if m else ()


class Running:
    """
    A started contestant.

    @ivar contestant: What runs.
    @ivar frontends: Where to send the load.
    @ivar proc: The proxy process, C{None} for the direct connection.
    """

    def __init__(self, contestant: "Contestant", frontends: Frontends, proc: Optional[Proc]) -> None:
        self.contestant = contestant
        self.frontends = frontends
        self.proc = proc

    def pids(self) -> List[int]:
        """
        The proxy's processes (none for the direct connection).
        """
        return self.proc.pids() if self.proc is not None else []

    def stop(self) -> None:
        """
        Stop the proxy.
        """
        if self.proc is not None:
            self.proc.stop()


class Contestant:
    """
    One way of getting from the load generator to the backends.

    @ivar name: Short name, used in the JSON and on the command line.
    @ivar label: Name in the table.
    @ivar is_proxy: Whether a process sits in between (so it has CPU time
        and memory to measure).
    @ivar udp: Whether it relays UDP; when not, C{udp_note} says why.
    @ivar logging: Whether it logs a line per connection (C{--logging}).
    """

    name = ""
    label = ""
    is_proxy = True
    udp = False
    udp_note = "n/a"
    logging = False

    def missing(self) -> Optional[str]:
        """
        Why it cannot run here, or C{None} when it can.
        """
        return None

    def version(self) -> str:
        """
        Its version, for the report.
        """
        return ""

    def write_config(self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int) -> str:
        """
        Write its configuration file and return the path.
        """
        raise NotImplementedError

    def argv(self, workdir: str, config: str) -> List[str]:
        """
        The command line that runs it in the foreground.
        """
        raise NotImplementedError

    def check_argv(self, workdir: str, config: str) -> Optional[List[str]]:
        """
        A command line that validates the configuration, if there is one.
        """
        return None

    def env(self) -> Optional[Dict[str, str]]:
        """
        The environment to run it in (C{None}: ours).
        """
        return None

    def start(
        self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int, cpus: Sequence[int]
    ) -> Running:
        """
        Start it pinned to C{cpus} and wait until its TCP frontends accept.
        """
        config = self.write_config(workdir, frontends, backends, maxconn)
        log = os.path.join(workdir, f"{self.name}.log")
        proc = Proc(self.name, self.argv(workdir, config), cpus, log, cwd=workdir, env=self.env())
        proc.start()
        try:
            wait_listening([frontends.http, frontends.sink], proc)
        except Exception:
            proc.stop()
            raise
        return Running(self, frontends, proc)


class Direct(Contestant):
    """
    No proxy: the load goes to the first backend.
    """

    name = "direct"
    label = "direct"
    is_proxy = False
    udp = True

    def start(
        self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int, cpus: Sequence[int]
    ) -> Running:
        """
        Nothing to start.
        """
        direct = Frontends(http=backends.http[0], sink=backends.sink[0], udp=backends.udp[0])
        return Running(self, direct, None)


class HAProxy(Contestant):
    """
    Debian's C{haproxy}, C{mode tcp}, one thread.
    """

    name = "haproxy"
    label = "HAProxy"
    udp_note = "n/a (no UDP)"

    def missing(self) -> Optional[str]:
        """
        C{haproxy} must be installed.
        """
        return None if find_program("haproxy") else f"haproxy is not installed ({INSTALL_HINT})"

    def version(self) -> str:
        """
        The first line of C{haproxy -v}.
        """
        return _first_line([find_program("haproxy") or "haproxy", "-v"])

    def write_config(self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int) -> str:
        """
        Write C{haproxy.cfg}.
        """
        return _write(workdir, "haproxy.cfg", haproxy_config(frontends, backends, maxconn, self.logging))

    def argv(self, workdir: str, config: str) -> List[str]:
        """
        C{haproxy -db -f haproxy.cfg}.
        """
        return [find_program("haproxy") or "haproxy", "-db", "-f", config]

    def check_argv(self, workdir: str, config: str) -> Optional[List[str]]:
        """
        C{haproxy -c -f haproxy.cfg}.
        """
        return [find_program("haproxy") or "haproxy", "-c", "-q", "-f", config]


class Nginx(Contestant):
    """
    Debian's C{nginx} with C{libnginx-mod-stream}, one worker process.
    """

    name = "nginx"
    label = "nginx"
    udp = True

    def missing(self) -> Optional[str]:
        """
        C{nginx} and its stream module must be installed.
        """
        if find_program("nginx") is None:
            return f"nginx is not installed ({INSTALL_HINT})"
        if not nginx_stream_module()[0]:
            return f"nginx's stream module is not installed ({INSTALL_HINT})"
        return None

    def version(self) -> str:
        """
        C{nginx -v}.
        """
        return _first_line([find_program("nginx") or "nginx", "-v"])

    def write_config(self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int) -> str:
        """
        Write C{nginx-proxy.conf}.
        """
        module = nginx_stream_module()[1]
        half_close = nginx_version() >= (1, 21, 4)
        text = nginx_stream_config(frontends, backends, maxconn, workdir, module, half_close, self.logging)
        return _write(workdir, "nginx-proxy.conf", text)

    def argv(self, workdir: str, config: str) -> List[str]:
        """
        C{nginx -p WORKDIR -e ERRORLOG -c nginx-proxy.conf}.
        """
        return nginx_argv(workdir, config, "nginx-proxy")

    def check_argv(self, workdir: str, config: str) -> Optional[List[str]]:
        """
        C{nginx -t} on the same file.
        """
        return nginx_argv(workdir, config, "nginx-proxy") + ["-t", "-q"]


class L4lb(Contestant):
    """
    l4lb, run as documented: C{twistd -n --pidfile= l4lb --config FILE}.

    @ivar bin_dir: The directory of the C{twistd} and C{python} to use.
    """

    name = "l4lb"
    label = "l4lb"
    udp = True

    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = bin_dir

    def missing(self) -> Optional[str]:
        """
        C{twistd} must be in C{bin_dir}, with l4lb installed beside it.
        """
        if not os.path.exists(os.path.join(self.bin_dir, "twistd")):
            return f"no twistd in {self.bin_dir} (install l4lb there: pip install .)"
        if not self.version():
            return f"l4lb is not installed for {self.bin_dir}/python (pip install .)"
        return None

    def version(self) -> str:
        """
        l4lb's, Twisted's and the interpreter's versions.
        """
        code = (
            "import sys, platform, l4lb, twisted;"
            "print(l4lb.__version__, 'Twisted', twisted.__version__,"
            " platform.python_implementation(), platform.python_version())"
        )
        python = os.path.join(self.bin_dir, "python")
        return _first_line([python, "-c", code], env=self.env(), cwd="/")

    def env(self) -> Optional[Dict[str, str]]:
        """
        Ours, without C{PYTHONPATH}, so the installed l4lb runs.
        """
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        return env

    def write_config(self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int) -> str:
        """
        Write C{l4lb.ini}.
        """
        return _write(workdir, "l4lb.ini", l4lb_config(frontends, backends, maxconn, logging=self.logging))

    def argv(self, workdir: str, config: str) -> List[str]:
        """
        C{twistd -n --pidfile= l4lb --config l4lb.ini}.
        """
        twistd = os.path.join(self.bin_dir, "twistd")
        return [twistd, "-n", "--pidfile=", "l4lb", "--config", config]

    def check_argv(self, workdir: str, config: str) -> Optional[List[str]]:
        """
        C{l4lb check l4lb.ini}.
        """
        return [os.path.join(self.bin_dir, "l4lb"), "check", config]


class L4lbTwistedEpoll(L4lb):
    """
    l4lb on Twisted's own epoll reactor (C{twistd --reactor=epoll -n
    --pidfile= l4lb ...}), the reactor C{twistd l4lb} ran on before it
    chose l4lb's (C{l4lb-epoll}) by itself.
    """

    name = "l4lb-twisted"
    label = "l4lb (Twisted's epoll)"

    def argv(self, workdir: str, config: str) -> List[str]:
        """
        L{L4lb}'s command line with C{--reactor=epoll}.
        """
        twistd, *rest = super().argv(workdir, config)
        return [twistd, "--reactor=epoll", *rest]


class L4lbClassic(L4lb):
    """
    l4lb with C{tune.relay = classic}: Twisted's listening ports,
    connectors and transports carry every connection (the path TLS takes,
    and the one on systems other than Linux).
    """

    name = "l4lb-classic"
    label = "l4lb (classic relay)"

    def write_config(self, workdir: str, frontends: Frontends, backends: Backends, maxconn: int) -> str:
        """
        Write C{l4lb.ini} with C{tune.relay = classic}.
        """
        return _write(workdir, "l4lb.ini", l4lb_config(frontends, backends, maxconn, "classic", self.logging))


class L4lbPyPy(L4lb):
    """
    l4lb as L{L4lb} runs it, but with the C{twistd} of a PyPy virtualenv
    (C{pypy3 -m venv DIR}; C{DIR/bin/pip install .}).
    """

    name = "l4lb-pypy"
    label = "l4lb (PyPy)"

    def missing(self) -> Optional[str]:
        """
        As L{L4lb.missing}, and the interpreter in C{bin_dir} must be PyPy.
        """
        why = super().missing()
        if why is None and "PyPy" not in self.version():
            return f"{self.bin_dir}/python is not PyPy"
        return why


#: Where bench/README.md installs l4lb for PyPy.
DEFAULT_PYPY_BIN = "/tmp/bench-pypy-venv/bin"


def all_contestants(l4lb_bin: str, pypy_bin: str = DEFAULT_PYPY_BIN) -> List[Contestant]:
    """
    Every contestant, in table order.
    """
    return [
        Direct(),
        HAProxy(),
        Nginx(),
        L4lb(l4lb_bin),
        L4lbTwistedEpoll(l4lb_bin),
        L4lbClassic(l4lb_bin),
        L4lbPyPy(pypy_bin),
    ]


def nginx_argv(workdir: str, config: str, name: str) -> List[str]:
    """
    nginx in the foreground with everything (temporary files, logs) under
    C{workdir}.
    """
    nginx = find_program("nginx") or "nginx"
    error_log = os.path.join(workdir, f"{name}.error.log")
    return [nginx, "-p", workdir + "/", "-e", error_log, "-c", config]


def _write(workdir: str, name: str, text: str) -> str:
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _first_line(argv: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if out.returncode != 0:
        return ""
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


# -- shared backends ---------------------------------------------------------

BODY = b"l4lb benchmark: a small response body of 64 bytes, padded......\n"


class BackendSet:
    """
    The servers behind every proxy: nginx serving a small file on two
    ports, the byte sink and the UDP echo server, all pinned to the load
    CPUs.

    @ivar http: The nginx process, or C{None} when nginx is missing.
    """

    def __init__(self, workdir: str, backends: Backends, maxconn: int, cpus: Sequence[int], python: str) -> None:
        self.workdir = workdir
        self.backends = backends
        self.maxconn = maxconn
        self.cpus = list(cpus)
        self.python = python
        self.http: Optional[Proc] = None
        self.sink: Optional[Proc] = None
        self.udp: Optional[Proc] = None

    def start(self) -> None:
        """
        Start them and wait until the TCP ones accept.
        """
        docroot = os.path.join(self.workdir, "www")
        os.makedirs(docroot, exist_ok=True)
        with open(os.path.join(docroot, "index.html"), "wb") as f:
            f.write(BODY)
        for path in (self.workdir, docroot, os.path.join(docroot, "index.html")):
            os.chmod(path, 0o755)
        join = os.path.join
        if find_program("nginx") is not None:
            text = nginx_backend_config(self.backends.http, docroot, self.maxconn, self.workdir)
            config = _write(self.workdir, "nginx-backend.conf", text)
            argv = nginx_argv(self.workdir, config, "nginx-backend")
            self.http = Proc("nginx-backend", argv, self.cpus, join(self.workdir, "nginx-backend.log"))
            self.http.start()
            wait_listening(self.backends.http, self.http)
        sink = [self.python, HELPERS, "sink", *map(str, self.backends.sink)]
        self.sink = Proc("sink", sink, self.cpus, join(self.workdir, "sink.log"), stdin_pipe=True)
        self.sink.start()
        wait_listening(self.backends.sink, self.sink)
        echo = [self.python, HELPERS, "udp-echo", *map(str, self.backends.udp)]
        self.udp = Proc("udp-echo", echo, self.cpus, join(self.workdir, "udp-echo.log"), stdin_pipe=True)
        self.udp.start()

    def http_fds(self) -> int:
        """
        The HTTP backend's open descriptors (to see idle connections land).
        """
        return fd_count(process_tree(self.http.pid)) if self.http is not None else 0

    def stop(self) -> None:
        """
        Stop them all.
        """
        for proc in (self.http, self.sink, self.udp):
            if proc is not None:
                proc.stop()


def default_l4lb_bin() -> str:
    """
    The scripts directory of the interpreter running the benchmark.
    """
    return os.path.dirname(sys.executable)
