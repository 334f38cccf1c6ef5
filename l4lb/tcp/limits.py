"""
C{maxconn}: at the limit, listening sockets stop accepting.

Connections over the limit stay in the kernel's accept backlog until a slot
frees; they are never accepted and then dropped.  Twisted's listening ports
accept in batches (C{numberAccepts} per readiness event), so each watched
port's batch is capped at the number of free slots before it reads.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from l4lb._twistedcompat import accepts_per_event, set_accepts_per_event, set_do_read
from l4lb.eventrate import EventRate


class ConnectionLimiter:
    """
    The process-wide connection count and limit.

    @ivar maxconn: The limit; 0 means none.
    @ivar current: Connections open now, over every frontend.
    @ivar session_rate: New connections per second over every frontend
        (L{l4lb.eventrate.EventRate}).
    """

    def __init__(self, maxconn: int = 0) -> None:
        self.maxconn = maxconn
        self.current = 0
        self.session_rate = EventRate()
        self._gates: List[Gate] = []

    def gate(self, maxconn: int = 0) -> "Gate":
        """
        Make the gate of one frontend.

        @param maxconn: The frontend's own limit; 0 means only the global one.
        """
        gate = Gate(self, maxconn)
        self._gates.append(gate)
        return gate

    def remove(self, gate: "Gate") -> None:
        """
        Forget C{gate} (its frontend stopped).
        """
        if gate in self._gates:
            self._gates.remove(gate)

    def free(self) -> int:
        """
        Slots left under the global limit (a large number when there is none).
        """
        if self.maxconn <= 0:
            return 1 << 30
        return self.maxconn - self.current

    def _changed(self, full_before: bool) -> None:
        if full_before != (self.free() <= 0):
            for gate in self._gates:
                gate.update()


class Gate:
    """
    One frontend's share of the limits, and its listening ports.

    @ivar maxconn: The frontend's limit; 0 means only the global one.
    @ivar current: The frontend's open connections.
    @ivar held: While true the ports accept nothing (the service is starting).
    @ivar rate: The frontend's L{l4lb.protect.ratelimit.SessionRate}
        (C{rate-limit sessions}), or C{None}.
    @ivar successor: The gate of the frontend a reload built to replace
        this one's, which counts the connections this one accepted; or
        C{None}.
    """

    def __init__(self, limiter: ConnectionLimiter, maxconn: int) -> None:
        self.limiter = limiter
        self.maxconn = maxconn
        self.current = 0
        self.held = True
        self.rate: Optional[Any] = None
        self._ports: List[Any] = []
        self._originals: Dict[int, Any] = {}
        self._reading = False
        self.successor: Optional[Gate] = None

    def free(self) -> int:
        """
        Connections this frontend may accept now.
        """
        free = self.limiter.free()
        if self.maxconn > 0:
            free = min(free, self.maxconn - self.current)
        if self.rate is not None:
            free = min(free, self.rate.free())
        return free

    def add_port(self, port: Any) -> None:
        """
        Put a listening port under this gate.

        @param port: A Twisted listening port that is a file descriptor
            (C{startReading}, C{stopReading}, C{doRead}), as every stream
            port of Twisted's is.
        """
        self._ports.append(port)
        original = port.doRead
        # Given back by remove_port, so that a reload can hand the port,
        # still listening, to the gate of the frontend that replaces this.
        self._originals[id(port)] = original

        def doRead() -> object:
            free = self.free()
            if free <= 0 or self.held:
                port.stopReading()
                return None
            if accepts_per_event(port) > free:
                set_accepts_per_event(port, free)
            return original()

        set_do_read(port, doRead)
        if not self._reading:
            port.stopReading()

    def remove_port(self, port: Any) -> None:
        """
        Take a port out of this gate (it is being closed).
        """
        if port in self._ports:
            self._ports.remove(port)
            set_do_read(port, self._originals.pop(id(port)))

    def acquire(self) -> None:
        """
        Count one accepted connection.
        """
        full_before = self.limiter.free() <= 0
        if self.rate is not None:
            self.rate.count()
        self.current += 1
        self.limiter.current += 1
        self.update()
        self.limiter._changed(full_before)

    def release(self) -> None:
        """
        Count one closed connection.
        """
        if self.successor is not None:
            # Accepted before a reload: counted by the gate of now.
            self.successor.release()
            return
        full_before = self.limiter.free() <= 0
        self.current -= 1
        self.limiter.current -= 1
        self.update()
        self.limiter._changed(full_before)

    def open(self) -> None:
        """
        Start accepting (the service is up).
        """
        self.held = False
        self.update()

    def update(self) -> None:
        """
        Pause or resume the ports to match the limits.
        """
        reading = not self.held and self.free() > 0
        if reading == self._reading:
            return
        self._reading = reading
        for port in self._ports:
            if reading:
                port.startReading()
            else:
                port.stopReading()
