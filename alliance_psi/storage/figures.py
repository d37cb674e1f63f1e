"""Figures for monitoring, read from a server's own tables: counts only, never a token.

``services.state_metrics`` turns them into Prometheus metrics at scrape time, so they are the
same after a restart and across replicas sharing one database.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, func, select

from alliance_psi.protocol.model import RoundState
from alliance_psi.storage.schema import alert_members, rounds

__all__ = ["alert_positions", "matched_tokens", "round_counts"]


def round_counts(conn: Connection) -> dict[RoundState, int]:
    """How many of the coordinator's rounds are in each state (every state, 0 if none)."""
    counts = dict.fromkeys(RoundState, 0)
    for state, count in conn.execute(select(rounds.c.state, func.count()).group_by(rounds.c.state)):
        counts[RoundState(state)] = count
    return counts


def matched_tokens(conn: Connection) -> int:
    """Tokens held by at least the threshold of a round's committed members, summed over every
    matched round: how many matches the coordinator has found in all (from each round's kept
    holder counts)."""
    total = 0
    rows = conn.execute(
        select(rounds.c.threshold, rounds.c.match_counts).where(
            rounds.c.state == RoundState.MATCHED.value, rounds.c.match_counts.is_not(None)
        )
    )
    for threshold, stored in rows:
        total += sum(tokens for holders, tokens in json.loads(stored).items() if int(holders) >= threshold)
    return total


def alert_positions(conn: Connection) -> dict[str, tuple[int, int]]:
    """{member: (alerts numbered for it so far, alerts it acknowledged)}: the coordinator's alert
    outbox per member (members that never had an alert are absent)."""
    query = select(alert_members.c.member_id, alert_members.c.last_sequence, alert_members.c.acked_sequence)
    return {member: (int(last), int(acked)) for member, last, acked in conn.execute(query)}
