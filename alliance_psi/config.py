"""Typed configuration, one frozen dataclass per concern (STYLE guideline 11).

Only ``alliance_psi.cli`` builds these, from options, files and the environment; library code takes
them as arguments and never reads ``os.environ``. Each class documents its usage in a table.

Sections, in order: TLS, then the per-role configs (custodian, coordinator, member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alliance_psi.defaults import (
    BATCH_SIZE,
    CHUNK_SIZE,
    ENROLMENT_REFRESH_SECONDS,
    QUOTA_PER_MEMBER,
    TICK_SECONDS,
)
from alliance_psi.errors import ConfigurationError

__all__ = [
    "CoordinatorConfig",
    "CustodianConfig",
    "MemberConfig",
    "PeerEndpoint",
    "TlsConfig",
    "TlsMaterial",
]


_PEM_MARKER = b"-----BEGIN "


# TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes a party needs for mutual TLS, as read from disk.

    ``key`` is the party's private key: it never leaves the process and its ``repr`` never shows it.
    ``crl`` is the alliance CA's revocation list, which servers use to refuse revoked peers.
    """

    ca_cert: bytes
    cert: bytes
    key: bytes = field(repr=False)
    crl: bytes | None = None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Where a party's mutual-TLS files are. Every party (member, custodian, coordinator) has one.

    Usage::

        TlsConfig(ca_cert=Path("pki/ca.pem"), cert=Path("pki/bank-a.pem"), key=Path("pki/bank-a.key"))
                                        # A member node: trusts only the alliance CA, proves it is bank-a.
        TlsConfig(ca_cert=…, cert=…, key=…, crl=Path("pki/crl.pem"))
                                        # A server that also refuses the certificates the CRL lists.
        TlsConfig(…).load()             # -> TlsMaterial with the bytes; raises ConfigurationError
                                        #    naming the option and the file that is missing or unreadable.
        load_tls(TlsConfig(…), role=Role.CUSTODIAN, name="custodian-1")
                                        # services.cert_checks: read and check (key, CA, validity, identity).

    ``cert`` and ``key`` are written by ``alliance-psi pki issue``; ``ca.pem`` and ``crl.pem`` by
    ``alliance-psi pki init-ca`` and ``alliance-psi pki revoke``.
    """

    ca_cert: Path
    cert: Path
    key: Path
    crl: Path | None = None

    def load(self) -> TlsMaterial:
        """Read every file now, so a bad path fails at start-up rather than at the first handshake.

        Commands use ``services.cert_checks.load_tls``, which also checks what the files hold.

        Raises:
            ConfigurationError: a file is missing, unreadable or not PEM; the message names the
                option (``ca_cert``, ``cert``, ``key``, ``crl``) and the path.
        """
        return TlsMaterial(
            ca_cert=_read_pem("ca_cert", self.ca_cert),
            cert=_read_pem("cert", self.cert),
            key=_read_pem("key", self.key),
            crl=_read_pem("crl", self.crl) if self.crl is not None else None,
        )


def _read_pem(option: str, path: Path) -> bytes:
    """Read one PEM file for TLS option ``option``, or raise naming the option and the path."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"TLS option {option!r}: file not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"TLS option {option!r}: cannot read {path}: {exc.strerror}") from None
    if _PEM_MARKER not in data:
        raise ConfigurationError(f"TLS option {option!r}: {path} is not a PEM file")
    return data


@dataclass(frozen=True, slots=True)
class PeerEndpoint:
    """A server a client dials: the name its certificate must carry, and where it listens.

    Usage::

        PeerEndpoint(name="custodian-1", address="127.0.0.1:7101")
                                        # Dial 127.0.0.1:7101; accept only custodian-1's certificate.
        PeerEndpoint(name="coordinator", address="coord.example:7100")

    The address only says where to connect; who answers is checked by name (with the role the
    client expects), so a wrong address fails the handshake instead of reaching another party.
    ``cli`` parses ``NAME@HOST:PORT`` and TOML tables into these.
    """

    name: str
    address: str


# Roles ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustodianConfig:
    """A key custodian.

    Usage::

        CustodianConfig(name="custodian-1", listen="127.0.0.1:7101", tls=TlsConfig(…),
                        key_share=Path("custodian/epoch-2026q4.share"),
                        database="sqlite:///custodian/quota.db",
                        quota_per_member=2_000_000)   # default elements per member per epoch
        CustodianConfig(…, enrolment_refresh_seconds=1.0)    # how stale the enrolment list may be

    The key share file is written by ``alliance-psi custodian init-share``; keep it 0600 and
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


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """The alliance operator's coordinator.

    Usage::

        CoordinatorConfig(name="coordinator", listen="127.0.0.1:7100", tls=TlsConfig(…),
                          signing_key=Path("coordinator/signing.key"),   # Ed25519, signs results
                          database="sqlite:///coordinator/coordinator.db")  # or postgresql+psycopg://…
        CoordinatorConfig(…, tick_seconds=0.5)   # how often deadlines and pending matches are checked
        CoordinatorConfig(…, enrolment_refresh_seconds=1.0)  # how stale the enrolment list may be

    Only members and admins enrolled in ``database`` by the coordinator's operator
    (``alliance-psi coordinator member add`` / ``admin add``) are served.
    """

    name: str
    listen: str
    tls: TlsConfig
    signing_key: Path
    database: str
    tick_seconds: float = TICK_SECONDS
    enrolment_refresh_seconds: float = ENROLMENT_REFRESH_SECONDS


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
        MemberConfig(…, display_name="某某银行")      # named in shared labels; None stays anonymous
        MemberConfig(…, workers=2, batch_size=1024)  # crypto processes and identifiers per batch

    ``member_id`` must equal the name in the node's certificate; the coordinator and custodians
    identify the node by its certificate alone, and the node accepts only the coordinator and the
    custodians named here (by their certificates). A custodian's key-share commitment is not pinned
    yet: custodians publish none until threshold custody adds them.
    """

    member_id: str
    database: str
    tls: TlsConfig
    coordinator: PeerEndpoint
    custodians: tuple[PeerEndpoint, ...]
    coordinator_public_key: Path
    data_dir: Path
    display_name: str | None = None
    workers: int | None = None
    batch_size: int = BATCH_SIZE
    chunk_size: int = CHUNK_SIZE
