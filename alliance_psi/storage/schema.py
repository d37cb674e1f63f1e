"""Every table of alliance-psi, in one ``MetaData``, as SQLAlchemy Core ``Table`` objects.

The same schema serves SQLite (member nodes, small coordinators) and PostgreSQL (coordinators at
scale); each role uses only its own tables. Bytes are ``LargeBinary`` (BLOB / bytea). Times are
``UTCDateTime``: callers pass timezone-aware datetimes and always get UTC-aware ones back, on
both backends.

Nothing here stores a raw identifier except the member node's own ``identifiers`` table, which
never leaves the node. The coordinator's tables hold only match tokens, sealed labels, counts and
digests; the audit log holds counts and ids only (see ``audit_log``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from alliance_psi.crypto.derive import LABEL_KEY_BYTES, MATCH_TOKEN_BYTES
from alliance_psi.protocol.submission import LABEL_DIGEST_BYTES, SET_STATE_BYTES

__all__ = [
    "HASH_SIZE",
    "TOKEN_PARTITIONS",
    "TOKEN_TABLES",
    "UTCDateTime",
    "alert_members",
    "alert_outbox",
    "alert_overflows",
    "alerts_pending",
    "audit_log",
    "audit_nodes",
    "charged_batches",
    "enrolments",
    "identifier_spellings",
    "identifiers",
    "member_alert_cursor",
    "member_alert_outbox",
    "member_alerts",
    "member_checkpoints",
    "member_changes",
    "member_log_evidence",
    "member_pending",
    "member_pending_state",
    "member_conflicting_results",
    "member_label_answers",
    "member_refused_leads",
    "member_result_headers",
    "member_result_leaves",
    "member_round_scopes",
    "member_set_state",
    "member_sets",
    "member_submitted",
    "member_submitted_state",
    "member_withdrawals",
    "metadata",
    "quota_usage",
    "result_headers",
    "result_pages",
    "round_labels",
    "rounds",
    "set_holders",
    "submission_chunks",
    "submissions",
    "submitted_tokens",
    "token_cache",
]

# On PostgreSQL the coordinator's token tables (``TOKEN_TABLES``) are hash-partitioned by token
# into this many partitions (``storage.partitions``); SQLite keeps them as plain tables.
TOKEN_PARTITIONS = 16
_BY_TOKEN = "HASH (match_token)"

# SHA-256 digests and hash-chain links. Token, label key and label digest sizes are the
# protocol's own (crypto.derive, protocol.submission), imported, never restated.
HASH_SIZE = 32


class UTCDateTime(TypeDecorator[datetime]):
    """A ``timestamptz`` that refuses naive datetimes and always returns UTC-aware ones.

    PostgreSQL keeps the instant and returns it in the session's zone; SQLite keeps a string
    without a zone, so values are stored as naive UTC there and the zone is put back on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _length_is(column: str, size: int) -> CheckConstraint:
    # length() counts bytes of a BLOB in SQLite and of a bytea in PostgreSQL.
    return CheckConstraint(f"length({column}) = {size}")


metadata = MetaData()

# Coordinator: rounds, submissions in chunks, the tokens themselves, and signed results.

rounds = Table(
    "rounds",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("key_epoch", Text, nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("allowed_types", Text, nullable=False),  # A JSON list of identifier types.
    Column("invited", Text, nullable=True),  # A JSON list of member ids; NULL means every member.
    Column("share_labels", Boolean, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("close_reason", Text, nullable=False, default=""),
    Column("matched_at", UTCDateTime, nullable=True),
    Column("set_scope", Text, nullable=False),  # Round.set_scope: which standing sets it matches.
    Column("match_counts", Text, nullable=True),  # JSON {holders: tokens}, set when matched.
    # "batch", or "continuous": a standing scope matched at each commit (``protocol.continuous``).
    Column("kind", Text, nullable=False, server_default=text("'batch'")),
    # Continuous: its alerts are released at multiples of this many seconds after creation.
    Column("min_interval_seconds", Integer, nullable=False, server_default=text("0")),
    # At most this many co-holder labels per leaf and alert (0: none, a round created before caps),
    # and the coordinator's secret salt that orders which holders' labels are carried.
    Column("label_cap", Integer, nullable=False, server_default=text("0")),
    Column("label_salt", LargeBinary, nullable=True),
    # Labels sealed only for matched tokens, after closing (``Round.labels_at_match``): the window
    # the holders have to answer, and when they must have answered (set when asked; NULL before).
    Column("labels_at_match", Boolean, nullable=False, default=False, server_default=false()),
    Column("label_window_seconds", Integer, nullable=False, server_default=text("0")),
    Column("labels_due", UTCDateTime, nullable=True),
    Index("ix_rounds_state", "state"),
    Index("ix_rounds_scope_state", "set_scope", "state"),
    # Rounds of one scope run one after another (their matching reads the standing sets).
    Index(
        "uq_rounds_unfinished_scope",
        "set_scope",
        unique=True,
        sqlite_where=text("state IN ('open', 'closed')"),
        postgresql_where=text("state IN ('open', 'closed')"),
    ),
)

submissions = Table(
    "submissions",
    metadata,
    Column("round_id", Text, ForeignKey("rounds.round_id"), primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("item_count", BigInteger, nullable=False, default=0),
    Column("digest", LargeBinary, nullable=True),
    Column("replaces_set", Boolean, nullable=False, default=False),  # The delta replaced the whole set.
    Column("set_count", BigInteger, nullable=True),  # The standing set after this commit.
    Column("committed_at", UTCDateTime, nullable=True),
    # The member chose to be named to the co-holders of its labels in this round's results.
    Column("share_name", Boolean, nullable=False, default=False, server_default=false()),
    # Continuous scopes: how many deltas the member committed (its rows stay, one per member and
    # scope; a new delta starts staging after each commit). Always 0 in a batch round.
    Column("commit_seq", BigInteger, nullable=False, server_default=text("0")),
)

_submission_fk = ("submissions.round_id", "submissions.member_id")

submission_chunks = Table(
    "submission_chunks",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("chunk_index", Integer, primary_key=True),
    Column("item_count", Integer, nullable=False),
    Column("chunk_digest", LargeBinary(HASH_SIZE), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["round_id", "member_id"], _submission_fk),
    _length_is("chunk_digest", HASH_SIZE),
)

# A round's delta submission, staged chunk by chunk: items put (with their label) and tokens
# removed. On commit it is applied to the member's standing set (``member_sets``) and deleted.
submitted_tokens = Table(
    "submitted_tokens",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("removed", Boolean, nullable=False, default=False),
    Column("sealed_label", LargeBinary, nullable=True),
    Column("label_digest", LargeBinary(LABEL_DIGEST_BYTES), nullable=False),
    ForeignKeyConstraint(["round_id", "member_id"], _submission_fk),
    _length_is("match_token", MATCH_TOKEN_BYTES),
    postgresql_partition_by=_BY_TOKEN,
)

# Members' sets per scope (key epoch, identifier types, label sharing; see ``Round.set_scope``).
# A whole-set submission writes a new set id ("member@round"); ``member_set_state`` says which
# set is each member's standing one, and deltas are applied to it. Rounds match over these sets.
member_sets = Table(
    "member_sets",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("set_id", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("sealed_label", LargeBinary, nullable=True),
    Column("label_digest", LargeBinary(LABEL_DIGEST_BYTES), nullable=False),
    # Matching reads the holders of the tokens at or above the threshold.
    Index("ix_member_sets_scope_token_set", "set_scope", "match_token", "set_id"),
    _length_is("match_token", MATCH_TOKEN_BYTES),
    postgresql_partition_by=_BY_TOKEN,
)

# Each member's standing set per scope, with its count and digest
# (``protocol.submission.set_digest``) as of its last commit, so that a member can check its own
# record before sending a delta, and the digest's LtHash state, which the next delta updates
# (NULL in a row written before the state was kept: the member then sends its whole set once).
member_set_state = Table(
    "member_set_state",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("set_id", Text, nullable=False),
    Column("item_count", BigInteger, nullable=False),
    Column("digest", LargeBinary(HASH_SIZE), nullable=False),
    Column("set_state", LargeBinary(SET_STATE_BYTES), nullable=True),
    Column("round_id", Text, nullable=False),  # The round whose commit made it so.
    Column("updated_at", UTCDateTime, nullable=False),
)

# How many members' standing sets hold each token of a scope, maintained as each delta commits,
# so that matching reads only the tokens at or above the threshold.
set_holders = Table(
    "set_holders",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("holders", Integer, nullable=False),
    Index("ix_set_holders_scope_holders", "set_scope", "holders"),
    _length_is("match_token", MATCH_TOKEN_BYTES),
    postgresql_partition_by=_BY_TOKEN,
)

# Each committed member's signed result: the header (``protocol.result_codec``) and its leaves
# in pages of at most ``result_codec.PAGE_BYTES``, so that no result is ever one huge blob.
result_headers = Table(
    "result_headers",
    metadata,
    Column("round_id", Text, ForeignKey("rounds.round_id"), primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("header", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("page_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

result_pages = Table(
    "result_pages",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("page_index", Integer, primary_key=True),
    Column("first_leaf", BigInteger, nullable=False),
    Column("leaf_count", Integer, nullable=False),
    Column("leaves", LargeBinary, nullable=False),  # Each leaf as I2OSP(len, 4) || leaf.
)

# Rounds with labels sealed at match (``Round.labels_at_match``): the labels the coordinator asked
# each carried holder of a matched token for, and its answer (NULL until it answers; empty: it
# has no label to share). Kept only until the round's results are issued, which carry them.
round_labels = Table(
    "round_labels",
    metadata,
    Column("round_id", Text, ForeignKey("rounds.round_id"), primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("sealed_label", LargeBinary, nullable=True),
    Column("answered", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_round_labels_member", "round_id", "member_id", "answered", "match_token"),
    Index("ix_round_labels_open", "round_id", "answered"),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# The tables that hold one row per token, partitioned by it on PostgreSQL: the unit a Citus
# cluster distributes (docs/design.md, Scaling), every primary key and join includes the token.
TOKEN_TABLES = (member_sets, set_holders, submitted_tokens)

# Coordinator: the alert outbox of continuous scopes (``protocol.alerts``). Each member's alerts
# are numbered 1, 2, 3, ... across its scopes; ``alert_members`` holds its last number given and
# its last acknowledged, and its row is the lock that keeps the numbers gap-free under concurrent
# commits. An alert is stored signed (``alert_outbox``); acknowledged ones are deleted. Alerts of a scope with a
# minimum interval wait in ``alerts_pending`` (unnumbered, unsigned) until the interval boundary.
# Tokens and sealed labels only, never an identifier.
alert_members = Table(
    "alert_members",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
    Column("acked_sequence", BigInteger, nullable=False),
    CheckConstraint("acked_sequence <= last_sequence", name="ck_alert_members_acked"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("scope_id", Text, nullable=False),
    Column("alert", LargeBinary, nullable=False),  # Canonical bytes (``alerts.encode_alert``).
    Column("signature", LargeBinary, nullable=False),
    Index("ix_alert_outbox_member_scope_sequence", "member_id", "scope_id", "sequence"),
)

alerts_pending = Table(
    "alerts_pending",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope_id", Text, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("release_at", UTCDateTime, nullable=False),
    Column("kind", Integer, nullable=False),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), nullable=False),
    Column("holder_count", Integer, nullable=False),
    Column("labels", LargeBinary, nullable=False),  # ``alerts.encode_labels`` of the peer labels.
    Index("ix_alerts_pending_release", "release_at"),
    Index("ix_alerts_pending_scope_member", "scope_id", "member_id", "release_at"),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# The scopes in which a member's alerts stopped because it left too many unacknowledged (an
# OVERFLOW alert told it so); once it acknowledges everything, a RESYNC replaces its state.
alert_overflows = Table(
    "alert_overflows",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("scope_id", Text, primary_key=True),
    Column("since_sequence", BigInteger, nullable=False),  # The OVERFLOW alert's sequence.
)

# Custodian: how many elements each member had evaluated, per key epoch.

quota_usage = Table(
    "quota_usage",
    metadata,
    Column("key_epoch", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("used", BigInteger, nullable=False),
    # Elements of batches sent again that were evaluated again without a charge (``charge_batch``).
    Column("resent_free", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("used >= 0", name="ck_quota_usage_used"),
)

# Custodian: the batches already charged to each member's quota per key epoch, by the SHA-256 of
# the batch's blinded elements, so a batch a member re-sends (a retry, or a join resumed after an
# interruption: the node's blinds are deterministic) is evaluated again without a second charge,
# up to ``quota_usage.resent_free`` elements per member and epoch.
charged_batches = Table(
    "charged_batches",
    metadata,
    Column("key_epoch", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("batch_digest", LargeBinary(HASH_SIZE), primary_key=True),
    Column("elements", Integer, nullable=False),
    Column("charged_at", UTCDateTime, nullable=False),
    _length_is("batch_digest", HASH_SIZE),
)

# Coordinator and custodian: the parties this server's own operator enrolled, each pinned by the
# SHA-256 of its certificate's SubjectPublicKeyInfo. A certificate of the alliance CA alone does
# not admit a member (or, at the coordinator, an admin): its name must be here with this key.
# ``public_key`` is that SubjectPublicKeyInfo itself (DER), which a custodian seals key-ceremony
# shares to; NULL for an enrolment made before it was kept (enrol the same certificate again).
enrolments = Table(
    "enrolments",
    metadata,
    Column("role", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("key_pin", LargeBinary(HASH_SIZE), nullable=False),
    Column("public_key", LargeBinary, nullable=True),
    Column("quota", BigInteger, nullable=True),  # Custodian: this member's quota; NULL is the default.
    Column("display_name", Text, nullable=True),  # Coordinator: the member's name for people.
    Column("added_at", UTCDateTime, nullable=False),
    _length_is("key_pin", HASH_SIZE),
    CheckConstraint("quota IS NULL OR quota >= 1", name="ck_enrolments_quota"),
)

# Coordinator and custodian: the audit log, an RFC 9162 Merkle tree (counts and ids only, never
# identifiers). Entry ``seq`` is leaf ``seq - 1``; ``audit_nodes`` holds every complete subtree
# above the leaves, so that proofs need O(log² n) reads (see ``audit_log``).

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=False),  # Canonical JSON.
    Column("nonce", LargeBinary(16), nullable=False),  # Salts the leaf hash against guesses.
    Column("leaf_hash", LargeBinary(HASH_SIZE), nullable=False),
    _length_is("leaf_hash", HASH_SIZE),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", Integer, primary_key=True),  # 1 and up: the subtree of 2**level entries ...
    Column("idx", BigInteger, primary_key=True),  # ... whose first entry is leaf idx * 2**level.
    Column("hash", LargeBinary(HASH_SIZE), nullable=False),
    _length_is("hash", HASH_SIZE),
)

# Member node: its own identifiers (never leave the node) and their tokens per key epoch.

identifiers = Table(
    "identifiers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", Text, nullable=False),
    Column("canonical", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("first_seen", Date, nullable=True),
    Column("case_ref", Text, nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("imported_at", UTCDateTime, nullable=False),
    # The change stamp (``member_changes``) of the transaction that inserted the row or last changed
    # its label: a submission reads only the rows stamped since its scope's last commit. NULL in rows
    # written before stamps existed (a scope's first submission reads every row anyway).
    Column("change_seq", BigInteger, nullable=True),
    UniqueConstraint("type", "canonical", name="uq_identifiers_type_canonical"),
    Index("ix_identifiers_expires_at", "expires_at"),
    Index("ix_identifiers_change_seq", "change_seq"),
)

# The member node's change counter, one row: every transaction that inserts, changes or deletes
# identifiers takes the next stamp by incrementing it, which locks the row until it commits, so
# stamps are taken in commit order and a reader that sees stamp n sees every change up to n.
member_changes = Table(
    "member_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

# The cached tokens of withdrawn and expired identifiers (deleted with their identifiers), with
# the change stamp of the deletion, so that the next delta of every scope that holds one removes
# it without comparing the whole set. Pseudonyms only, like ``member_submitted``; a row goes once
# no scope's record holds its token and no delta being sent was read before it.
member_withdrawals = Table(
    "member_withdrawals",
    metadata,
    Column("change_seq", BigInteger, primary_key=True),
    Column("key_epoch", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("type", Text, nullable=False),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# Each identifier as the member spelled it in the file it imported ("138 0013 8000"), for its own
# reports. A table of its own, so that a node database made before it gains it by create_schema;
# it goes with its identifier (cascade) and, like it, never leaves the node.
identifier_spellings = Table(
    "identifier_spellings",
    metadata,
    Column("identifier_id", Integer, ForeignKey("identifiers.id", ondelete="CASCADE"), primary_key=True),
    Column("spelling", Text, nullable=False),
)

token_cache = Table(
    "token_cache",
    metadata,
    Column("key_epoch", Text, primary_key=True),
    Column(
        "identifier_id",
        Integer,
        ForeignKey("identifiers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), nullable=False),
    Column("label_key", LargeBinary(LABEL_KEY_BYTES), nullable=False),
    Index("ix_token_cache_epoch_token", "key_epoch", "match_token"),
    # The cascade from identifiers looks rows up by identifier id alone.
    Index("ix_token_cache_identifier", "identifier_id"),
    _length_is("match_token", MATCH_TOKEN_BYTES),
    _length_is("label_key", LABEL_KEY_BYTES),
)

# What the member node last committed to the coordinator's standing set, per scope: the token,
# the digest of the sealed label sent with it, and a fingerprint of the label's plaintext fields
# (to notice a changed label without sealing it again). It outlives a withdrawn identifier until
# the next delta has removed the token at the coordinator.
member_submitted = Table(
    "member_submitted",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("label_digest", LargeBinary(LABEL_DIGEST_BYTES), nullable=False),
    Column("label_fingerprint", LargeBinary, nullable=False),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# The count and set digest of ``member_submitted`` per scope, written with it in one transaction,
# so that a node compares its record with the coordinator's without reading the whole record.
# With the digest's LtHash state (the next delta updates it) and the change stamp up to which the
# record reflects the node's identifiers (the next delta reads the rows stamped after it); both
# NULL in a record written before they were kept, and the next submission then sends the whole set.
member_submitted_state = Table(
    "member_submitted_state",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("item_count", BigInteger, nullable=False),
    Column("digest", LargeBinary(HASH_SIZE), nullable=False),
    Column("set_state", LargeBinary(SET_STATE_BYTES), nullable=True),
    Column("change_seq", BigInteger, nullable=True),
)

# The delta a member node is sending for a round, written as its chunks are built and folded
# into ``member_submitted`` once the coordinator has committed it.
member_pending = Table(
    "member_pending",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("removed", Boolean, nullable=False),
    Column("label_digest", LargeBinary(LABEL_DIGEST_BYTES), nullable=False),
    Column("label_fingerprint", LargeBinary, nullable=False),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# The delta being sent per scope: its round, whether it is the whole set and the change stamp it
# reads up to (written before its first chunk, so a resumed submission rebuilds the same chunks),
# then, once its chunks are all built, the count, digest and state the record takes when the
# coordinator commits it: a node stopped between the coordinator's commit and its own record
# finds them and applies them.
member_pending_state = Table(
    "member_pending_state",
    metadata,
    Column("set_scope", Text, primary_key=True),
    Column("round_id", Text, nullable=False),
    Column("replace", Boolean, nullable=False),
    Column("change_seq", BigInteger, nullable=True),
    Column("item_count", BigInteger, nullable=True),
    Column("digest", LargeBinary(HASH_SIZE), nullable=True),
    Column("set_state", LargeBinary(SET_STATE_BYTES), nullable=True),
)

# The member node's verified results, kept so reports can be rebuilt and re-verified later: the
# signed header as received, and every leaf in index order (the node recomputes the root).
member_result_headers = Table(
    "member_result_headers",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("key_epoch", Text, nullable=False),
    Column("round_name", Text, nullable=False),
    Column("header", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
)

member_result_leaves = Table(
    "member_result_leaves",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("leaf_index", BigInteger, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# The scope in which this member node committed to each round (written with the commit, so it is
# the node's own record, not what the coordinator says later), and each matched token of a kept
# result whose peer labels did not back its holder count (``protocol.leads.refuse_leads``), with
# the reason, written with the result. The signed result itself stays in the tables above: the
# evidence.
member_round_scopes = Table(
    "member_round_scopes",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("set_scope", Text, nullable=False),
    Column("share_labels", Boolean, nullable=False),
)

# Labels sealed at match: the tokens this node sent a label for in each round. A token asked for
# that the round's result does not hold (a coordinator gathering labels of unmatched identifiers)
# shows once the result is kept (``KeptResults.label_answers_beyond_result``).
member_label_answers = Table(
    "member_label_answers",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

member_refused_leads = Table(
    "member_refused_leads",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), primary_key=True),
    Column("holder_count", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    # How many holders the labels back; a lead whose backed count reaches the threshold stands
    # (with that count), one that does not is refused. Rows kept before these columns: refused.
    Column("backed_count", Integer, nullable=False, default=0, server_default=text("0")),
    Column("stands", Boolean, nullable=False, default=False, server_default=false()),
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

# A second, different signed result the coordinator gave this member for a round it had kept a
# result of: the two signed headers together prove the coordinator equivocated (the kept result is
# not replaced). Kept for the member's security officer; never sent anywhere.
member_conflicting_results = Table(
    "member_conflicting_results",
    metadata,
    Column("round_id", Text, primary_key=True),
    Column("header", LargeBinary, primary_key=True),
    Column("signature", LargeBinary, nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
)

# Every checkpoint of the coordinator's audit log this member node has seen (verified and
# consistent with the others), and the evidence it kept when the log contradicted one.
member_checkpoints = Table(
    "member_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True),
    Column("root", LargeBinary(HASH_SIZE), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
)

member_log_evidence = Table(
    "member_log_evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("document", Text, nullable=False),  # protocol.log_evidence JSON of the signed documents.
    Column("detected_at", UTCDateTime(), nullable=False),
)

# The member node's alerts of continuous scopes (``protocol.alert_follower``): each alert as the
# coordinator signed it (the evidence) with what the node concluded of it, the sequence number of
# the last one applied (advanced in the transaction that stores the alert, so an alert is applied
# exactly once), and one outbox row per alert and notifier (webhook, alert log, console), so a
# notification survives a restart. No table holds a raw identifier: an alert names its match token,
# which the node maps to its own identifier when it shows it (a withdrawn identifier is gone from
# its alerts too); an outbox body holds one only if the operator asked for full identifiers, and
# only until it is delivered.
member_alerts = Table(
    "member_alerts",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("alert_id", Text, nullable=False, unique=True),
    Column("scope", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("key_epoch", Text, nullable=False),
    Column("match_token", LargeBinary(MATCH_TOKEN_BYTES), nullable=False),
    Column("holder_count", Integer, nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("peer_labels", Text, nullable=False),  # JSON list of the opened labels (categories, attested names).
    Column("unreadable_labels", Integer, nullable=False),
    Column("refused", Text, nullable=True),  # Why the label checks refused it: not a lead.
    Column("backed_count", Integer, nullable=True),  # Holders its labels back, when fewer than holder_count.
    Column("signed", LargeBinary, nullable=False),  # The alert's signed bytes, as received.
    Column("signature", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),  # The coordinator's time.
    Column("applied_at", UTCDateTime, nullable=False),
    Column("acked_at", UTCDateTime, nullable=True),  # An investigator acknowledged it (``node alerts SEQUENCE --ack``).
    Column("ack_note", Text, nullable=False, default=""),
    Index("ix_member_alerts_scope_token", "scope", "match_token", "sequence"),
    Index("ix_member_alerts_scope_kind", "scope", "kind", "sequence"),  # A later RESYNC of the scope.
    _length_is("match_token", MATCH_TOKEN_BYTES),
)

member_alert_cursor = Table(
    "member_alert_cursor",
    metadata,
    Column("stream", Text, primary_key=True),  # The coordinator's name.
    Column("applied_sequence", BigInteger, nullable=False),
)

member_alert_outbox = Table(
    "member_alert_outbox",
    metadata,
    Column("sequence", BigInteger, ForeignKey("member_alerts.sequence"), primary_key=True),
    Column("channel", Text, primary_key=True),  # webhook, log or console.
    Column("message_id", Text, nullable=False),  # The same on every attempt (Standard Webhooks webhook-id).
    Column("body", LargeBinary, nullable=False),  # Emptied once delivered.
    Column("state", Text, nullable=False),  # pending, delivered or dead.
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_member_alert_outbox_due", "state", "next_attempt_at"),
)
