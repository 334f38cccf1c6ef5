"""
The end of a process that handed over (L{l4lb.handover}): it stops
accepting, since the new process accepts on the same sockets, and lets its
connections and UDP sessions end within C{hard-stop-after}.
"""

from __future__ import annotations

from typing import Any, List

from twisted.logger import Logger

from l4lb._twistedcompat import share_listening_port
from l4lb.readiness import STOPPING
from l4lb.tcp.phases import kill as kill_session

_log = Logger(namespace="l4lb")

#: Seconds between two looks at the connections left while retiring.
_DRAIN_POLL = 0.1


def retire(service: Any, reactor: Any, new_pid: int, generation: int) -> None:
    """
    Stop accepting (the new process accepts on the same sockets), stop the
    checks and discovery, let the TCP connections and UDP sessions end
    within C{hard-stop-after}, then stop the reactor.

    UDP listening sockets stay open, unread, so that the sessions' replies
    still leave through them; UNIX sockets keep their files, which the new
    process listens on.
    """
    service.instance_state = STOPPING
    # Out of the service tree: stopped once, now, and not again at exit.
    for child in (service.monitor, service.etcd, service.dns, service.history):
        if child is not None and child.parent is not None:
            child.disownServiceParent()
    workers_done: List[bool] = [service.workers is None]
    if service.workers is not None:
        stopped = service.workers.disownServiceParent()
        if stopped is None:
            workers_done.append(True)
        else:
            stopped.addBoth(lambda _: workers_done.append(True))
    for name, ports in service.ports.items():
        if name in service.udp_frontends:
            for port in ports:
                port.stopReading()
            continue
        for port in list(ports):
            share_listening_port(port)
            service.unlisten(name, port)
            ports.remove(port)
    for attribute in ("admin_port", "stats_port"):
        port = getattr(service, attribute)
        if port is not None:
            setattr(service, attribute, None)
            share_listening_port(port)
            port.stopListening()
    hard_stop = service.config.global_settings.hard_stop_after
    deadline = reactor.seconds() + hard_stop
    udp = lambda: sum(len(u.table) for u in service.udp_frontends.values())  # noqa: E731
    _log.info(
        "Handover: process {pid} took over (generation {generation}); not accepting"
        " any more, {tcp} connection(s) and {udp} UDP session(s) left to finish"
        " (hard-stop-after {hard}s).",
        pid=new_pid,
        generation=generation,
        tcp=service.limiter.current,
        udp=udp(),
        hard=hard_stop,
    )

    def poll() -> None:
        if service.limiter.current <= 0 and udp() == 0 and workers_done[-1]:
            _log.info("Handover: every connection ended; exiting.")
            reactor.stop()
            return
        if reactor.seconds() >= deadline:
            sessions = service.open_sessions()
            _log.warn(
                "hard-stop-after reached: closing {count} connection(s).",
                count=len(sessions) + udp(),
            )
            for session in sessions:
                kill_session(session, "K")
            # The stop closes the UDP sessions left (logged KD).
            reactor.stop()
            return
        reactor.callLater(_DRAIN_POLL, poll)

    poll()
