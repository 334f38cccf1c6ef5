"""
Health log messages in HAProxy's words, so that log parsers written for
HAProxy keep working.

    Server be/s1 is DOWN, reason: Layer4 connection problem, info: "Connection
    refused", check duration: 0ms. 1 active and 0 backup servers left. 0
    sessions active, 0 requeued, 0 remaining in queue.
"""

from __future__ import annotations

from typing import Optional

from l4lb.health.status import CheckResult, describe


def server_label(backend: str, server: str, backup: bool) -> str:
    """
    C{Server be/s1}, or C{Backup Server be/s3}.
    """
    return f"{'Backup ' if backup else ''}Server {backend}/{server}"


def check_details(result: Optional[CheckResult]) -> str:
    """
    C{, reason: ..., info: "...", check duration: Nms} for a check result
    (nothing without one).
    """
    if result is None:
        return ""
    text = f", reason: {describe(result.status)}"
    if result.description:
        info = result.description.replace('"', '\\"')
        text += f', info: "{info}"'
    if result.duration is not None:
        text += f", check duration: {int(result.duration * 1000)}ms"
    return text


def _counts_left(active: int, backup: int, sessions: int) -> str:
    on_backup = " Running on backup." if backup and not active else ""
    return (
        f". {active} active and {backup} backup servers left.{on_backup}"
        f" {sessions} sessions active, 0 requeued, 0 remaining in queue."
    )


def _counts_online(active: int, backup: int) -> str:
    on_backup = " Running on backup." if backup and not active else ""
    return (
        f". {active} active and {backup} backup servers online.{on_backup}"
        " 0 sessions requeued, 0 total in queue."
    )


def server_down(
    backend: str,
    server: str,
    backup: bool,
    result: Optional[CheckResult],
    active: int,
    backups: int,
    sessions: int,
) -> str:
    """
    C{Server be/s1 is DOWN, reason: ... 1 active and 0 backup servers
    left. 0 sessions active, 0 requeued, 0 remaining in queue.}

    @param active: Active servers still usable.
    @param backups: Backup servers still usable.
    @param sessions: Connections still open to the server.
    """
    return (
        f"{server_label(backend, server, backup)} is DOWN"
        f"{check_details(result)}{_counts_left(active, backups, sessions)}"
    )


def server_up(
    backend: str,
    server: str,
    backup: bool,
    result: Optional[CheckResult],
    active: int,
    backups: int,
) -> str:
    """
    C{Server be/s1 is UP, reason: Layer4 check passed, check duration: 0ms.
    2 active and 0 backup servers online. 0 sessions requeued, 0 total in
    queue.}
    """
    return (
        f"{server_label(backend, server, backup)} is UP"
        f"{check_details(result)}{_counts_online(active, backups)}"
    )


def admin_change(
    backend: str,
    server: str,
    backup: bool,
    old: str,
    new: str,
    cause: str,
    active: int,
    backups: int,
    sessions: int,
) -> str:
    """
    An administrative state change (C{ready}, C{drain}, C{maint}), e.g.
    C{Server be/s1 enters drain state (agent). 1 active and 0 backup
    servers online. 0 sessions requeued, 0 total in queue.}

    @param cause: Who asked, in parentheses after the change (C{agent}).
    """
    label = server_label(backend, server, backup)
    if new == "drain":
        return f"{label} enters drain state ({cause}){_counts_online(active, backups)}"
    if new == "maint":
        return (
            f"{label} is going DOWN for maintenance ({cause})"
            f"{_counts_left(active, backups, sessions)}"
        )
    leaving = "maintenance" if old == "maint" else "drain"
    return f"{label} is UP/READY (leaving {leaving}, {cause}){_counts_online(active, backups)}"


def check_report(
    kind: str,
    backend: str,
    server: str,
    backup: bool,
    result: CheckResult,
    done: int,
    of: int,
    state: str,
) -> str:
    """
    One check's outcome, for C{option log-health-checks}: C{Health check
    for server be/s1 failed, reason: ..., check duration: 0ms, status: 2/3
    UP.}

    @param kind: C{"check"} or C{"agent"}.
    @param done: With C{of} and C{state}, the counter as
        L{l4lb.health.state.HealthState.counts} gives it.
    """
    what = "Agent" if kind == "agent" else "Health"
    outcome = "succeeded" if result.ok else "failed"
    return (
        f"{what} check for {'backup ' if backup else ''}server {backend}/{server} {outcome}"
        f"{check_details(result)}, status: {done}/{of} {state}."
    )


def no_server(backend: str) -> str:
    """
    C{backend be has no server available!}
    """
    return f"backend {backend} has no server available!"
