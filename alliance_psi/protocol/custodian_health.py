"""Which of a threshold epoch's custodians a member node may ask now, and what it has said about them.

A custodian that could not be reached is *down* for a while (``down_for`` seconds): the node asks
the others first and comes back to it only when it must. A custodian caught answering wrongly,
or refusing for good (quota spent, member not enrolled, another epoch), is *excluded* for the
node's run, and every later error names it with its reason. Each event is said once, through
``report``, to whoever runs the node. Safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from alliance_psi.errors import PeerUnavailable

__all__ = ["CustodianHealth"]


def _silent(message: str) -> None:
    return None


class CustodianHealth:
    """The state of custodians ``order`` (indexes, in the member's order of preference), named by ``names``."""

    def __init__(
        self,
        order: Sequence[int],
        names: Mapping[int, str],
        *,
        down_for: float,
        report: Callable[[str], None] = _silent,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.order, self.names, self.down_for, self.report, self.clock = list(order), names, down_for, report, clock
        self._lock = threading.Lock()
        self._down_until: dict[int, float] = {}
        self._excluded: dict[int, str] = {}
        self._said: set[str] = set()

    def say(self, message: str) -> None:
        """Report ``message`` unless it was reported before."""
        with self._lock:
            if message in self._said:
                return
            self._said.add(message)
        self.report(message)

    def exclude(self, index: int, reason: str) -> None:
        """Never ask custodian ``index`` again in this run; the first reason is the one kept."""
        with self._lock:
            self._excluded.setdefault(index, reason)
        self.say(f"custodian {self.names[index]} excluded: {reason}")

    def mark_down(self, index: int, reason: str) -> None:
        """Ask custodian ``index`` only when no other will do, for the next ``down_for`` seconds."""
        with self._lock:
            self._down_until[index] = self.clock() + self.down_for
        self.say(f"custodian {self.names[index]} is down, using the others: {reason}")

    @property
    def excluded(self) -> dict[str, str]:
        """The custodians excluded so far, by name, with the reason."""
        with self._lock:
            return {self.names[i]: reason for i, reason in self._excluded.items()}

    def candidates(self, avoid: set[int], *, down_too: bool = True) -> list[int]:
        """Custodians to ask, best first: not excluded nor in ``avoid``; those marked down last
        (or not at all, without ``down_too``)."""
        now = self.clock()
        with self._lock:
            usable = [i for i in self.order if i not in avoid and i not in self._excluded]
            up = [i for i in usable if self._down_until.get(i, 0.0) <= now]
            return up + [i for i in usable if i not in up] if down_too else up

    def unavailable(self, failures: Mapping[int, str], answered: int, *, epoch: str, threshold: int) -> PeerUnavailable:
        """The error when fewer than ``threshold`` custodians answered: each other one named, with its cause."""
        with self._lock:
            causes = {**failures, **self._excluded}
        named = "; ".join(f"{self.names[i]}: {causes[i]}" for i in sorted(causes))
        return PeerUnavailable(
            f"key epoch {epoch!r} needs {threshold} of its {len(self.names)} custodians and only {answered} "
            f"answered: {named or 'no other custodian is configured'}"
        )
