"""
A one-member etcd cluster for the end-to-end tests of C{servers-from}:
Debian's C{etcd} (package C{etcd-server}) on two free loopback ports (its
client and peer URLs), with its data in a temporary directory, driven with
C{etcdctl} (package C{etcd-client}).

It can be stopped and started again on the same ports and data, as an
outage of the store looks to l4lb.
"""

from __future__ import annotations

import os
import subprocess
from typing import List

from .daemons import Daemon, require
from .harness import free_port, subprocess_env, wait_until

#: Seconds etcd may take to answer its health check once listening.
HEALTHY_TIMEOUT = 30.0


class Etcd:
    """
    One etcd member on loopback.

    @ivar url: Its client URL, C{http://127.0.0.1:PORT}.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            require("etcd", "etcd-server"),
            "--name", "l4lb-test",
            "--data-dir", os.path.join(directory, "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"l4lb-test={peer}",
        ]  # fmt: skip
        self._etcdctl = require("etcdctl", "etcd-client")
        self.daemon = Daemon("etcd", argv, self.client_port, directory)

    def start(self) -> "Etcd":
        """
        Start it and wait until it answers as healthy.
        """
        self.daemon.start()
        healthy = wait_until(
            lambda: self.ctl("endpoint", "health", check=False).returncode == 0,
            HEALTHY_TIMEOUT,
            0.1,
        )
        if not healthy:
            self.daemon.fail(f"not healthy after {HEALTHY_TIMEOUT:.0f}s")
        return self

    def stop(self) -> None:
        """
        Stop it (safe to call twice).
        """
        self.daemon.stop()

    def ctl(self, *args: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
        """
        Run C{etcdctl ARGS} against it (API v3), bounded in time.
        """
        env = subprocess_env()
        env["ETCDCTL_API"] = "3"
        argv: List[str] = [self._etcdctl, "--endpoints", self.url, "--command-timeout", "5s", *args]
        result = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
        )
        if check and result.returncode != 0:
            raise AssertionError(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
        return result

    def put(self, key: str, value: str) -> None:
        """
        C{etcdctl put KEY VALUE}.
        """
        self.ctl("put", key, value)

    def delete(self, key: str) -> None:
        """
        C{etcdctl del KEY}.
        """
        self.ctl("del", key)
