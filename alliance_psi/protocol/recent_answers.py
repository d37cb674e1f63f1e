"""A custodian's memory of its latest answers to each member, so a batch sent again costs no group work.

A member that sends a batch again (a retry, or a join resumed after an interruption) gets the
answer it was given, byte for byte, without a scalar multiplication. Without this memory, a
hostile member could re-send one full batch on every call slot and keep the custodian's cores
busy for free (issue 9, adversary finding 9). The memory is per member, bounded in elements,
least recently used first out, and lost on restart: a re-send it no longer holds is evaluated
again under the quota ledger's bound on free re-sends.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["RecentAnswers"]


class RecentAnswers:
    """Per member, the answers to its latest batches, by batch digest, up to ``elements_per_member``.

    A member's entries are only ever its own answers, so a lookup tells a member nothing about
    another. Safe to share between the server's threads.
    """

    def __init__(self, elements_per_member: int) -> None:
        if elements_per_member < 0:
            raise ValueError("the answers kept per member cannot be negative")
        self.elements_per_member = elements_per_member
        self._lock = threading.Lock()
        self._answers: dict[str, OrderedDict[bytes, tuple[bytes, ...]]] = {}
        self._held: dict[str, int] = {}

    def get(self, member_id: str, batch_digest: bytes) -> list[bytes] | None:
        """The answer given to ``member_id`` for the batch named ``batch_digest``, or None."""
        with self._lock:
            answers = self._answers.get(member_id)
            if answers is None or batch_digest not in answers:
                return None
            answers.move_to_end(batch_digest)
            return list(answers[batch_digest])

    def put(self, member_id: str, batch_digest: bytes, answer: Sequence[bytes]) -> None:
        """Keep ``answer``, dropping the member's least recently used answers to stay in bound."""
        if len(answer) > self.elements_per_member:
            return
        with self._lock:
            answers = self._answers.setdefault(member_id, OrderedDict())
            held = self._held.get(member_id, 0)
            previous = answers.pop(batch_digest, None)
            if previous is not None:
                held -= len(previous)
            while answers and held + len(answer) > self.elements_per_member:
                held -= len(answers.popitem(last=False)[1])
            answers[batch_digest] = tuple(answer)
            self._held[member_id] = held + len(answer)
