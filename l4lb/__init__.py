"""
l4lb: a Layer 4 (TCP and UDP) load balancer built on Twisted.

The public API for applications that embed l4lb lives in L{l4lb.api}.
"""

__version__ = "0.1.0"
