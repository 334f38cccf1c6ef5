"""
A fleet of l4lb instances behind an ECMP router, built from network
namespaces for one test and always removed afterwards: L{Fleet}.

    client ns            router ns                      instance ns (x3)
    198.18.1.2  ----  198.18.1.1                        lo: 198.19.0.10 (VIP)
    + 198.18.1.10..   brl 198.18.2.1  ---- bridge ----  l0: 198.18.2.11/12/13
                      BIRD: BGP from each instance,     l4lb on the VIP,
                      ECMP route to the VIP, L4 hash    ExaBGP announcing the
                      198.18.3.1  ----                  VIP while /ready is 200
                                  servers ns
                                  198.18.3.2, servers on .10 .11 .12

Every address is in 198.18.0.0/15 (the benchmarking range) and lives only
inside these namespaces; nothing leaves the machine.  The router pins each
established flow to the instance it first reached (a conntrack mark read
by a routing rule), so that an instance whose route is withdrawn keeps
the TCP connections it has; L{Fleet.pinning} turns that off to show what plain ECMP
does instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from .harness import runtime_command, subprocess_env, twistd_path, wait_until

#: The virtual address every instance announces.
VIP = "198.19.0.10"
#: The frontends on the VIP: TCP with source hashing, TCP with maglev, UDP.
SOURCE_PORT, MAGLEV_PORT, UDP_PORT = 7000, 7002, 7001
#: The backends' ports (TCP greeting and echo, UDP answer).
SERVER_TCP, SERVER_UDP = 7100, 7101
#: The backend servers, by name.
SERVERS = {"s1": "198.18.3.10", "s2": "198.18.3.11", "s3": "198.18.3.12"}
#: The router's address on the instances' network, and each instance's.
ROUTER_LB = "198.18.2.1"
INSTANCES = {1: "198.18.2.11", 2: "198.18.2.12", 3: "198.18.2.13"}
#: BGP: the router's AS and the fleet's (one AS for every instance).
ROUTER_AS, FLEET_AS = 65000, 65001
#: Seconds: the BGP hold time on both sides, and ExaBGP's check interval.
HOLD_TIME = 3
CHECK_INTERVAL = 1
#: The statistics listener of each instance (in its own namespace).
STATS = "127.0.0.1:8404"
#: etcd, in the servers' namespace: the instances read backend
#: C{by_etcd}'s servers from it.
ETCD_URL = "http://198.18.3.2:2379"
ETCD_PREFIX = "/l4lb/fleet/"
ETCD_PORT = 7003
#: Namespace names start with this and the test process's pid.
PREFIX = "l4f"
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fleet_peer.py")


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def remove_stale() -> None:
    """
    Remove the namespaces of fleet tests whose process is gone (a run that
    was killed before its clean-up).
    """
    listing = _run(["ip", "netns", "list"]).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{PREFIX}(\d+)x?[a-z]\d?$", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _run(["ip", "netns", "del", name], check=False)


def client_sources(count: int = 48) -> List[str]:
    """
    The client's source addresses: 198.18.1.10 on.
    """
    return [f"198.18.1.{10 + index}" for index in range(count)]


class Fleet:
    """
    The namespaces, the router, the servers and three l4lb instances.

    @ivar directory: Where configurations and logs go.
    @ivar pinning: Whether the router pins established flows.
    @ivar sources: The client's source addresses.
    """

    def __init__(self, directory: str, pinning: bool = True, sources: int = 48) -> None:
        self.directory = directory
        self.pinning = pinning
        self.sources = client_sources(sources)
        # A second fleet of the same run (without pinning) gets other names.
        tag = f"{PREFIX}{os.getpid()}" + ("" if pinning else "x")
        self.client, self.router, self.servers_ns = f"{tag}c", f"{tag}r", f"{tag}s"
        self.instance_ns = {n: f"{tag}l{n}" for n in INSTANCES}
        self.namespaces: List[str] = []
        self.processes: Dict[str, subprocess.Popen[bytes]] = {}
        self.extra_backend = ""

    # -- building ------------------------------------------------------------

    def ip(self, ns: str, *words: str) -> None:
        """
        Run C{ip -n NS WORDS...}; a failure raises with ip's message.
        """
        done = _run(["ip", "-n", ns, *words], check=False)
        if done.returncode:
            raise RuntimeError(f"ip -n {ns} {' '.join(words)}: {done.stderr.strip()}")

    def sysctl(self, ns: str, setting: str) -> None:
        """
        Set one sysctl inside C{ns}.
        """
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting])

    def build(self) -> None:
        """
        Make the namespaces and links, addresses and routes.
        """
        remove_stale()
        for ns in [self.client, self.router, self.servers_ns, *self.instance_ns.values()]:
            _run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        r = self.router
        self.sysctl(r, "net.ipv4.ip_forward=1")
        # Layer 4 hashing: the flows of one client spread over the instances.
        self.sysctl(r, "net.ipv4.fib_multipath_hash_policy=1")
        self.ip(r, "link", "add", "rc", "type", "veth", "peer", "name", "c0", "netns", self.client)
        self.ip(r, "addr", "add", "198.18.1.1/24", "dev", "rc")
        self.ip(r, "link", "set", "rc", "up")
        self.ip(self.client, "addr", "add", "198.18.1.2/24", "dev", "c0")
        for source in self.sources:
            self.ip(self.client, "addr", "add", f"{source}/24", "dev", "c0")
        self.ip(self.client, "link", "set", "c0", "up")
        self.ip(self.client, "route", "add", "default", "via", "198.18.1.1")
        self.ip(r, "link", "add", "rs", "type", "veth", "peer", "name", "s0", "netns", self.servers_ns)
        self.ip(r, "addr", "add", "198.18.3.1/24", "dev", "rs")
        self.ip(r, "link", "set", "rs", "up")
        s = self.servers_ns
        self.ip(s, "addr", "add", "198.18.3.2/24", "dev", "s0")
        for address in SERVERS.values():
            self.ip(s, "addr", "add", f"{address}/24", "dev", "s0")
        self.ip(s, "link", "set", "s0", "up")
        self.ip(s, "route", "add", "default", "via", "198.18.3.1")
        self.ip(r, "link", "add", "brl", "type", "bridge")
        self.ip(r, "addr", "add", f"{ROUTER_LB}/24", "dev", "brl")
        self.ip(r, "link", "set", "brl", "up")
        for number, address in INSTANCES.items():
            ns = self.instance_ns[number]
            port = f"rl{number}"
            self.ip(r, "link", "add", port, "type", "veth", "peer", "name", "l0", "netns", ns)
            self.ip(r, "link", "set", port, "master", "brl")
            self.ip(r, "link", "set", port, "up")
            self.ip(ns, "addr", "add", f"{address}/24", "dev", "l0")
            self.ip(ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            self.ip(ns, "link", "set", "l0", "up")
            self.ip(ns, "route", "add", "default", "via", ROUTER_LB)
        if self.pinning:
            self._pin()

    def _pin(self) -> None:
        """
        Pin each TCP flow to the VIP to the instance it first reached: the
        chosen next hop is written in the connection's conntrack mark, and
        later packets carrying that mark are routed by a table of their own.
        UDP is not pinned: every instance sends a client's datagrams to the
        same server, so a UDP flow may move between instances.
        """
        rules = [
            "table ip l4lbpin {",
            "  chain pre {",
            "    type filter hook prerouting priority mangle;",
            "    ct mark != 0 meta mark set ct mark",
            "  }",
            "  chain post {",
            "    type filter hook postrouting priority mangle;",
        ]
        for number, address in INSTANCES.items():
            rules.append(
                f"    ip daddr {VIP} meta l4proto tcp ct mark 0 rt ip nexthop {address}"
                f" ct mark set {number}"
            )
        rules += ["  }", "}"]
        path = os.path.join(self.directory, "pin.nft")
        with open(path, "w") as f:
            f.write("\n".join(rules) + "\n")
        _run(["ip", "netns", "exec", self.router, "nft", "-f", path])
        for number, address in INSTANCES.items():
            table = str(100 + number)
            self.ip(self.router, "route", "add", f"{VIP}/32", "via", address, "dev", "brl", "table", table)
            self.ip(self.router, "rule", "add", "fwmark", str(number), "lookup", table)

    # -- processes -------------------------------------------------------------

    def spawn(self, name: str, ns: str, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> None:
        """
        Start C{argv} inside C{ns}, its output in C{NAME.log}.
        """
        log = open(os.path.join(self.directory, f"{name}.log"), "wb")
        self.processes[name] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or subprocess_env(),
            start_new_session=True,
        )
        log.close()

    def log(self, name: str) -> str:
        """
        What process C{name} has written so far.
        """
        try:
            with open(os.path.join(self.directory, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """
        Send C{sig} to the process group of C{name}, and reap it on SIGKILL.
        """
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            process.wait(10)

    def start(self) -> None:
        """
        Start the servers, BIRD, and on each instance l4lb and ExaBGP; wait
        until the router has all three paths to the VIP.
        """
        names = [f"{name}={address}" for name, address in SERVERS.items()]
        self.spawn(
            "servers",
            self.servers_ns,
            [sys.executable, PEER, "serve", *names, "--tcp", str(SERVER_TCP), "--udp", str(SERVER_UDP)],
        )
        if not wait_until(lambda: "serving" in self.log("servers"), 10.0):
            raise RuntimeError("the servers did not start:\n" + self.log("servers"))
        self._etcd()
        self._bird()
        for number in INSTANCES:
            self.start_instance(number)
        if not wait_until(lambda: len(self.paths()) == len(INSTANCES), 30.0, 0.2):
            raise RuntimeError(f"the router has paths {self.paths()}:\n{self.diagnostics()}")

    def _etcd(self) -> None:
        """
        Start etcd in the servers' namespace and put one key per server
        under L{ETCD_PREFIX}, so that every instance starts with them.
        """
        peer = "http://127.0.0.1:2380"
        self.spawn(
            "etcd",
            self.servers_ns,
            [
                _program("etcd"), "--name", "fleet",
                "--data-dir", os.path.join(self.directory, "etcd"),
                "--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"fleet={peer}",
            ],
        )  # fmt: skip
        healthy = wait_until(
            lambda: self.etcdctl("endpoint", "health", check=False).returncode == 0, 30.0, 0.2
        )
        if not healthy:
            raise RuntimeError("etcd is not healthy:\n" + self.log("etcd")[-3000:])
        for name, address in SERVERS.items():
            self.etcdctl("put", f"{ETCD_PREFIX}e{name[1:]}", f"{address}:{SERVER_TCP}")

    def etcdctl(self, *args: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
        """
        Run C{etcdctl ARGS} against the fleet's etcd (from the servers'
        namespace).
        """
        env = subprocess_env()
        env["ETCDCTL_API"] = "3"
        done = subprocess.run(
            ["ip", "netns", "exec", self.servers_ns, _program("etcdctl"),
             "--endpoints", ETCD_URL, "--command-timeout", "5s", *args],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if check and done.returncode:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def _bird(self) -> None:
        config = [
            f'log "{os.path.join(self.directory, "bird-events.log")}" all;',
            f"router id {ROUTER_LB};",
            "protocol device { scan time 1; }",
            "protocol kernel {",
            "  ipv4 { import none; export where source = RTS_BGP; };",
            "  merge paths on;",
            "}",
            "template bgp fleet_peer {",
            f"  local {ROUTER_LB} as {ROUTER_AS};",
            f"  hold time {HOLD_TIME}; keepalive time 1; connect retry time 1;",
            "  ipv4 { import all; export none; };",
            "}",
        ]
        for number, address in INSTANCES.items():
            config.append(f"protocol bgp lb{number} from fleet_peer {{ neighbor {address} as {FLEET_AS}; }}")
        path = os.path.join(self.directory, "bird.conf")
        with open(path, "w") as f:
            f.write("\n".join(config) + "\n")
        control = os.path.join(self.directory, "bird.ctl")
        self.spawn("bird", self.router, [_program("bird"), "-f", "-c", path, "-s", control])

    def instance_config(self, number: int) -> str:
        """
        The lb.ini of instance C{number}: the same for every instance but
        for its runtime socket.
        """
        servers = "\n".join(
            f"server {name} = {address}:{SERVER_TCP} check inter 500 rise 1 fall 2"
            for name, address in SERVERS.items()
        )
        udp_servers = "\n".join(
            f"server {name} = {address}:{SERVER_UDP}" for name, address in SERVERS.items()
        )
        return f"""\
[global]
stats bind = {STATS}
stats socket = {self.admin(number)}
grace = 4s
hard-stop-after = 20s
log = stdout
[defaults]
timeout connect = 2s
timeout client = 30s
timeout server = 30s
timeout udp = 5s
[backend by_source]
balance = source
hash-type = consistent
{servers}
{self.extra_backend}
[backend by_maglev]
balance = maglev
{servers}
[backend by_etcd]
balance = source
hash-type = consistent
servers-from = etcd {ETCD_URL} {ETCD_PREFIX}
[backend datagrams]
mode = udp
balance = source
hash-type = consistent
udp-responses = 1
{udp_servers}
[frontend fe_source]
bind = {VIP}:{SOURCE_PORT}
default_backend = by_source
[frontend fe_maglev]
bind = {VIP}:{MAGLEV_PORT}
default_backend = by_maglev
[frontend fe_etcd]
bind = {VIP}:{ETCD_PORT}
default_backend = by_etcd
[frontend fe_udp]
mode = udp
bind = {VIP}:{UDP_PORT}
default_backend = datagrams
"""

    def admin(self, number: int) -> str:
        """
        The runtime socket of instance C{number} (a path: reachable from
        the test's own namespace).
        """
        return os.path.join(self.directory, f"lb{number}.sock")

    def start_instance(self, number: int) -> None:
        """
        Start l4lb and ExaBGP in the namespace of instance C{number}.
        """
        ns = self.instance_ns[number]
        config = os.path.join(self.directory, f"lb{number}.ini")
        with open(config, "w") as f:
            f.write(self.instance_config(number))
        self.spawn(f"l4lb{number}", ns, [twistd_path(), "-n", "--pidfile=", "l4lb", "--config", config])
        check = (
            f"{_exabgp_python()} -m exabgp healthcheck --no-syslog --no-ip-setup --withdraw-on-down"
            f" --ip {VIP}/32 --interval {CHECK_INTERVAL} --fast-interval {CHECK_INTERVAL}"
            f" --rise 1 --fall 1 --timeout 1"
            f" --cmd 'curl -sf --max-time 1 http://{STATS}/ready'"
        )
        # ExaBGP splits a process's command on spaces: the check goes in a
        # script of its own.
        script = os.path.join(self.directory, f"ready{number}.sh")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\nexec {check}\n")
        os.chmod(script, 0o755)
        exabgp = os.path.join(self.directory, f"exabgp{number}.conf")
        with open(exabgp, "w") as f:
            f.write(
                f"""\
process ready {{
    run {script};
    encoder text;
}}
neighbor {ROUTER_LB} {{
    router-id {INSTANCES[number]};
    local-address {INSTANCES[number]};
    local-as {FLEET_AS};
    peer-as {ROUTER_AS};
    hold-time {HOLD_TIME};
    api {{ processes [ ready ]; }}
}}
"""
            )
        env = subprocess_env()
        env.update(
            {
                "exabgp.daemon.user": "root",
                "exabgp.daemon.drop": "false",
                "exabgp.api.cli": "false",
                "exabgp.log.destination": "stdout",
            }
        )
        self.spawn(f"exabgp{number}", ns, [_program("exabgp"), exabgp], env=env)

    # -- reading -----------------------------------------------------------------

    def paths(self) -> List[str]:
        """
        The next hops of the router's route to the VIP (in its main table).
        """
        done = _run(["ip", "-n", self.router, "route", "show", f"{VIP}/32"], check=False)
        return sorted(re.findall(r"via (198\.18\.2\.\d+)", done.stdout))

    def run_client(self, program: str, *args: str, timeout: float = 120.0) -> Dict[str, Any]:
        """
        Run a client program of L{fleet_peer} in the client namespace and
        return what it printed.
        """
        done = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, PEER, program, "--vip", VIP, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=subprocess_env(),
        )
        if done.returncode:
            raise RuntimeError(f"{program} failed: {done.stderr}")
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def start_client(self, program: str, *args: str) -> "subprocess.Popen[str]":
        """
        Start a client program in the background; L{finish_client} reads it.
        """
        return subprocess.Popen(
            ["ip", "netns", "exec", self.client, sys.executable, PEER, program, "--vip", VIP, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )

    @staticmethod
    def finish_client(process: "subprocess.Popen[str]", timeout: float = 120.0) -> Dict[str, Any]:
        """
        Wait for a client started by L{start_client} and return its JSON.
        """
        out, err = process.communicate(timeout=timeout)
        if process.returncode:
            raise RuntimeError(f"client failed: {err}")
        return json.loads(out)  # type: ignore[no-any-return]

    def command(self, number: int, line: str) -> str:
        """
        One runtime API command on instance C{number}.
        """
        return runtime_command(self.admin(number), line)

    def diagnostics(self) -> str:
        """
        The routes and the logs, for a failure message.
        """
        parts = [f"paths: {self.paths()}"]
        for name in sorted(self.processes):
            parts.append(f"--- {name} ---\n{self.log(name)[-3000:]}")
        return "\n".join(parts)

    # -- teardown ------------------------------------------------------------

    def close(self) -> None:
        """
        Stop every process and remove every namespace (always).
        """
        for name in list(self.processes):
            self.kill(name, signal.SIGKILL)
        for ns in reversed(self.namespaces):
            # Anything still running inside a namespace dies with it.
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()

    def leftovers(self) -> List[str]:
        """
        This fleet's namespaces that still exist (none after L{close}).
        """
        mine = {self.client, self.router, self.servers_ns, *self.instance_ns.values()}
        return [ns for ns in _listed() if ns in mine]


def _listed() -> List[str]:
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.split()]


def _program(name: str) -> str:
    """
    The path of a Debian program (in C{/usr/sbin} as often as not).
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError(f"{name} is needed for the fleet test: apt-get install {name}")
    return found


def _exabgp_python() -> str:
    """
    The interpreter ExaBGP is installed for (Debian's C{/usr/bin/python3}),
    read from the first line of its script.
    """
    with open(_program("exabgp")) as f:
        first = f.readline()
    return first[2:].strip() if first.startswith("#!") else "/usr/bin/python3"


def wait_for(condition: Any, timeout: float, interval: float = 0.1) -> Optional[float]:
    """
    Poll C{condition} until true; return the seconds it took, or C{None}.
    """
    start = time.monotonic()
    if wait_until(condition, timeout, interval):
        return time.monotonic() - start
    return None
