"""Defaults that several parts state: each one here, once.

A base module like ``errors``: it imports nothing, and every layer may import it. The role's
config (``alliance_psi.config``) carries these as field defaults and the CLI shows them in
``--help``; the code that uses a value takes it from its config or argument.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "CALLS_PER_SECOND_PER_PEER",
    "CEREMONY_MAX_ATTEMPT",
    "CEREMONY_ROUND_SECONDS",
    "CEREMONY_SECONDS",
    "CHUNK_SIZE",
    "CONNECTION_AGE_GRACE_SECONDS",
    "CONNECTION_AGE_SECONDS",
    "CONNECTION_IDLE_SECONDS",
    "COORDINATOR_NAME",
    "CRL_RELOAD_SECONDS",
    "CUSTODIAN_DOWN_SECONDS",
    "ENROLMENT_REFRESH_SECONDS",
    "FREE_RESENT_PER_MEMBER",
    "HEDGE_AFTER_SECONDS",
    "INBOX_SETTLE_SECONDS",
    "JOIN_WAIT_SECONDS",
    "KEPT_ANSWERS_PER_MEMBER",
    "MAX_ALERT_BACKLOG",
    "MAX_CALLS",
    "MAX_CALLS_PER_PEER",
    "MAX_MONITORING_CONNECTIONS",
    "MAX_OPEN_CALLS",
    "MAX_REFUSED_CHUNKS",
    "MAX_ROUND_ITEMS",
    "MAX_SET_ITEMS",
    "MAX_STREAMS_PER_PEER",
    "MONITORING_CONNECTION_SECONDS",
    "NODE_BUSY_TIMEOUT_SECONDS",
    "NODE_PAGE_CACHE_MIB",
    "NODE_POLL_SECONDS",
    "NODE_STOP_GRACE_SECONDS",
    "NODE_SUBMIT_SECONDS",
    "NODE_WAL_CHECKPOINT_PAGES",
    "OPEN_CALLS_PER_PEER",
    "QUOTA_PER_MEMBER",
    "SHUTDOWN_GRACE_SECONDS",
    "STREAM_IDLE_SECONDS",
    "THRESHOLD_SAMPLE",
    "TICK_SECONDS",
    "WEBHOOK_FIRST_RETRY_SECONDS",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_MAX_RETRY_SECONDS",
    "WEBHOOK_TIMEOUT_SECONDS",
]

BATCH_SIZE = 1024
"""Identifiers a member node blinds and sends to the custodians per call."""

CHUNK_SIZE = 4096
"""Items and removals a member node puts in one submission chunk (at most ``MAX_CHUNK_ITEMS``)."""

QUOTA_PER_MEMBER = 2_000_000
"""Elements a custodian evaluates for one member per key epoch."""

KEPT_ANSWERS_PER_MEMBER = 32_768
"""Elements of its latest answers a custodian keeps in memory per member (32 bytes each), to answer
a batch sent again without evaluating it."""

FREE_RESENT_PER_MEMBER = 65_536
"""Elements of batches sent again, not in the kept answers, that a custodian evaluates again free
per member per key epoch; beyond, a batch sent again is charged as a new one."""

HEDGE_AFTER_SECONDS = 2.0
"""How long a member node waits on a threshold custodian's answer before asking a further one too."""

CUSTODIAN_DOWN_SECONDS = 30.0
"""How long a member node leaves a threshold custodian that could not be reached out of its first choice."""

THRESHOLD_SAMPLE = 16
"""Elements of each batch a member node also sends to one further threshold custodian in the
``sample`` verification mode, to check that every subset of custodians gives the same answer."""

TICK_SECONDS = 1.0
"""How often the coordinator closes rounds past their deadline and matches closed ones."""

JOIN_WAIT_SECONDS = 600.0
"""How long ``node join`` waits for its round to be matched after committing."""

NODE_BUSY_TIMEOUT_SECONDS = 900.0
"""How long a member node's command waits for another's write lock on the node's SQLite database
(``node import`` while ``node run`` imports a large file in one transaction) before it fails."""

NODE_PAGE_CACHE_MIB = 64
"""The most memory each connection of a member node's process to its SQLite database keeps as page
cache (SQLite's default is 2 MiB): enough to hold the token cache's index on the random token
(about 41 bytes an identifier, 39 MiB for 1,000,000), which every batch of tokens kept writes
into at random places."""

NODE_WAL_CHECKPOINT_PAGES = 10_000
"""How many pages (4 KiB each) a member node's SQLite WAL file may hold before a commit copies them
into the database (SQLite's default is 1,000): a batch of tokens kept dirties about one page of the
token cache's index per token, and pages written by several batches in between are copied once."""

NODE_POLL_SECONDS = 5.0
"""How often ``node run`` looks at its inbox and at the coordinator's open rounds."""

NODE_SUBMIT_SECONDS = 60.0
"""The least time ``node run`` leaves between two submissions of changes to one continuous scope."""

INBOX_SETTLE_SECONDS = 2.0
"""How long a file in ``node run``'s inbox must stay unchanged (size and time) before it is imported."""

NODE_STOP_GRACE_SECONDS = 10.0
"""How long ``node run`` lets the work in hand finish after SIGTERM before it abandons it (it resumes
at the next start: every step is a transaction)."""

CEREMONY_MAX_ATTEMPT = 1_000_000
"""The highest ``custodian keygen --attempt``: runs of one ceremony are numbered 1, 2, …"""
CEREMONY_SECONDS = 600.0
"""How long ``custodian keygen``'s ceremony may take from its start: every custodian's operator starts
theirs within it."""

CEREMONY_ROUND_SECONDS = 60.0
"""How long each round of the key ceremony after the first may take."""

COORDINATOR_NAME = "coordinator"
"""The coordinator's name in its certificate, and the name clients expect when given none."""

ENROLMENT_REFRESH_SECONDS = 1.0
"""How stale a server's in-memory copy of its enrolment list may get before it re-reads it."""

MAX_SET_ITEMS = 5_000_000
"""Tokens one member's standing set may hold per scope at the coordinator."""

MAX_ROUND_ITEMS = 2_000_000
"""Items and removals one member's delta may hold per round (a whole set: ``MAX_SET_ITEMS``)."""

MAX_ALERT_BACKLOG = 10_000
"""Alerts of continuous scopes one member may leave unacknowledged at the coordinator; beyond, its
alerts of a scope stop with an OVERFLOW alert until it acknowledges them all (then a RESYNC).

It is also what one commit may draft, sign and store for one member inside the commit's
transaction, which holds the scope's lock: at a quarter of a millisecond per signature on a
loaded 2-core machine, 10,000 is 2 to 3 s per member, where 1,000,000 was minutes. A member that
far behind is better served by the RESYNC (its state, once) than by every alert in between."""

MAX_REFUSED_CHUNKS = 16
"""Chunks of one member the coordinator refuses for their content per round before it refuses the
member's every further chunk to that round (a repeated token, other content for a stored index)."""

# Server limits (``config.ServerLimits``; docs/operations.md, "Limits").

MAX_CALLS = 64
"""Calls a server runs at once, in total."""

MAX_CALLS_PER_PEER = 8
"""Calls one peer (certificate identity) may have in progress at once, streams included."""

MAX_STREAMS_PER_PEER = 4
"""Streaming calls one peer may have in progress at once."""

MAX_OPEN_CALLS = 8
"""Calls to the health and reflection services in progress at once, in total, apart from ``MAX_CALLS``."""

OPEN_CALLS_PER_PEER = 2
"""Calls to the health and reflection services one peer may have in progress at once."""

CALLS_PER_SECOND_PER_PEER = 50.0
"""Calls one peer may start per second, in bursts of up to twice that."""

STREAM_IDLE_SECONDS = 60.0
"""How long a call may wait on its peer (a request that does not come, a response not read)."""

CONNECTION_IDLE_SECONDS = 300.0
"""How long a connection without calls stays open."""

CONNECTION_AGE_SECONDS = 3600.0
"""How long any connection stays open; its calls then get ``CONNECTION_AGE_GRACE_SECONDS``."""

CONNECTION_AGE_GRACE_SECONDS = 600.0
"""How long the calls of a connection past its age may still run."""

SHUTDOWN_GRACE_SECONDS = 5.0
"""How long running calls get on SIGTERM; the process exits within twice that plus 1 s."""

CRL_RELOAD_SECONDS = 30.0
"""How often a server checks its CRL file for changes."""

# The plain metrics and health port (``services.monitoring``; docs/operations.md, "Monitor").

MAX_MONITORING_CONNECTIONS = 32
"""Connections the metrics and health port serves at once (a thread each); one more is closed at once."""

MONITORING_CONNECTION_SECONDS = 10.0
"""How long one connection to the metrics and health port may stay open, from its request to the
end of its answer (an idle, half-open or slowly sent request is closed then): a /readyz may wait
5 s for the checks another probe runs."""

# The member node's alert notifiers (``config.NotifyConfig``).

WEBHOOK_MAX_ATTEMPTS = 12
"""Attempts to deliver one alert to the webhook before it becomes a dead letter."""

WEBHOOK_FIRST_RETRY_SECONDS = 1.0
"""The wait after a webhook's first failed attempt; each later wait doubles (with jitter)."""

WEBHOOK_MAX_RETRY_SECONDS = 600.0
"""The longest wait between two attempts at one webhook message (12 attempts span 20 to 27 minutes)."""

WEBHOOK_TIMEOUT_SECONDS = 10.0
"""How long one webhook request may take (connect, send and answer)."""
