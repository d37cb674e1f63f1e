"""What a member sends in a round: the delta between the set it wants matched and the set the
coordinator already holds for it (``Round.set_scope``), computed in one ordered pass.

Tokens are stable within a key epoch, so from the second round on a member sends only what
changed: new identifiers, changed labels, withdrawn or expired identifiers. Both inputs are
streamed in match-token order and merged, so memory does not grow with the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["KEEP", "PUT", "REMOVE", "merge_delta"]

KEEP, PUT, REMOVE = 0, 1, 2

_END = b"\xff" * 17  # Sorts after every 16-byte token.


def merge_delta(
    desired: Iterable[tuple[bytes, bytes, Any]], known: Iterable[tuple[bytes, bytes, bytes]]
) -> Iterator[tuple[int, bytes, Any]]:
    """Merge the wanted set with the coordinator's, both in strictly increasing token order.

    ``desired`` yields (token, label fingerprint, payload); ``known`` yields (token, label digest,
    label fingerprint) of what was last committed. Yields, in token order:

    - ``(KEEP, token, label_digest)`` for a token committed with the same label fingerprint;
    - ``(PUT, token, (fingerprint, payload))`` for a token that is new or whose label changed;
    - ``(REMOVE, token, None)`` for a committed token no longer wanted.

    Raises ``ValueError`` if either input is out of order or repeats a token.
    """
    wanted, held = iter(desired), iter(known)
    w = _next(wanted)
    h = _next(held)
    last_w = last_h = b""
    while w[0] != _END or h[0] != _END:
        if w[0] != _END and w[0] <= last_w:
            raise ValueError("desired tokens must be unique and in order")
        if h[0] != _END and h[0] <= last_h:
            raise ValueError("known tokens must be unique and in order")
        if w[0] < h[0]:
            yield PUT, w[0], (w[1], w[2])
            last_w, w = w[0], _next(wanted)
        elif h[0] < w[0]:
            yield REMOVE, h[0], None
            last_h, h = h[0], _next(held)
        else:
            if w[1] == h[2]:
                yield KEEP, w[0], h[1]
            else:
                yield PUT, w[0], (w[1], w[2])
            last_w, w = w[0], _next(wanted)
            last_h, h = h[0], _next(held)


def _next(it: Iterator[tuple[bytes, bytes, Any]]) -> tuple[bytes, bytes, Any]:
    return next(it, (_END, b"", None))
