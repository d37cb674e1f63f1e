"""The coordinator's count of each member's refused chunks per round, and the budget it spends.

A chunk refused for its content (a token repeated within it or from another chunk, other content
for a stored index) is checked inside the submission's transaction, which on SQLite holds the
database's write lock. Without a cost, a hostile member could send such a chunk again and again,
on every stream, and make every other member's call wait for the lock (issue 9, adversary
finding 10). Each refusal counts against the member's budget for the round; once it is spent,
the member's further chunks for that round are refused before any transaction.

Counts live in the coordinator process's memory (a restart, which no member can cause, starts
them afresh; coordinators sharing a PostgreSQL database each keep their own). Only refusals of a
round the member may submit to are counted, so the counts stay bounded by rounds times members.
"""

from __future__ import annotations

import threading

from alliance_psi.errors import ConfigurationError, LimitExceeded

__all__ = ["RefusedChunks"]


class RefusedChunks:
    """At most ``budget`` refused chunks per member and round; safe to share between threads."""

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ConfigurationError("the refused chunks per member and round must be at least 1")
        self.budget = budget
        self._lock = threading.Lock()
        self._refused: dict[tuple[str, str], int] = {}

    def require_budget(self, round_id: str, member_id: str) -> None:
        """Raise ``LimitExceeded`` if the member's chunks for the round were refused ``budget`` times."""
        with self._lock:
            refused = self._refused.get((round_id, member_id), 0)
        if refused >= self.budget:
            raise LimitExceeded(
                f"round {round_id}: {refused} chunks of this member were refused, at most {self.budget} per "
                "member and round; it may send no more chunks to this round"
            )

    def count(self, round_id: str, member_id: str) -> int:
        """Count one refused chunk of the member for the round; return how many there were."""
        with self._lock:
            refused = self._refused.get((round_id, member_id), 0) + 1
            self._refused[(round_id, member_id)] = refused
        return refused
