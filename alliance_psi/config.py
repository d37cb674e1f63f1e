"""Typed configuration, one frozen dataclass per concern (STYLE guideline 11).

Only ``alliance_psi.cli`` builds these, from options, files and the environment; library code takes
them as arguments and never reads ``os.environ``. Each class documents its usage in a table.

Sections, in order: TLS, server limits, monitoring, then the per-role configs (custodian, coordinator, member),
then the member node's settings file (``node.toml``), read by ``read_node_file``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alliance_psi import defaults
from alliance_psi._files import read_secret
from alliance_psi.defaults import (
    BATCH_SIZE,
    CHUNK_SIZE,
    ENROLMENT_REFRESH_SECONDS,
    FREE_RESENT_PER_MEMBER,
    INBOX_SETTLE_SECONDS,
    KEPT_ANSWERS_PER_MEMBER,
    MAX_ALERT_BACKLOG,
    MAX_REFUSED_CHUNKS,
    MAX_ROUND_ITEMS,
    MAX_SET_ITEMS,
    NODE_POLL_SECONDS,
    NODE_STOP_GRACE_SECONDS,
    NODE_SUBMIT_SECONDS,
    QUOTA_PER_MEMBER,
    TICK_SECONDS,
    WEBHOOK_FIRST_RETRY_SECONDS,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_MAX_RETRY_SECONDS,
    WEBHOOK_TIMEOUT_SECONDS,
)
from alliance_psi.errors import ConfigurationError

__all__ = [
    "CoordinatorConfig",
    "CustodianConfig",
    "KeyCeremonyConfig",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MemberConfig",
    "MonitoringConfig",
    "NODE_FILE_KEYS",
    "NotifyConfig",
    "WebhookConfig",
    "NODE_FILE_PATHS",
    "NodeRunConfig",
    "PeerEndpoint",
    "peer_text_parts",
    "ServerLimits",
    "TlsConfig",
    "TlsMaterial",
    "read_node_file",
    "resolve_database_url",
    "split_listen",
    "sqlite_file",
]

_PEM_MARKER = b"-----BEGIN "


# TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes a party needs for mutual TLS, as read from disk.

    ``key`` is the party's private key: it never leaves the process and its ``repr`` never shows it.
    ``crl`` is the alliance CA's revocation list, which servers use to refuse revoked peers.
    ``own_ca`` is the CA that issued ``cert`` when that is not the alliance CA: an independent
    custodian's own CA, which members pin for it (``ca_cert`` still decides which clients a server
    trusts).
    """

    ca_cert: bytes
    cert: bytes
    key: bytes = field(repr=False)
    crl: bytes | None = None
    own_ca: bytes | None = None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Where a party's mutual-TLS files are. Every party (member, custodian, coordinator) has one.

    Usage::

        TlsConfig(ca_cert=Path("pki/ca.pem"), cert=Path("pki/bank-a.pem"), key=Path("pki/bank-a.key"))
                                        # A member node: trusts only the alliance CA, proves it is bank-a.
        TlsConfig(ca_cert=…, cert=…, key=…, crl=Path("pki/crl.pem"))
                                        # A server that also refuses the certificates the CRL lists.
        TlsConfig(ca_cert=Path("ca/ca.pem"), cert=Path("custodian-2/custodian-2.pem"), key=…,
                  own_ca=Path("custodian-2-ca/ca.pem"))
                                        # An independent custodian: trusts members of the alliance CA,
                                        # serves a certificate of its own CA, which members pin for it.
        TlsConfig(…).load()             # -> TlsMaterial with the bytes; raises ConfigurationError
                                        #    naming the option and the file that is missing or unreadable.
        load_tls(TlsConfig(…), role=Role.CUSTODIAN, name="custodian-1")
                                        # services.cert_checks: read and check (key, CA, validity, identity).

    ``cert`` and ``key`` are written by ``alliance-psi pki issue``; ``ca.pem`` and ``crl.pem`` by
    ``alliance-psi pki init-ca`` and ``alliance-psi pki revoke``. An independent custodian's
    ``own_ca`` is its own ``pki init-ca``'s ``ca.pem``, and ``cert`` is issued by that CA.
    """

    ca_cert: Path
    cert: Path
    key: Path
    crl: Path | None = None
    own_ca: Path | None = None

    def load(self) -> TlsMaterial:
        """Read every file now, so a bad path fails at start-up rather than at the first handshake.

        Commands use ``services.cert_checks.load_tls``, which also checks what the files hold.

        Raises:
            ConfigurationError: a file is missing, unreadable or not PEM; the message names the
                option (``ca_cert``, ``cert``, ``key``, ``crl``, ``own_ca``) and the path.
        """
        return TlsMaterial(
            ca_cert=_read_pem("ca_cert", self.ca_cert),
            cert=_read_pem("cert", self.cert),
            key=_read_pem("key", self.key, secret=True),
            crl=_read_pem("crl", self.crl) if self.crl is not None else None,
            own_ca=_read_pem("own_ca", self.own_ca) if self.own_ca is not None else None,
        )


def _read_pem(option: str, path: Path, *, secret: bool = False) -> bytes:
    """Read one PEM file for TLS option ``option``, or raise naming the option and the path.

    A ``secret`` one (the private key) is refused if group or others may open it.
    """
    try:
        data = read_secret(path, what=f"TLS option {option!r}:") if secret else Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"TLS option {option!r}: file not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"TLS option {option!r}: cannot read {path}: {exc.strerror}") from None
    if _PEM_MARKER not in data:
        raise ConfigurationError(f"TLS option {option!r}: {path} is not a PEM file")
    return data


@dataclass(frozen=True, slots=True)
class PeerEndpoint:
    """A server a client dials: the name its certificate must carry, where it listens, and (for an
    independent custodian) the one CA its certificate must come from.

    Usage::

        PeerEndpoint(name="custodian-1", address="127.0.0.1:7101")
                                        # Dial 127.0.0.1:7101; accept only custodian-1's certificate,
                                        # issued by the alliance CA.
        PeerEndpoint(name="custodian-2", address="custodian-2.example:7102",
                     ca=Path("custodian-2-ca.pem"))
                                        # Accept only custodian-2's certificate, issued by custodian-2's
                                        # own CA: one the alliance CA issues for that name is refused.
        PeerEndpoint(name="coordinator", address="coord.example:7100")
        PeerEndpoint(name="custodian-1", address="10.0.0.5:7101", replicas=("10.0.0.6:7101",))
                                        # Two processes of custodian-1 (one key share, one PostgreSQL
                                        # quota store): calls go round-robin over both addresses.

    The address only says where to connect; who answers is checked by name (with the role the
    client expects), so a wrong address fails the handshake instead of reaching another party.
    ``ca`` is the trust anchor of that one channel, in place of the alliance CA: whoever holds the
    alliance CA can issue a certificate under any name, but not one of another institution's CA.
    ``replicas`` are more addresses of the same server (custodian replicas: every one holds the
    same certificate and key share and charges one quota store, docs/operations.md); the client
    opens one channel over all of them and spreads its calls round-robin, each handshake checked
    by name as for one address. ``cli`` parses ``NAME@HOST:PORT[+HOST:PORT…][,ca=FILE]`` and TOML
    tables (``address`` a string or a list) into these.
    """

    name: str
    address: str
    ca: Path | None = None
    replicas: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address of this server: ``address`` first, then ``replicas``."""
        return (self.address, *self.replicas)


def peer_text_parts(text: str) -> tuple[str, dict[str, str]]:
    """``NAME@HOST:PORT`` and the options after it: ``"c-2@h:7102,ca=c2.pem"`` -> ``("c-2@h:7102", {"ca": "c2.pem"})``.

    The only option is ``ca``, always last, so its file may contain commas. Values are not checked
    here (``cli`` does); an option without ``=`` comes back under its own text with value ``""``.
    """
    peer, sep, rest = text.partition(",")
    if not sep:
        return peer, {}
    key, _, value = rest.partition("=")
    return peer, {key.strip(): value}


# Server limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one peer, and every peer together, may hold of a server (coordinator or custodian).

    A peer is a certificate identity (``member:bank-a``), whatever connections it opens. Calls over
    a limit are refused with RESOURCE_EXHAUSTED naming the limit, logged and audited.

    Usage::

        ServerLimits()                              # the defaults below (docs/operations.md, "Limits")
        ServerLimits(max_calls=64)                  # calls in progress in total (one worker thread each)
        ServerLimits(max_calls_per_peer=8)          # calls in progress per peer, streams included
        ServerLimits(max_streams_per_peer=4)        # streaming calls in progress per peer
        ServerLimits(max_open_calls=8)              # health and reflection calls in progress, in
                                                    # total, apart from max_calls (2 per peer)
        ServerLimits(calls_per_second_per_peer=50)  # sustained rate per peer; bursts up to twice that
        ServerLimits(stream_idle_seconds=60)        # a call that waits this long on its peer is ended
        ServerLimits(connection_idle_seconds=300)   # a connection without calls is closed after this
        ServerLimits(connection_age_seconds=3600,   # every connection is closed after this long;
                     connection_age_grace_seconds=600)  # calls on it get this long to finish
        ServerLimits(shutdown_grace_seconds=5)      # on SIGTERM, running calls get this long; the
                                                    # process exits within twice this plus 1 s
        ServerLimits(crl_reload_seconds=30)         # how often the CRL file is checked for changes

    Raises:
        ConfigurationError: a value is not positive, or a per-peer limit is above the total.
    """

    max_calls: int = defaults.MAX_CALLS
    max_calls_per_peer: int = defaults.MAX_CALLS_PER_PEER
    max_streams_per_peer: int = defaults.MAX_STREAMS_PER_PEER
    max_open_calls: int = defaults.MAX_OPEN_CALLS
    calls_per_second_per_peer: float = defaults.CALLS_PER_SECOND_PER_PEER
    stream_idle_seconds: float = defaults.STREAM_IDLE_SECONDS
    connection_idle_seconds: float = defaults.CONNECTION_IDLE_SECONDS
    connection_age_seconds: float = defaults.CONNECTION_AGE_SECONDS
    connection_age_grace_seconds: float = defaults.CONNECTION_AGE_GRACE_SECONDS
    shutdown_grace_seconds: float = defaults.SHUTDOWN_GRACE_SECONDS
    crl_reload_seconds: float = defaults.CRL_RELOAD_SECONDS

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"server limit {name} must be positive, got {getattr(self, name)}")
        if not self.max_streams_per_peer <= self.max_calls_per_peer <= self.max_calls:
            raise ConfigurationError(
                "server limits: need max_streams_per_peer <= max_calls_per_peer <= max_calls, got "
                f"{self.max_streams_per_peer}, {self.max_calls_per_peer} and {self.max_calls}"
            )


# Monitoring -----------------------------------------------------------------------------------

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    """A server's plain HTTP port for metrics and health, and its logging.

    Usage::

        MonitoringConfig()                                  # no metrics port; logs as text, level info
        MonitoringConfig(metrics_listen="127.0.0.1:9464")   # /metrics, /healthz, /readyz on that
                                                            # address, plain HTTP (port 0: any free port)
        MonitoringConfig(metrics_listen="0.0.0.0:9464")     # in a container, for probes and Prometheus;
                                                            # reachable by whoever reaches the address
        MonitoringConfig(log_level="debug", log_format="json")   # one JSON object per line

    The port is off unless ``metrics_listen`` is given: several servers run on one machine (the
    README's walkthrough), and a default port would make the second fail to start. It answers
    without authentication (docs/operations.md, "Monitor"). ``log_level`` is alliance-psi's own
    loggers' level; other libraries log warnings and errors only (SQLAlchemy at INFO and DEBUG
    would log statements and rows).

    Raises:
        ConfigurationError: ``metrics_listen`` is not HOST:PORT (``split_listen``), or a level or
            format is not in ``LOG_LEVELS`` or ``LOG_FORMATS``.
    """

    metrics_listen: str | None = None
    log_level: str = "info"
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.metrics_listen is not None:
            split_listen(self.metrics_listen)
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")


def split_listen(address: str) -> tuple[str, int]:
    """An address to listen on, ``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0: any free port), as (host, port).

    Raises:
        ConfigurationError: ``address`` is not HOST:PORT with a port from 0 to 65535.
    """
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:9464; port 0 picks a free one)")
    return host, int(port)


# Roles ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustodianConfig:
    """A key custodian.

    Usage::

        CustodianConfig(name="custodian-1", listen="127.0.0.1:7101", tls=TlsConfig(…),
                        key_share=Path("custodian/epoch-2026q4.share"),
                        database="sqlite:///custodian/quota.db",
                        quota_per_member=2_000_000)   # default elements per member per epoch
        CustodianConfig(…, kept_answers_per_member=32_768,   # answers kept to answer a re-sent batch
                        free_resent_per_member=65_536)   # re-sent elements evaluated again free per epoch
        CustodianConfig(…, enrolment_refresh_seconds=1.0)    # how stale the enrolment list may be
        CustodianConfig(…, limits=ServerLimits(max_calls_per_peer=4))   # see ServerLimits
        CustodianConfig(…, monitoring=MonitoringConfig(metrics_listen="127.0.0.1:9465"))
        CustodianConfig(…, key_share=Path("custodian-2/2026q4.share"),      # a threshold share, checked
                        epoch_file=Path("custodian-2/2026q4-epoch.json"))  # against its K_i at start

    A chain key share is written by ``alliance-psi custodian init-share``; a threshold share by the
    key generation (or ``custodian deal``, for tests and demos), with the public epoch file it
    must match (``epoch_file``, required for a threshold share). Keep a share 0600 and
    back it up: losing it ends the epoch (every member recomputes its tokens under a new one).
    Only members enrolled in ``database`` by this custodian's operator
    (``alliance-psi custodian member add``) are served; a member's own quota there overrides
    ``quota_per_member``.
    """

    name: str
    listen: str
    tls: TlsConfig
    key_share: Path
    database: str
    quota_per_member: int = QUOTA_PER_MEMBER
    enrolment_refresh_seconds: float = ENROLMENT_REFRESH_SECONDS
    limits: ServerLimits = ServerLimits()
    kept_answers_per_member: int = KEPT_ANSWERS_PER_MEMBER
    free_resent_per_member: int = FREE_RESENT_PER_MEMBER
    monitoring: MonitoringConfig = MonitoringConfig()
    epoch_file: Path | None = None


@dataclass(frozen=True, slots=True)
class KeyCeremonyConfig:
    """One custodian's part in a key ceremony (``alliance-psi custodian keygen``).

    Usage::

        KeyCeremonyConfig(name="custodian-1", epoch="2026q4", threshold=2, listen="0.0.0.0:7201",
                          tls=TlsConfig(…),                       # this custodian's serve files
                          peers=(PeerEndpoint("custodian-2", "custodian-2.example:7202",
                                              ca=Path("custodian-2-ca.pem")), …),   # every other custodian
                          database="sqlite:///custodian-1/quota.db",   # where `custodian peer add` enrolled them
                          out=Path("custodian-1/2026q4"))         # NAME.share (0600) and epoch.json
        KeyCeremonyConfig(…, total_seconds=600, round_seconds=60)  # how long the ceremony and a round may take

    Every custodian's operator runs it with the same epoch, threshold and set of custodians
    (``name`` plus ``peers``) and attempt (1, then the next number after a run that failed); a
    custodian named otherwise is refused.
    """

    name: str
    epoch: str
    threshold: int
    listen: str
    tls: TlsConfig
    peers: tuple[PeerEndpoint, ...]
    database: str
    out: Path
    attempt: int = 1
    total_seconds: float = defaults.CEREMONY_SECONDS
    round_seconds: float = defaults.CEREMONY_ROUND_SECONDS
    force: bool = False


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """The alliance operator's coordinator.

    Usage::

        CoordinatorConfig(name="coordinator", listen="127.0.0.1:7100", tls=TlsConfig(…),
                          signing_key=Path("coordinator/signing.key"),   # Ed25519, signs results
                          database="sqlite:///coordinator/coordinator.db")  # or postgresql+psycopg://…
        CoordinatorConfig(…, tick_seconds=0.5)   # how often deadlines and pending matches are checked
        CoordinatorConfig(…, enrolment_refresh_seconds=1.0)  # how stale the enrolment list may be
        CoordinatorConfig(…, max_set_items=5_000_000,    # tokens a member's standing set may hold per scope
                          max_round_items=2_000_000)     # items and removals a member's delta may hold per round
        CoordinatorConfig(…, max_refused_chunks=16)   # chunks refused for their content per member and round
        CoordinatorConfig(…, max_alert_backlog=10_000)  # alerts a member may leave unacknowledged
        CoordinatorConfig(…, limits=ServerLimits(max_calls=128))   # see ServerLimits
        CoordinatorConfig(…, monitoring=MonitoringConfig(metrics_listen="127.0.0.1:9464"))

    Only members and admins enrolled in ``database`` by the coordinator's operator
    (``alliance-psi coordinator member add`` / ``admin add``) are served. A submission over
    ``max_set_items`` or ``max_round_items`` is refused (RESOURCE_EXHAUSTED, naming the limit)
    and leaves the member's set as it was. Past ``max_refused_chunks`` chunks refused for their
    content (a repeated token, other content for a stored index), a member's further chunks to
    that round are refused (RESOURCE_EXHAUSTED) before any transaction.
    """

    name: str
    listen: str
    tls: TlsConfig
    signing_key: Path
    database: str
    tick_seconds: float = TICK_SECONDS
    enrolment_refresh_seconds: float = ENROLMENT_REFRESH_SECONDS
    max_set_items: int = MAX_SET_ITEMS
    max_round_items: int = MAX_ROUND_ITEMS
    max_refused_chunks: int = MAX_REFUSED_CHUNKS
    max_alert_backlog: int = MAX_ALERT_BACKLOG
    limits: ServerLimits = ServerLimits()
    monitoring: MonitoringConfig = MonitoringConfig()


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A member node.

    Usage::

        MemberConfig(member_id="bank-a", database="sqlite:///node/bank-a.db", tls=TlsConfig(…),
                     coordinator=PeerEndpoint("coordinator", "127.0.0.1:7100"),
                     custodians=(PeerEndpoint("custodian-1", "127.0.0.1:7101"),    # evaluated
                                 PeerEndpoint("custodian-2", "127.0.0.1:7102")),   # in this order
                     coordinator_public_key=Path("alliance/coordinator.pub"),
                     data_dir=Path("node"))          # holds the node's own secrets (label nonce key)
        MemberConfig(…, share_name=True)             # co-holders of its labels see its name, attested by
                                                     # the coordinator (its enrolled display name)
        MemberConfig(…, display_name="某某银行")      # the same, as older configs say it (the name itself
                                                     # is no longer sent); neither: anonymous
        MemberConfig(…, workers=2, batch_size=1024)  # crypto processes and identifiers per batch
        MemberConfig(…, custodians=(PeerEndpoint("custodian-1", …), PeerEndpoint("custodian-2", …),
                                    PeerEndpoint("custodian-3", …)),
                     epoch_file=Path("alliance/2026q4-epoch.json"))   # threshold custody: any τ of
                                                     # the listed custodians, asked at once
        MemberConfig(…, epoch_file=…, verify="proof")  # every answer proven (default "sample")

    ``member_id`` must equal the name in the node's certificate; the coordinator and custodians
    identify the node by its certificate alone, and the node accepts only the coordinator and the
    custodians named here (by their certificates). Without ``epoch_file`` the custodians form a
    chain (each applies its share in turn, in the order listed); with one, the epoch is a threshold
    epoch and each custodian's answers are checked against its commitment ``K_i`` in that file
    (``protocol.threshold_evaluator``; ``verify`` is ``"sample"`` or ``"proof"``).

    Raises:
        ConfigurationError: ``workers``, ``batch_size`` or ``chunk_size`` below 1 (more workers
            than the machine's cores are clamped to them, with a warning, when the pool starts).
    """

    member_id: str
    database: str
    tls: TlsConfig
    coordinator: PeerEndpoint
    custodians: tuple[PeerEndpoint, ...]
    coordinator_public_key: Path
    data_dir: Path
    display_name: str | None = None
    share_name: bool | None = None  # None: named when display_name is set.
    workers: int | None = None
    batch_size: int = BATCH_SIZE
    chunk_size: int = CHUNK_SIZE
    epoch_file: Path | None = None
    verify: str = "sample"

    def __post_init__(self) -> None:
        # More workers than cores is clamped with a warning where the pool starts
        # (``crypto.parallel.usable_workers``): the cores are the running machine's.
        if self.workers is not None and self.workers < 1:
            raise ConfigurationError(f"workers (crypto worker processes) must be at least 1, got {self.workers}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ConfigurationError(
                f"batch and chunk sizes must be at least 1, got {self.batch_size} and {self.chunk_size}"
            )


@dataclass(frozen=True, slots=True)
class NodeRunConfig:
    """What ``node run`` (the member node as a long-running service) does beside its ``MemberConfig``.

    Usage::

        NodeRunConfig(inbox=Path("bank-a/inbox"))    # import files dropped there (done/, failed/)
        NodeRunConfig(…, poll_seconds=5.0,           # look at the inbox and the open rounds this often
                      submit_seconds=60.0,           # at most one submission per continuous scope per minute
                      settle_seconds=2.0,            # a file unchanged this long is complete
                      stop_grace_seconds=10.0)       # after SIGTERM, then the work in hand is abandoned
        NodeRunConfig(…, strict=False)               # import a file's valid rows despite rejected ones
        NodeRunConfig(…, join_rounds=False)          # leave batch rounds to `node join` by hand

    With ``strict`` (the default) a file with any rejected row imports nothing and goes to
    ``failed/`` with its rejects file: an unattended import never leaves part of a file in.

    Raises:
        ConfigurationError: a time that is negative, or a poll interval that is not positive.
    """

    inbox: Path
    poll_seconds: float = NODE_POLL_SECONDS
    submit_seconds: float = NODE_SUBMIT_SECONDS
    settle_seconds: float = INBOX_SETTLE_SECONDS
    stop_grace_seconds: float = NODE_STOP_GRACE_SECONDS
    strict: bool = True
    join_rounds: bool = True

    def __post_init__(self) -> None:
        if not self.poll_seconds > 0:
            raise ConfigurationError(f"poll-every must be positive, got {self.poll_seconds}")
        for name in ("submit_seconds", "settle_seconds", "stop_grace_seconds"):
            if not getattr(self, name) >= 0:
                raise ConfigurationError(f"{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")


# The member node's alert notifiers ---------------------------------------------------------

_LOOPBACK_HOSTS = ("localhost",)  # Names; addresses (127.0.0.1, ::1) are checked as addresses.


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where a member node posts its alerts: a Standard Webhooks endpoint (https://www.standardwebhooks.com).

    Usage::

        WebhookConfig(url="https://cases.bank-a.example/hooks/alliance",
                      secret_file=Path("secrets/webhook.secret"))   # whsec_…, mode 0600
        WebhookConfig(…, max_attempts=12,             # then the message is a dead letter
                      first_retry_seconds=1.0,        # doubling, with jitter, up to
                      max_retry_seconds=600.0,
                      timeout_seconds=10.0)           # per request

    The URL must be https, or http to a loopback address (a receiver on the same machine). Every
    request carries ``webhook-id`` (the same on every attempt at one alert), ``webhook-timestamp``
    and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`` under the secret;
    ``services.notifiers.load_webhook_secret`` reads and checks the secret file.

    Raises:
        ConfigurationError: the URL is not http(s) with a host, is plain http to another host,
            carries a user name or password, or a number is not positive.
    """

    url: str
    secret_file: Path
    max_attempts: int = WEBHOOK_MAX_ATTEMPTS
    first_retry_seconds: float = WEBHOOK_FIRST_RETRY_SECONDS
    max_retry_seconds: float = WEBHOOK_MAX_RETRY_SECONDS
    timeout_seconds: float = WEBHOOK_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        import ipaddress
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            _ = parts.port  # A port that is not a number raises here.
        except ValueError as exc:
            raise ConfigurationError(f"webhook-url {self.url!r} is not a URL: {exc}") from None
        if parts.scheme not in ("https", "http") or not host:
            raise ConfigurationError(f"webhook-url {self.url!r}: give an https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                "webhook-url carries a user name or password: the webhook secret file authenticates the node"
            )
        if parts.scheme == "http":
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host in _LOOPBACK_HOSTS
            if not loopback:
                raise ConfigurationError(
                    f"webhook-url {self.url!r} is plain http to {host}: alerts would cross the network "
                    "unencrypted; use https (plain http is for a receiver on this machine only)"
                )
        for name in ("max_attempts", "first_retry_seconds", "max_retry_seconds", "timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"webhook {name.replace('_', '-')} must be positive, got {getattr(self, name)}"
                )


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """How a member node tells its people about alerts: a webhook, a JSON Lines alert log, the console.

    Usage::

        NotifyConfig()                                   # the console only
        NotifyConfig(webhook=WebhookConfig(…))           # and a Standard Webhooks endpoint
        NotifyConfig(alert_log=Path("alerts.jsonl"))     # and one JSON line per alert (mode 0600)
        NotifyConfig(console=False, …)                   # not the console
        NotifyConfig(…, include_identifiers=True)        # webhook and log carry the full identifier

    By default no notice carries a raw identifier: the alert id, scope, kind, identifier type, the
    identifier masked to its last four characters, categories and holder count
    (``protocol.node_alerts.notice``). ``include_identifiers`` adds the normalized value to the
    webhook's and the log's notices (never the console's): only for a receiver the member
    controls. Each notifier has an outbox in the node's database, so a restart loses nothing.
    """

    webhook: WebhookConfig | None = None
    alert_log: Path | None = None
    console: bool = True
    include_identifiers: bool = False


# The member node's settings file -------------------------------------------------------------

# The keys of node.toml's [node] table: the node commands' option names, as written on the
# command line (tests/unit/test_node_file_keys.py holds them to the options). No other key is read.
NODE_FILE_KEYS = (
    "database",
    "member-id",
    "ca",
    "cert",
    "key",
    "coordinator",
    "custodian",
    "coordinator-key",
    "data-dir",
    "display-name",
    "share-name",
    "workers",
    "epoch-file",
    "verify",
    "inbox",
    "poll-every",
    "submit-every",
    "settle-seconds",
    "strict-inbox",
    "join-rounds",
    "webhook-url",
    "webhook-secret-file",
    "alert-log",
    "console-alerts",
    "include-identifiers",
)
# Keys of node.toml that hold a file or folder; relative ones are relative to the file's folder.
NODE_FILE_PATHS = (
    "ca",
    "cert",
    "key",
    "coordinator-key",
    "data-dir",
    "epoch-file",
    "inbox",
    "webhook-secret-file",
    "alert-log",
)
_SQLITE_FILE_URL = re.compile(r"(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>\?.*)?\Z", re.DOTALL)


def read_node_file(path: Path) -> dict[str, Any]:
    """The ``[node]`` table of a member node's settings file, with its relative paths resolved.

    Usage::

        read_node_file(Path("bank-a/node.toml"))
            # -> {"database": "sqlite:////srv/bank-a/bank-a.db", "member-id": "bank-a",
            #     "ca": "/srv/bank-a/ca.pem", ...}: keys as written, values as TOML gives them

    The paths of ``NODE_FILE_PATHS``, each custodian's ``ca`` (``{ name = …, ca = "c2.pem" }`` or
    ``"NAME@HOST:PORT,ca=c2.pem"``) and the file of a ``sqlite:///`` database URL are resolved
    against the folder that holds the file, not the current directory, so the file means the same
    whichever folder a command runs in. Other values are returned as they are; the CLI checks them.

    The file is read strictly: a key that is not one of ``NODE_FILE_KEYS`` (a typo, ``data_dir``
    for ``data-dir``) is refused rather than ignored, since an ignored path would be taken from
    elsewhere (a ``data_dir`` once made the node keep its secrets in the current directory). A
    UTF-8 byte order mark, as some Windows editors save, is accepted.

    Raises:
        ConfigurationError: the file cannot be read or is not TOML, it has no ``[node]`` table, it
            has a key outside ``NODE_FILE_KEYS`` (the message suggests the closest one) or outside
            the table, or a path or the database is not a string; the message names the file and
            the key.
    """
    import tomllib

    try:
        raw = path.read_bytes()
        # utf-8-sig: a leading byte order mark is not TOML, but some editors save one.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        utf16 = " (it starts with a UTF-16 byte order mark)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigurationError(f"{path} is not UTF-8 text{utf16}: save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    for key in data:
        if key != "node":
            hint = "; did you mean [node]?" if _closest(key, ("node",)) else ""
            raise ConfigurationError(
                f"{path}: unknown key {key!r} outside [node]: every setting goes in the [node] table{hint}"
            )
    table = data.get("node")
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path} has no [node] table")
    for key in table:
        if key not in NODE_FILE_KEYS:
            close = _closest(key, NODE_FILE_KEYS)
            hint = f"did you mean {close!r}?" if close else f"the keys are {', '.join(NODE_FILE_KEYS)}"
            raise ConfigurationError(f"{path}: unknown key {key!r} in [node]; {hint}")
    folder = path.expanduser().resolve().parent
    values = dict(table)
    for key in (*NODE_FILE_PATHS, "database"):
        if key in values and not isinstance(values[key], str):
            raise ConfigurationError(f"{path}: {key} must be a string, not {type(values[key]).__name__}")
    for key in NODE_FILE_PATHS:
        if key in values:
            values[key] = str(folder / Path(values[key]).expanduser())
    if "database" in values:
        values["database"] = resolve_database_url(values["database"], folder)
    if isinstance(values.get("custodian"), list):
        values["custodian"] = [_anchor_resolved(entry, folder) for entry in values["custodian"]]
    return values


def _closest(key: str, valid: tuple[str, ...]) -> str | None:
    """The valid key ``key`` most likely meant (``data-dir`` for ``data_dir`` or ``datadir``), or None."""
    import difflib

    hyphenated = key.lower().replace("_", "-")
    if hyphenated in valid:
        return hyphenated
    close = difflib.get_close_matches(hyphenated, valid, n=1)
    return close[0] if close else None


def _anchor_resolved(entry: Any, folder: Path) -> Any:
    """A custodian entry of node.toml with its ``ca`` file made absolute against ``folder``."""
    if isinstance(entry, dict) and isinstance(entry.get("ca"), str):
        return {**entry, "ca": str(folder / Path(entry["ca"]).expanduser())}
    if isinstance(entry, str):
        peer, options = peer_text_parts(entry)
        if options.get("ca"):
            return f"{peer},ca={folder / Path(options['ca']).expanduser()}"
    return entry


def resolve_database_url(url: str, folder: Path) -> str:
    """``url`` with a relative SQLite file path made absolute against ``folder``; other URLs unchanged.

    ``sqlite:///node.db`` names ``folder/node.db``; ``sqlite:////abs/node.db``, in-memory SQLite
    (``sqlite://``, ``sqlite:///:memory:``), ``file:`` URIs and PostgreSQL URLs are left as they are.
    """
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    found = _SQLITE_FILE_URL.match(url)
    assert found is not None  # sqlite_file matched it.
    return f"{found['scheme']}{folder / file}{found['query'] or ''}"


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///FILE`` URL names (relative as written, ``~`` expanded); None for any other URL.

    In-memory SQLite (``sqlite://``, ``sqlite:///:memory:``) and ``file:`` URIs name no file here.
    """
    found = _SQLITE_FILE_URL.match(url)
    if found is None or found["path"] in ("", ":memory:") or found["path"].startswith("file:"):
        return None
    return Path(found["path"]).expanduser()
