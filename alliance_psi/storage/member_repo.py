"""The member node's repository: its own identifiers and their cached tokens per key epoch.

Raw identifiers live only here, in the member's own database, and never leave the node.
Withdrawn and expired identifiers are deleted, not flagged, and their cached tokens go with them
(a foreign-key cascade; ``make_engine`` turns foreign keys on for SQLite).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Text, and_, bindparam, cast, delete, func, insert, select, update

from alliance_psi.crypto.derive import LABEL_KEY_BYTES, MATCH_TOKEN_BYTES
from alliance_psi.errors import InvalidRequest
from alliance_psi.protocol.leads import OwnIdentifier
from alliance_psi.protocol.node_rows import (
    CachedToken,
    IdentifierRef,
    PendingChange,
    SetRecord,
    SubmissionRow,
    SubmittedToken,
)
from alliance_psi.storage._common import batched, bulk_insert, insert_ignoring, placeholder, stream
from alliance_psi.storage.schema import (
    identifier_spellings,
    identifiers,
    member_pending,
    member_submitted,
    member_submitted_state,
    token_cache,
)

__all__ = ["MemberRepository"]

# What an import may set on an identifier, besides its (type, canonical) key.
_DESCRIPTIVE = ("category", "severity", "first_seen", "case_ref", "note", "expires_at")
_OPTIONAL_TEXT = ("case_ref", "note")

# The rows a submission streams, one per token: ``tuple.__new__`` builds the same named tuple as
# its class would, without the Python-level constructor (``_make``) per row.
_submission_row = functools.partial(tuple.__new__, SubmissionRow)
_submitted_token = functools.partial(tuple.__new__, SubmittedToken)


class MemberRepository:
    """A member node's identifiers and token cache, over the caller's connection (``ports.NodeRepo``).

    Rows come back as the named tuples of ``protocol.node_rows``.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def upsert_identifiers(
        self, rows: Iterable[Mapping[str, Any] | Any], *, at: datetime | None = None
    ) -> tuple[int, int]:
        """Insert identifiers, or refresh the descriptive fields of those already stored.

        Each row is a mapping or a dataclass with ``type``, ``canonical``, ``category``,
        ``severity`` and optionally ``first_seen``, ``case_ref``, ``note``, ``expires_at`` and
        ``spelling`` (the value as the member wrote it, kept for its reports). A (type, canonical)
        pair already stored, or repeated in ``rows`` (the last one wins), counts as a duplicate; its
        category, severity, dates, notes and spelling (if the row has one) are updated, its id and
        cached tokens kept. Returns (inserted, duplicates).
        """
        imported_at = at or datetime.now(UTC)
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        spellings: dict[tuple[str, str], str] = {}
        total = 0
        for row in rows:
            values = _identifier_values(row)
            key = (values["type"], values["canonical"])
            unique[key] = values
            if spelling := _spelling(row):
                spellings[key] = spelling
            total += 1
        if not unique:
            return 0, 0
        inserted_keys: set[tuple[str, str]] = set()
        inserting = insert_ignoring(self._conn, identifiers, conflict_on=["type", "canonical"])
        for batch in batched(unique.values()):
            returned = self._conn.execute(
                inserting.returning(identifiers.c.type, identifiers.c.canonical),
                [{**values, "imported_at": imported_at} for values in batch],
            )
            inserted_keys.update((r.type, r.canonical) for r in returned)
        refreshed = [
            {"k_type": type_, "k_canonical": canonical, **{name: values[name] for name in _DESCRIPTIVE}}
            for (type_, canonical), values in unique.items()
            if (type_, canonical) not in inserted_keys
        ]
        if refreshed:
            self._conn.execute(
                update(identifiers)
                .where(identifiers.c.type == bindparam("k_type"), identifiers.c.canonical == bindparam("k_canonical"))
                .values({name: bindparam(name) for name in _DESCRIPTIVE}),
                refreshed,
            )
        self._spell([{"k_type": t, "k_canonical": c, "k_spelling": s} for (t, c), s in spellings.items()])
        return len(inserted_keys), total - len(inserted_keys)

    def _spell(self, rows: list[dict[str, str]]) -> None:
        """Replace the spelling of each (k_type, k_canonical) with k_spelling."""
        if not rows:
            return
        keyed = and_(identifiers.c.type == bindparam("k_type"), identifiers.c.canonical == bindparam("k_canonical"))
        spelled = identifier_spellings.c.identifier_id == select(identifiers.c.id).where(keyed).scalar_subquery()
        keys = [{"k_type": row["k_type"], "k_canonical": row["k_canonical"]} for row in rows]
        self._conn.execute(delete(identifier_spellings).where(spelled), keys)
        written = select(identifiers.c.id, cast(bindparam("k_spelling", type_=Text), Text)).where(keyed)
        self._conn.execute(insert(identifier_spellings).from_select(["identifier_id", "spelling"], written), rows)

    def withdraw(self, type: str, canonical: str) -> bool:
        """Delete an identifier and its cached tokens; False if it was not stored."""
        deleted = self._conn.execute(
            delete(identifiers).where(identifiers.c.type == type, identifiers.c.canonical == canonical)
        )
        return deleted.rowcount == 1

    def purge_expired(self, now: datetime) -> int:
        """Delete every identifier whose ``expires_at`` is at or before ``now``, with its tokens.

        Returns how many identifiers were deleted.
        """
        deleted = self._conn.execute(
            delete(identifiers).where(identifiers.c.expires_at.is_not(None), identifiers.c.expires_at <= now)
        )
        return deleted.rowcount

    def iter_identifiers(self, types: Collection[str] | None = None) -> Iterator[IdentifierRef]:
        """Yield every identifier, or those of ``types``, by id."""
        query = select(identifiers.c.id, identifiers.c.type, identifiers.c.canonical).order_by(identifiers.c.id)
        if types is not None:
            query = query.where(identifiers.c.type.in_(list(types)))
        yield from _tuples(stream(self._conn, query))

    def missing_token_ids(self, key_epoch: str, types: Collection[str] | None = None) -> Iterator[IdentifierRef]:
        """Yield the identifiers with no cached token for ``key_epoch``, by id.

        These are the only identifiers that still cost OPRF evaluations in this epoch.
        """
        cached = and_(token_cache.c.identifier_id == identifiers.c.id, token_cache.c.key_epoch == key_epoch)
        query = (
            select(identifiers.c.id, identifiers.c.type, identifiers.c.canonical)
            .select_from(identifiers.outerjoin(token_cache, cached))
            .where(token_cache.c.identifier_id.is_(None))
            .order_by(identifiers.c.id)
        )
        if types is not None:
            query = query.where(identifiers.c.type.in_(list(types)))
        yield from _tuples(stream(self._conn, query))

    def cache_tokens(self, key_epoch: str, rows: Sequence[CachedToken]) -> None:
        """Store tokens for ``key_epoch``; already cached ids are kept.

        Raises:
            InvalidRequest: a token is not 16 bytes or a label key not 32 bytes.
        """
        if not rows:
            return
        for _, token, label_key in rows:
            if len(token) != MATCH_TOKEN_BYTES or len(label_key) != LABEL_KEY_BYTES:
                raise InvalidRequest(f"a cached token is {MATCH_TOKEN_BYTES} bytes and a label key {LABEL_KEY_BYTES}")
        bulk_insert(
            self._conn,
            token_cache,
            ("key_epoch", "identifier_id", "match_token", "label_key"),
            [(key_epoch, id_, token, label_key) for id_, token, label_key in rows],
            ignore_existing=True,
        )

    def cached_tokens(self, key_epoch: str, ids: Iterable[int]) -> dict[int, tuple[bytes, bytes]]:
        """Return {identifier id: (match token, label key)} for the ids cached in ``key_epoch``."""
        found: dict[int, tuple[bytes, bytes]] = {}
        columns = token_cache.c
        for batch in batched(ids):
            query = select(columns.identifier_id, columns.match_token, columns.label_key).where(
                columns.key_epoch == key_epoch, columns.identifier_id.in_(batch)
            )
            found.update({row.identifier_id: (row.match_token, row.label_key) for row in self._conn.execute(query)})
        return found

    def identifiers_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, OwnIdentifier]:
        """Map matched tokens back to the member's own identifiers.

        Returns {match token: identifier} for the tokens cached in ``key_epoch``; other tokens
        are left out. ``spelling`` is "" for an identifier stored without one.
        """
        found: dict[bytes, OwnIdentifier] = {}
        ids = identifiers.c
        spelled = identifier_spellings.c
        for batch in batched(tokens):
            query = (
                select(
                    token_cache.c.match_token,
                    *(ids.type, ids.canonical, ids.category, ids.severity, ids.first_seen, ids.case_ref),
                    func.coalesce(spelled.spelling, ""),
                )
                .select_from(
                    token_cache.join(identifiers, token_cache.c.identifier_id == ids.id).outerjoin(
                        identifier_spellings, spelled.identifier_id == ids.id
                    )
                )
                .where(token_cache.c.key_epoch == key_epoch, token_cache.c.match_token.in_(batch))
            )
            found.update({row[0]: OwnIdentifier._make(row[1:]) for row in self._conn.execute(query)})
        return found

    def iter_submission_rows(self, key_epoch: str, types: Collection[str] | None = None) -> Iterator[SubmissionRow]:
        """Yield every identifier of ``types`` with a token cached in ``key_epoch``, with its
        token, label key and label fields, ordered by match token.

        The order depends only on the set of tokens, so a resumed submission rebuilds the same
        chunks, and it says nothing about when identifiers were imported.
        """
        ids = identifiers.c
        query = (
            select(
                ids.id,
                token_cache.c.match_token,
                token_cache.c.label_key,
                *(ids.category, ids.severity, ids.first_seen, ids.case_ref),
            )
            .select_from(identifiers.join(token_cache, token_cache.c.identifier_id == ids.id))
            .where(token_cache.c.key_epoch == key_epoch)
            .order_by(token_cache.c.match_token)
        )
        if types is not None:
            query = query.where(ids.type.in_(list(types)))
        result = stream(self._conn, query)
        try:
            yield from map(_submission_row, result)
        finally:
            result.close()

    def label_keys_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return {match token: label key} for the tokens cached in ``key_epoch``; others are left out."""
        found: dict[bytes, bytes] = {}
        columns = token_cache.c
        for batch in batched(tokens):
            query = select(columns.match_token, columns.label_key).where(
                columns.key_epoch == key_epoch, columns.match_token.in_(batch)
            )
            found.update({row.match_token: row.label_key for row in self._conn.execute(query)})
        return found

    # What the coordinator holds of this node's set, per scope (see ``Round.set_scope``).

    def iter_submitted(self, set_scope: str) -> Iterator[SubmittedToken]:
        """Yield the tokens of the set this node last committed in ``set_scope``, ordered by match token."""
        # The driver's own cursor: three byte strings per row need no type processing (both
        # drivers ``make_engine`` allows, sqlite3 and psycopg 3, return bytes for these columns).
        m = placeholder(self._conn)
        result = self._conn.exec_driver_sql(
            f"SELECT match_token, label_digest, label_fingerprint FROM {member_submitted.name} "
            f"WHERE set_scope = {m} ORDER BY match_token",
            (set_scope,),
        )
        try:
            yield from map(_submitted_token, result)
        finally:
            result.close()

    def submitted_state(self, set_scope: str) -> SetRecord | None:
        """The count and set digest of the record for ``set_scope``, or None if there is none."""
        row = self._conn.execute(
            select(member_submitted_state.c.item_count, member_submitted_state.c.digest).where(
                member_submitted_state.c.set_scope == set_scope
            )
        ).one_or_none()
        return None if row is None else SetRecord(row.item_count, row.digest)

    def forget_submitted(self, set_scope: str) -> None:
        """Drop the record for ``set_scope``: the next submission sends the whole set."""
        for table in (member_submitted, member_submitted_state, member_pending):
            self._conn.execute(delete(table).where(table.c.set_scope == set_scope))

    def clear_pending(self, set_scope: str) -> None:
        """Forget a delta being built for ``set_scope`` (a new attempt rebuilds it)."""
        self._conn.execute(delete(member_pending).where(member_pending.c.set_scope == set_scope))

    def add_pending(self, set_scope: str, rows: Sequence[PendingChange]) -> None:
        """Record the items and removals of a delta being sent."""
        bulk_insert(
            self._conn,
            member_pending,
            ("set_scope", "match_token", "removed", "label_digest", "label_fingerprint"),
            [(set_scope, token, removed, digest, fingerprint) for token, removed, digest, fingerprint in rows],
        )

    def apply_pending(self, set_scope: str, *, replace: bool, count: int, digest: bytes) -> None:
        """Fold the committed delta into the record of the set, then forget it; ``count`` and
        ``digest`` are the resulting set's, as the coordinator confirmed them.

        Call only once the coordinator has committed the delta: the record must describe what
        the coordinator holds, or the next round sends the whole set again.
        """
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        if replace:
            self._conn.execute(delete(member_submitted).where(member_submitted.c.set_scope == set_scope))
        sql(
            f"DELETE FROM {member_submitted.name} WHERE set_scope = {m} AND match_token IN "
            f"(SELECT match_token FROM {member_pending.name} WHERE set_scope = {m} AND removed)",
            (set_scope, set_scope),
        )
        sql(
            f"INSERT INTO {member_submitted.name} (set_scope, match_token, label_digest, label_fingerprint) "
            f"SELECT set_scope, match_token, label_digest, label_fingerprint FROM {member_pending.name} "
            f"WHERE set_scope = {m} AND NOT removed ON CONFLICT (set_scope, match_token) DO UPDATE "
            f"SET label_digest = excluded.label_digest, label_fingerprint = excluded.label_fingerprint",
            (set_scope,),
        )
        self.clear_pending(set_scope)
        self._conn.execute(delete(member_submitted_state).where(member_submitted_state.c.set_scope == set_scope))
        self._conn.execute(member_submitted_state.insert().values(set_scope=set_scope, item_count=count, digest=digest))

    def count(self) -> int:
        """Return how many identifiers are stored."""
        return self._conn.execute(select(func.count()).select_from(identifiers)).scalar_one()

    def counts(self) -> list[tuple[str, str, int]]:
        """Return (type, category, how many identifiers) for every type and category held, in order."""
        query = (
            select(identifiers.c.type, identifiers.c.category, func.count())
            .group_by(identifiers.c.type, identifiers.c.category)
            .order_by(identifiers.c.type, identifiers.c.category)
        )
        return [(type_, category, count) for type_, category, count in self._conn.execute(query)]


def _identifier_values(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        source: Mapping[str, Any] = dataclasses.asdict(row)
    elif isinstance(row, Mapping):
        source = row
    else:
        raise TypeError(f"an identifier row must be a mapping or a dataclass, not {type(row).__name__}")
    try:
        values = {"type": source["type"], "canonical": source["canonical"]}
        values.update({name: source[name] for name in ("category", "severity")})
    except KeyError as exc:
        raise InvalidRequest(f"an identifier row needs {exc.args[0]!r}") from None
    for name in ("first_seen", "expires_at"):
        values[name] = source.get(name)
    for name in _OPTIONAL_TEXT:
        values[name] = source.get(name) or ""
    return values


def _spelling(row: Mapping[str, Any] | Any) -> str:
    """The row's ``spelling`` (a mapping key or a dataclass field), or "" without one."""
    value = row.get("spelling") if isinstance(row, Mapping) else getattr(row, "spelling", None)
    return value if isinstance(value, str) else ""


def _tuples(result: Any) -> Iterator[IdentifierRef]:
    try:
        for row in result:
            yield IdentifierRef(row[0], row[1], row[2])
    finally:
        result.close()
