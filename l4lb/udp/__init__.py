"""
UDP load balancing: C{mode udp} frontends, their session tables and the
UDP health check.

    - L{l4lb.udp.table}: the pure session table (order, idle expiry, cap);
    - L{l4lb.udp.session}: one client's session and its connected socket;
    - L{l4lb.udp.frontend}: a frontend's routing and its C{DatagramProtocol};
    - L{l4lb.udp.sockets}: binding, buffer sizes, the largest datagram;
    - L{l4lb.udp.counters}, L{l4lb.udp.log}: counters and the session log;
    - L{l4lb.udp.check}, L{l4lb.udp.dns}: health checks of UDP servers.

This package imports nothing heavy at its top level, so that
L{l4lb.pool} can use its counters.
"""
