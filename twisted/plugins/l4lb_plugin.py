"""
The twistd plugin: C{twistd l4lb --config etc/lb.ini}.
"""

from twisted.application.service import ServiceMaker

l4lb = ServiceMaker(
    "l4lb",
    "l4lb.tap",
    "A Layer 4 (TCP and UDP) load balancer configured by an lb.ini file.",
    "l4lb",
)
