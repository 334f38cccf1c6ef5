"""
Handing a running process's listening sockets and runtime state to a new
process: an upgrade without a refused connection.

The running process (the donor, L{l4lb.handover.donor}) answers a new
process (the taker, L{l4lb.handover.taker}) on its C{stats socket} when
that socket has C{expose-fd listeners}:

  1. the taker, its configuration read and valid, sends C{_handover} with
     its pid and version;
  2. the donor sends one line of JSON (the keys of its listening sockets,
     L{l4lb.handover.sockets}, and its runtime state,
     L{l4lb.handover.state}) whose first bytes carry the sockets'
     descriptors (C{SCM_RIGHTS}, one per byte, in the order of the keys);
  3. the taker builds its runtime from its file with the same
     constructors as a start, adopting the sockets of the binds that did
     not change, applies the state by name, starts serving, and sends
     C{commit};
  4. the donor stops accepting, answers C{committed}, lets its
     connections and UDP sessions end (within C{hard-stop-after}) and
     exits.

Until step 4 nothing changes in the donor: if the taker fails or goes
away, the donor serves on.
"""
