"""
Health checks: active checks (TCP connect, C{tcp-check} sequences, agents)
run on timers by L{HealthMonitor}, passive checks on live traffic
(C{observe layer4}), and the UP/DOWN state machine with HAProxy's rules.

See C{docs/health.md}.
"""

from l4lb.health.agent import AgentCheck, parse_agent_reply
from l4lb.health.build import tcp_checks
from l4lb.health.loop import CheckLoop
from l4lb.health.monitor import HealthMonitor
from l4lb.health.observe import PassiveObserver
from l4lb.health.server import ServerHealth
from l4lb.health.state import HealthState
from l4lb.health.status import AgentReply, CheckResult
from l4lb.health.tcp import TcpCheck

__all__ = [
    "AgentCheck",
    "AgentReply",
    "CheckLoop",
    "CheckResult",
    "HealthMonitor",
    "HealthState",
    "PassiveObserver",
    "ServerHealth",
    "TcpCheck",
    "parse_agent_reply",
    "tcp_checks",
]
