"""
l4lb's reactor for twistd: C{twistd --reactor=l4lb-epoll -n l4lb --config lb.ini}.

Linux only: elsewhere twistd reports that the reactor cannot be used.
"""

from twisted.application.reactors import Reactor

l4lb_epoll = Reactor(
    "l4lb-epoll",
    "l4lb.reactor",
    "epoll(7) reactor without a log context per event (Linux; l4lb).",
)
