"""
The health state machine of one server: UP or DOWN, with HAProxy's
counter of consecutive results.

The counter C{health} runs from 0 to C{rise + fall - 1}.  A server is UP
while C{health >= rise}.  A passed check adds one, and once the counter
reaches C{rise} it jumps to the top: a server going down is fully UP again
after one good check.  A failed check takes one away, and once the counter
drops below C{rise} it falls to 0: a server coming up is fully DOWN again
after one bad check.  So C{fall} failures in a row take a fully UP server
DOWN, and C{rise} successes in a row bring a fully DOWN server UP.

Nothing here knows about time or sockets; L{l4lb.health.server} feeds it
results.
"""

from __future__ import annotations

from typing import Optional, Tuple

#: The values of C{init-state}.
INIT_STATES = ("up", "fully-up", "down", "fully-down")


class HealthState:
    """
    The check counter of one server.

    @ivar rise: Consecutive passed checks to go UP.
    @ivar fall: Consecutive failed checks to go DOWN.
    @ivar health: The counter, 0 to C{rise + fall - 1}.
    """

    def __init__(self, rise: int = 2, fall: int = 3, init_state: str = "up") -> None:
        """
        @param init_state: As HAProxy 3.1's C{init-state}: C{"up"} starts
            UP and one failed check marks it DOWN; C{"fully-up"} starts UP
            and C{fall} failed checks mark it DOWN; C{"down"} starts DOWN
            and one passed check marks it UP; C{"fully-down"} starts DOWN
            and C{rise} passed checks mark it UP.
        """
        if rise < 1 or fall < 1:
            raise ValueError(f"rise {rise} and fall {fall} must be at least 1")
        if init_state not in INIT_STATES:
            raise ValueError(f"unknown init-state {init_state!r}; allowed: {', '.join(INIT_STATES)}")
        self.rise = rise
        self.fall = fall
        self.health = {
            "fully-up": self.top,
            "up": rise,
            "down": rise - 1,
            "fully-down": 0,
        }[init_state]

    @property
    def top(self) -> int:
        """
        The counter of a fully UP server.
        """
        return self.rise + self.fall - 1

    @property
    def up(self) -> bool:
        """
        Whether the server counts as UP.
        """
        return self.health >= self.rise

    @property
    def settled(self) -> bool:
        """
        Whether the server is fully UP or fully DOWN (not changing state).
        """
        return self.health in (0, self.top)

    def record(self, passed: bool) -> Optional[bool]:
        """
        Count one check result.

        @return: The new state (C{True} for UP) when it changed, else
            C{None}.
        """
        was = self.up
        if passed:
            if self.health < self.top:
                self.health += 1
                if self.health >= self.rise:
                    self.health = self.top
        elif self.health > 0:
            self.health -= 1
            if self.health < self.rise:
                self.health = 0
        return None if self.up == was else self.up

    def sudden_death(self) -> None:
        """
        Leave a fully UP server one failed check away from DOWN
        (C{on-error sudden-death}, before the failure is recorded).
        """
        if self.health > self.rise:
            self.health = self.rise + 1

    def mark_down(self) -> None:
        """
        Put the counter where the next failed check marks the server DOWN
        (C{on-error mark-down}, before the failure is recorded).
        """
        self.health = self.rise

    def interval(
        self, inter: float, fastinter: Optional[float], downinter: Optional[float]
    ) -> float:
        """
        The time to wait before the next check, as HAProxy chooses it:
        C{inter} while fully UP, C{downinter} while fully DOWN, C{fastinter}
        while changing state (each defaulting to C{inter}).
        """
        if self.health == self.top:
            return inter
        if self.health == 0:
            return downinter or inter
        return fastinter or inter

    def counts(self) -> Tuple[int, int, str]:
        """
        The counter as HAProxy reports it: C{(2, 3, "UP")} for a server
        two failed checks away from DOWN, C{(1, 2, "DOWN")} for one that
        passed one check of two on its way UP.
        """
        if self.up:
            return self.health - self.rise + 1, self.fall, "UP"
        return self.health, self.rise, "DOWN"

    def text(self) -> str:
        """
        The state as the stats show it: C{"UP"}, C{"UP 1/3"}, C{"DOWN"},
        C{"DOWN 1/2"}.
        """
        done, of, word = self.counts()
        if self.settled:
            return word
        return f"{word} {done}/{of}"

    def __repr__(self) -> str:
        return f"<HealthState {self.text()} health={self.health}/{self.top}>"
