"""
Operating a running balancer: the runtime API on a UNIX socket
(HAProxy's text commands) and the statistics it shows.

    - L{l4lb.admin.fields}: the columns of C{show stat}, in HAProxy's order.
    - L{l4lb.admin.stats}: rows of statistics read from a running service.
    - L{l4lb.admin.render}: those rows as CSV.
    - L{l4lb.admin.commands}: parsing and running one command line.
    - L{l4lb.admin.protocol}: the socket's protocol and factory.
    - L{l4lb.admin.cap}: the connection cap of l4lb's own listeners and
      the descriptors they may take.
"""
