"""
Operating a running balancer: the runtime API on a UNIX socket
(HAProxy's text commands) and the statistics it shows.

    - L{l4lb.admin.fields}: the columns of C{show stat}, in HAProxy's order.
    - L{l4lb.admin.stats}: rows of statistics read from a running service.
    - L{l4lb.admin.render}: those rows as CSV.
    - L{l4lb.admin.html}: those rows as the HTML page, with
      L{l4lb.admin.summary} (the process summary at its top),
      L{l4lb.admin.history} (the trends kept in memory) and
      L{l4lb.admin.sparkline} (the trends drawn as inline SVG).
    - L{l4lb.admin.commands}: parsing and running one command line.
    - L{l4lb.admin.protocol}: the socket's protocol and factory.
    - L{l4lb.admin.cap}: the connection cap of l4lb's own listeners and
      the descriptors they may take.
"""
