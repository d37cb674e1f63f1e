"""Defaults that several parts state: each one here, once.

A base module like ``errors``: it imports nothing, and every layer may import it. The role's
config (``alliance_psi.config``) carries these as field defaults and the CLI shows them in
``--help``; the code that uses a value takes it from its config or argument.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "CHUNK_SIZE",
    "COORDINATOR_NAME",
    "ENROLMENT_REFRESH_SECONDS",
    "JOIN_WAIT_SECONDS",
    "QUOTA_PER_MEMBER",
    "TICK_SECONDS",
]

BATCH_SIZE = 1024
"""Identifiers a member node blinds and sends to the custodians per call."""

CHUNK_SIZE = 4096
"""Items and removals a member node puts in one submission chunk (at most ``MAX_CHUNK_ITEMS``)."""

QUOTA_PER_MEMBER = 2_000_000
"""Elements a custodian evaluates for one member per key epoch."""

TICK_SECONDS = 1.0
"""How often the coordinator closes rounds past their deadline and matches closed ones."""

JOIN_WAIT_SECONDS = 600.0
"""How long ``node join`` waits for its round to be matched after committing."""

COORDINATOR_NAME = "coordinator"
"""The coordinator's name in its certificate, and the name clients expect when given none."""

ENROLMENT_REFRESH_SECONDS = 1.0
"""How stale a server's in-memory copy of its enrolment list may get before it re-reads it."""
