"""The member node's repository: its own identifiers and their cached tokens per key epoch.

Raw identifiers live only here, in the member's own database, and never leave the node.
Withdrawn and expired identifiers are deleted, not flagged, and their cached tokens go with them
(a foreign-key cascade; ``make_engine`` turns foreign keys on for SQLite).

Change stamps: every call that inserts, changes or deletes identifiers takes the next stamp of
the node's counter (``member_changes``, locked until the transaction commits, so stamps follow
commit order) and writes it on the rows it inserts or relabels (a row imported again with the
same label keeps its stamp); a deletion keeps the deleted identifiers' cached tokens under its
stamp (``member_withdrawals``). A submission then reads only what was
stamped since its scope's last commit (``iter_changed_rows``, ``withdrawn_tokens``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from alliance_psi.crypto.derive import LABEL_KEY_BYTES, MATCH_TOKEN_BYTES
from alliance_psi.errors import InvalidRequest, NotFound
from alliance_psi.protocol.leads import OwnIdentifier
from alliance_psi.protocol.node_rows import (
    CachedToken,
    IdentifierRef,
    PendingChange,
    PendingSet,
    SetRecord,
    SubmissionRow,
    SubmittedToken,
)
from alliance_psi.storage._common import batched, bulk_insert, insert_ignoring, placeholder, stream
from alliance_psi.storage.schema import (
    identifier_spellings,
    identifiers,
    member_changes,
    member_pending,
    member_pending_state,
    member_submitted,
    member_submitted_state,
    member_withdrawals,
    token_cache,
)

__all__ = ["MemberRepository"]

# What an import may set on an identifier, besides its (type, canonical) key.
_DESCRIPTIVE = ("category", "severity", "first_seen", "case_ref", "note", "expires_at")
_LABEL = ("category", "severity", "first_seen", "case_ref")  # What a submission sends of a row besides its token.
_OPTIONAL_TEXT = ("case_ref", "note")

# The rows a submission streams, one per token: ``tuple.__new__`` builds the same named tuple as
# its class would, without the Python-level constructor (``_make``) per row.
_submission_row = functools.partial(tuple.__new__, SubmissionRow)
_submitted_token = functools.partial(tuple.__new__, SubmittedToken)
_identifier_ref = functools.partial(tuple.__new__, IdentifierRef)
_COUNTER_ROW = 1


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
        cached tokens kept, and its change stamp too unless its label (category, severity, first
        seen, case) changed. Returns (inserted, duplicates).
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
        stamp = self._stamp()
        inserted_keys: set[tuple[str, str]] = set()
        inserting = insert_ignoring(self._conn, identifiers, conflict_on=["type", "canonical"])
        for batch in batched(unique.values()):
            returned = self._conn.execute(
                inserting.returning(identifiers.c.type, identifiers.c.canonical),
                [{**values, "imported_at": imported_at, "change_seq": stamp} for values in batch],
            )
            inserted_keys.update((r.type, r.canonical) for r in returned)
        refreshed = [
            {"k_type": type_, "k_canonical": canonical, **{name: values[name] for name in _DESCRIPTIVE}}
            for (type_, canonical), values in unique.items()
            if (type_, canonical) not in inserted_keys
        ]
        if refreshed:
            # Stamped again only if its label changed: a row imported again as it was (a daily full
            # export) stays out of later deltas, and out of the window of a delta being resumed.
            relabelled = or_(*(identifiers.c[name].is_distinct_from(bindparam(name)) for name in _LABEL))
            self._conn.execute(
                update(identifiers)
                .where(identifiers.c.type == bindparam("k_type"), identifiers.c.canonical == bindparam("k_canonical"))
                .values(
                    {
                        **{name: bindparam(name) for name in _DESCRIPTIVE},
                        "change_seq": case((relabelled, stamp), else_=identifiers.c.change_seq),
                    }
                ),
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
        """Delete an identifier and its cached tokens (kept as withdrawn, under a new change stamp,
        for the next delta of each scope); False if it was not stored."""
        return self._delete_stamped(and_(identifiers.c.type == type, identifiers.c.canonical == canonical)) == 1

    def purge_expired(self, now: datetime) -> int:
        """Delete every identifier whose ``expires_at`` is at or before ``now``, with its tokens
        (kept as withdrawn, as by ``withdraw``). Returns how many identifiers were deleted.
        """
        return self._delete_stamped(and_(identifiers.c.expires_at.is_not(None), identifiers.c.expires_at <= now))

    def _delete_stamped(self, which: ColumnElement[bool]) -> int:
        """Delete the identifiers ``which`` selects, keeping their cached tokens as withdrawn."""
        found = self._conn.execute(select(identifiers.c.id).where(which).limit(1)).first()
        if found is None:
            return 0
        stamp = self._stamp()
        cached = (
            select(literal(stamp, BigInteger), token_cache.c.key_epoch, token_cache.c.match_token, identifiers.c.type)
            .select_from(token_cache.join(identifiers, token_cache.c.identifier_id == identifiers.c.id))
            .where(which)
        )
        self._conn.execute(
            insert(member_withdrawals).from_select(["change_seq", "key_epoch", "match_token", "type"], cached)
        )
        return self._conn.execute(delete(identifiers).where(which)).rowcount

    # Change stamps.

    def _stamp(self) -> int:
        """Take the next change stamp; the counter's row stays locked until this transaction ends."""
        self._conn.execute(insert_ignoring(self._conn, member_changes).values(id=_COUNTER_ROW, seq=0))
        stamp: int = self._conn.execute(
            update(member_changes)
            .where(member_changes.c.id == _COUNTER_ROW)
            .values(seq=member_changes.c.seq + 1)
            .returning(member_changes.c.seq)
        ).scalar_one()
        return stamp

    def change_head(self) -> int:
        """The last change stamp taken by a committed transaction (0 before any): every change
        stamped up to it is visible to this transaction."""
        head = self._conn.execute(select(member_changes.c.seq).where(member_changes.c.id == _COUNTER_ROW)).scalar()
        return int(head or 0)

    def iter_changed_rows(
        self, key_epoch: str, types: Collection[str], since: int, upto: int
    ) -> Iterator[SubmissionRow]:
        """Yield the identifiers of ``types`` stamped after ``since`` and up to ``upto`` that have a
        token cached in ``key_epoch``, as ``iter_submission_rows`` does, ordered by match token."""
        ids = identifiers.c
        # On SQLite the key epoch is compared in a form no index serves (``_by_stamp``): else it
        # walks the token cache in token order, to skip the sort, and reads every identifier of
        # the epoch to keep the few stamped ones (0.4-0.5 s for 999 changed of 100,000).
        query = _submission_rows(key_epoch, indexed_epoch=not _by_stamp(self._conn)).where(
            ids.change_seq > since, ids.change_seq <= upto, _type_in(self._conn, types, indexed=False)
        )
        yield from self._stream_rows(query)

    def _stream_rows(self, query: Select[Any]) -> Iterator[SubmissionRow]:
        result = stream(self._conn, query)
        try:
            yield from map(_submission_row, result)
        finally:
            result.close()

    def withdrawn_tokens(self, key_epoch: str, types: Collection[str], since: int, upto: int) -> set[bytes]:
        """The cached tokens in ``key_epoch`` of identifiers of ``types`` deleted after stamp
        ``since`` and up to ``upto``."""
        w = member_withdrawals.c
        query = select(w.match_token).where(
            w.key_epoch == key_epoch, w.change_seq > since, w.change_seq <= upto, w.type.in_(list(types))
        )
        return {bytes(token) for token in self._conn.execute(query).scalars()}

    def iter_identifiers(self, types: Collection[str] | None = None) -> Iterator[IdentifierRef]:
        """Yield every identifier, or those of ``types``, by id."""
        query = select(identifiers.c.id, identifiers.c.type, identifiers.c.canonical).order_by(identifiers.c.id)
        if types is not None:
            query = query.where(identifiers.c.type.in_(list(types)))
        yield from _tuples(stream(self._conn, query))

    def missing_token_ids(
        self,
        key_epoch: str,
        types: Collection[str] | None = None,
        *,
        since: int | None = None,
        upto: int | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> Iterator[IdentifierRef]:
        """Yield the identifiers with no cached token for ``key_epoch``, by id; with ``since``
        and ``upto``, only those stamped after ``since`` and up to ``upto``; only ids above
        ``after``, and at most ``limit`` of them (a page: the caller reads the next one from the
        last id it got, so no read stays open, nor the whole list in memory, for a long run).

        These are the only identifiers that still cost OPRF evaluations in this epoch.
        """
        # On SQLite the types are compared in a form no index serves, so that a page is read from
        # ``after`` by rowid and stops at ``limit``; by the (type, canonical) index it would read every
        # identifier of the types left and sort them to keep the page, so each page cost the rest of
        # the set (the pages of 1,000,000 identifiers 8.9 µs an identifier, against 1.2 by rowid).
        query = self._missing_tokens(key_epoch, types, since=since, upto=upto, indexed_type=False).add_columns(
            identifiers.c.id, identifiers.c.type, identifiers.c.canonical
        )
        # By change stamp on SQLite, the page's id bound in a form no index serves too: else the plan
        # walks the identifiers from ``after`` by rowid, every one of them, to keep the stamped few.
        stamped = since is not None and _by_stamp(self._conn)
        from_id = (identifiers.c.id + 0 if stamped else identifiers.c.id) > after
        query = query.where(from_id).order_by(identifiers.c.id).limit(limit)
        yield from _tuples(stream(self._conn, query))

    def count_missing_tokens(
        self, key_epoch: str, types: Collection[str] | None = None, *, since: int | None = None, upto: int | None = None
    ) -> int:
        """How many identifiers ``missing_token_ids`` yields (without ``after`` and ``limit``)."""
        query = self._missing_tokens(key_epoch, types, since=since, upto=upto, indexed_type=since is None)
        return int(self._conn.execute(query.add_columns(func.count())).scalar_one())

    def _missing_tokens(
        self, key_epoch: str, types: Collection[str] | None, *, since: int | None, upto: int | None, indexed_type: bool
    ) -> Select[Any]:
        cached = and_(token_cache.c.identifier_id == identifiers.c.id, token_cache.c.key_epoch == key_epoch)
        query = (
            select()
            .select_from(identifiers.outerjoin(token_cache, cached))
            .where(token_cache.c.identifier_id.is_(None))
        )
        if types is not None:
            query = query.where(_type_in(self._conn, types, indexed=indexed_type))
        if since is not None:
            query = query.where(identifiers.c.change_seq > since)
        if upto is not None:  # Rows stamped before stamps existed (NULL) are older than any.
            query = query.where(or_(identifiers.c.change_seq.is_(None), identifiers.c.change_seq <= upto))
        return query

    def cache_tokens(self, key_epoch: str, rows: Sequence[CachedToken]) -> None:
        """Store tokens for ``key_epoch``; already cached ids are kept.

        Raises:
            InvalidRequest: a token is not 16 bytes or a label key not 32 bytes.
        """
        if not rows:
            return
        ids, tokens, label_keys = zip(*rows, strict=True)
        if set(map(len, tokens)) != {MATCH_TOKEN_BYTES} or set(map(len, label_keys)) != {LABEL_KEY_BYTES}:
            raise InvalidRequest(f"a cached token is {MATCH_TOKEN_BYTES} bytes and a label key {LABEL_KEY_BYTES}")
        bulk_insert(
            self._conn,
            token_cache,
            ("key_epoch", "identifier_id", "match_token", "label_key"),
            list(zip(itertools.repeat(key_epoch), ids, tokens, label_keys)),
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
        query = _submission_rows(key_epoch)
        if types is not None:
            query = query.where(ids.type.in_(list(types)))
        yield from self._stream_rows(query)

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

    def submission_rows_for_tokens(self, key_epoch: str, tokens: Iterable[bytes]) -> dict[bytes, SubmissionRow]:
        """Return {match token: ``SubmissionRow``} for the tokens cached in ``key_epoch`` whose
        identifier is still held; others are left out."""
        found: dict[bytes, SubmissionRow] = {}
        for batch in batched(tokens):
            query = _submission_rows(key_epoch).where(token_cache.c.match_token.in_(batch))
            found.update({row.match_token: row for row in self._stream_rows(query)})
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

    def submitted_for_tokens(self, set_scope: str, tokens: Iterable[bytes]) -> dict[bytes, SubmittedToken]:
        """{token: row} of the record for ``set_scope``, for those of ``tokens`` it holds."""
        m = placeholder(self._conn)
        found: dict[bytes, SubmittedToken] = {}
        for batch in batched(tokens):
            marks = ", ".join([m] * len(batch))
            rows = self._conn.exec_driver_sql(
                f"SELECT match_token, label_digest, label_fingerprint FROM {member_submitted.name} "
                f"WHERE set_scope = {m} AND match_token IN ({marks})",
                (set_scope, *batch),
            )
            found.update(
                (bytes(row[0]), _submitted_token((bytes(row[0]), bytes(row[1]), bytes(row[2])))) for row in rows
            )
        return found

    def submitted_state(self, set_scope: str) -> SetRecord | None:
        """The record for ``set_scope`` (count, set digest, its state and change stamp), or None."""
        c = member_submitted_state.c
        row = self._conn.execute(
            select(c.item_count, c.digest, c.set_state, c.change_seq).where(c.set_scope == set_scope)
        ).one_or_none()
        return None if row is None else SetRecord(row.item_count, row.digest, row.set_state, row.change_seq)

    def forget_submitted(self, set_scope: str) -> None:
        """Drop the record for ``set_scope``: the next submission sends the whole set."""
        for table in (member_submitted, member_submitted_state, member_pending, member_pending_state):
            self._conn.execute(delete(table).where(table.c.set_scope == set_scope))

    def clear_pending(self, set_scope: str) -> None:
        """Forget a delta being built for ``set_scope`` (a new attempt rebuilds it)."""
        for table in (member_pending, member_pending_state):
            self._conn.execute(delete(table).where(table.c.set_scope == set_scope))

    def set_pending(self, set_scope: str, pending: PendingSet) -> None:
        """Record the delta being sent in ``set_scope``: before its chunks, its round, mode and
        change stamp; once they are all built, the record it leaves (``pending.record``)."""
        self._conn.execute(delete(member_pending_state).where(member_pending_state.c.set_scope == set_scope))
        record = pending.record
        built = {"item_count": record.item_count, "digest": record.digest, "set_state": record.state} if record else {}
        self._conn.execute(
            member_pending_state.insert().values(
                set_scope=set_scope,
                round_id=pending.round_id,
                replace=pending.replace,
                change_seq=pending.change_seq,
                **built,
            )
        )

    def pending_set(self, set_scope: str) -> PendingSet | None:
        """The delta being sent in ``set_scope``, or None."""
        c = member_pending_state.c
        row = self._conn.execute(
            select(c.round_id, c.replace, c.change_seq, c.item_count, c.digest, c.set_state).where(
                c.set_scope == set_scope
            )
        ).one_or_none()
        if row is None:
            return None
        record = None if row.digest is None else SetRecord(row.item_count, row.digest, row.set_state, row.change_seq)
        return PendingSet(row.round_id, row.replace, row.change_seq, record)

    def add_pending(self, set_scope: str, rows: Sequence[PendingChange]) -> None:
        """Record the items and removals of a delta being sent."""
        bulk_insert(
            self._conn,
            member_pending,
            ("set_scope", "match_token", "removed", "label_digest", "label_fingerprint"),
            [(set_scope, token, removed, digest, fingerprint) for token, removed, digest, fingerprint in rows],
        )

    def apply_pending(self, set_scope: str) -> None:
        """Fold the committed delta into the record of the set, then forget it; the record becomes
        what ``set_pending`` said. Then drop the withdrawn tokens no record holds any more, keeping
        those withdrawn after the change stamp a delta still pending in another scope read up to.

        Call only once the coordinator has committed the delta: the record must describe what
        the coordinator holds, or the next round sends the whole set again.

        Raises:
            NotFound: no delta is pending in ``set_scope`` (``set_pending`` was not called).
        """
        pending = self.pending_set(set_scope)
        if pending is None or pending.record is None:
            raise NotFound(f"no built submission is pending in scope {set_scope}")
        m = placeholder(self._conn)
        sql = self._conn.exec_driver_sql
        if pending.replace:
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
        record = pending.record
        self._conn.execute(
            member_submitted_state.insert().values(
                set_scope=set_scope,
                item_count=record.item_count,
                digest=record.digest,
                set_state=record.state,
                change_seq=record.change_seq,
            )
        )
        # Withdrawn tokens no scope's record holds, nor may hold once a delta being sent is recorded
        # (one read before the withdrawal may put the token): no delta will need them again.
        w, pending_sets = member_withdrawals.name, member_pending_state.name
        sql(
            f"DELETE FROM {w} WHERE NOT EXISTS (SELECT 1 FROM {member_submitted.name} s WHERE s.set_scope IN "
            f"(SELECT set_scope FROM {member_submitted_state.name}) AND s.match_token = {w}.match_token) "
            f"AND NOT EXISTS (SELECT 1 FROM {pending_sets} p WHERE p.change_seq IS NULL OR p.change_seq < {w}.change_seq)"
        )

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


def _by_stamp(conn: Connection) -> bool:
    """Whether a query that reads identifiers by change stamp (or a page of them by id) must keep
    other terms from an index.

    SQLite plans without statistics: given ``type IN (...)`` or ``key_epoch = ?`` it reads the
    identifiers (or the token cache) by that index, i.e. every row of the type or the epoch, to
    keep the few stamped in the window (or the page's ids); with those terms in a form no index
    serves (``|| ''``, which changes no value) its only way in is ``ix_identifiers_change_seq``'s
    range (or the rowid range), so the work follows the change (or the page), not the set.
    PostgreSQL plans these from its statistics.
    """
    return conn.dialect.name == "sqlite"


def _type_in(conn: Connection, types: Collection[str], *, indexed: bool) -> ColumnElement[bool]:
    """``identifiers.type IN types``; not ``indexed``: on SQLite in a form no index serves (for a
    query with a better way in, by change stamp or by rowid, that SQLite would not choose)."""
    column = identifiers.c.type
    return (column if indexed or not _by_stamp(conn) else column.concat("")).in_(list(types))


def _submission_rows(key_epoch: str, *, indexed_epoch: bool = True) -> Select[Any]:
    """``SubmissionRow`` columns of the identifiers with a token cached in ``key_epoch``, by match
    token. ``indexed_epoch`` False compares the epoch in a form no index serves (on SQLite)."""
    ids = identifiers.c
    epoch = token_cache.c.key_epoch if indexed_epoch else token_cache.c.key_epoch.concat("")
    return (
        select(
            ids.id,
            token_cache.c.match_token,
            token_cache.c.label_key,
            *(ids[name] for name in _LABEL),
        )
        .select_from(identifiers.join(token_cache, token_cache.c.identifier_id == ids.id))
        .where(epoch == key_epoch)
        .order_by(token_cache.c.match_token)
    )


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
        yield from map(_identifier_ref, result)
    finally:
        result.close()
