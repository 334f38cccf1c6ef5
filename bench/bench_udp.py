"""
UDP datagrams per second on 127.0.0.1: direct to an echo server, through
l4lb (C{mode udp}) and through nginx's stream module (when installed),
at 64 and 1,400 bytes, printed with the ratios.

    python bench/bench_udp.py [--seconds 5] [--window 32] [--only direct,l4lb,nginx]

Each load is one client socket keeping C{--window} datagrams in flight to
an echo server (a new one is sent for each reply) for C{--seconds}; the
figure is replies received per second.  One client socket is one session
in a balancer, so this measures the per-datagram path.  Everything is
bounded: each load stops after its time, each receive waits at most a
second, and every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

HOST = "127.0.0.1"
SIZES = (64, 1400)
READY_TIMEOUT = 15.0


def free_port() -> int:
    """
    A UDP port of 127.0.0.1 that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def echo_server(port: int, lifetime: float) -> None:
    """
    Echo every datagram back, for at most C{lifetime} seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((HOST, port))
    sock.settimeout(0.5)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        try:
            sock.sendto(data, addr)
        except OSError:
            pass


def load(port: int, size: int, seconds: float, window: int) -> float:
    """
    Keep C{window} datagrams of C{size} bytes in flight to C{port} for
    C{seconds}.

    @return: Replies per second.
    """
    payload = b"x" * size
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect((HOST, port))
        sock.settimeout(1.0)
        for _ in range(window):
            sock.send(payload)
        received = 0
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            try:
                sock.recv(65535)
            except socket.timeout:
                # Lost datagrams: refill the window.
                for _ in range(window):
                    sock.send(payload)
                continue
            except ConnectionRefusedError:
                return 0.0
            received += 1
            sock.send(payload)
        return received / (time.monotonic() - start)


def wait_udp(port: int, timeout: float = READY_TIMEOUT) -> bool:
    """
    Whether something echoes on C{port} within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                sock.sendto(b"ping", (HOST, port))
                sock.recvfrom(100)
                return True
            except OSError:
                time.sleep(0.1)
    return False


def start_l4lb(workdir: str, listen: int, backend: int) -> subprocess.Popen:  # type: ignore[type-arg]
    """
    Start l4lb with a C{mode udp} frontend in front of the echo server.
    """
    config = os.path.join(workdir, "lb.ini")
    with open(config, "w") as f:
        f.write(
            "[global]\nlog = none\n\n"
            f"[frontend bench]\nmode = udp\nbind = {HOST}:{listen}\n"
            "timeout udp = 10s\ndefault_backend = echo\n\n"
            f"[backend echo]\nmode = udp\nserver e1 = {HOST}:{backend}\n"
        )
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return subprocess.Popen(
        [twistd, "-n", "--pidfile=", "l4lb", "--config", config],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(workdir, "l4lb.err"), "w"),
    )


def start_nginx(workdir: str, listen: int, backend: int) -> Optional[subprocess.Popen]:  # type: ignore[type-arg]
    """
    Start nginx (one worker, stream module) in front of the echo server, or
    return C{None} when it is not installed.
    """
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    if nginx is None or not os.path.exists(module):
        return None
    config = os.path.join(workdir, "nginx.conf")
    with open(config, "w") as f:
        f.write(
            f"load_module {module};\nworker_processes 1;\ndaemon off;\n"
            f"pid {workdir}/nginx.pid;\nerror_log {workdir}/nginx.err;\n"
            "events { worker_connections 1024; }\n"
            "stream {\n"
            f"  upstream echo {{ server {HOST}:{backend}; }}\n"
            f"  server {{ listen {HOST}:{listen} udp; proxy_pass echo; proxy_timeout 10s; }}\n"
            "}\n"
        )
    return subprocess.Popen(
        [nginx, "-c", config, "-p", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(process: "subprocess.Popen[bytes]") -> None:
    """
    Stop a process started here, bounded.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main(argv: Optional[List[str]] = None) -> int:
    """
    Run every load against every contestant and print the table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--only", default="direct,l4lb,nginx")
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    lifetime = (args.seconds + 5) * len(SIZES) * 3 + 60
    backend = free_port()
    echo = multiprocessing.Process(target=echo_server, args=(backend, lifetime), daemon=True)
    echo.start()
    results: Dict[str, Dict[int, float]] = {}
    notes: Dict[str, str] = {}
    with tempfile.TemporaryDirectory() as workdir:
        starters: List[Tuple[str, Callable[[str, int, int], object]]] = [
            ("l4lb", start_l4lb),
            ("nginx", start_nginx),
        ]
        try:
            if not wait_udp(backend):
                print("the echo server did not start", file=sys.stderr)
                return 1
            if "direct" in wanted:
                results["direct"] = {s: load(backend, s, args.seconds, args.window) for s in SIZES}
            for name, starter in starters:
                if name not in wanted:
                    continue
                listen = free_port()
                process = starter(workdir, listen, backend)
                if process is None:
                    notes[name] = "not installed"
                    continue
                assert isinstance(process, subprocess.Popen)
                try:
                    if not wait_udp(listen):
                        notes[name] = "did not start"
                        continue
                    results[name] = {s: load(listen, s, args.seconds, args.window) for s in SIZES}
                finally:
                    stop(process)
        finally:
            echo.terminate()
            echo.join(10)
    print_table(results, notes)
    return 0


def print_table(results: Dict[str, Dict[int, float]], notes: Dict[str, str]) -> None:
    """
    Print datagrams per second and the ratios to direct and to nginx.
    """
    print("| Path | " + " | ".join(f"{s} B dgram/s" for s in SIZES) + " | vs direct | vs nginx |")
    print("|---|" + "---|" * (len(SIZES) + 2))
    for name, figures in results.items():
        cells = [f"{figures[s]:,.0f}" for s in SIZES]
        ratios = []
        for base in ("direct", "nginx"):
            if base in results and name != base:
                ratios.append(" / ".join(f"{figures[s] / results[base][s]:.2f}" for s in SIZES))
            else:
                ratios.append("-")
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")
    for name, note in notes.items():
        print(f"| {name} | {note} |")


if __name__ == "__main__":
    sys.exit(main())
