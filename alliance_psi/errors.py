"""The one exception tree of alliance-psi.

Our exception hierarchy::

    AlliancePsiError
    ├── InvalidIdentifier       a raw identifier failed normalization (row, field, type, reason)
    ├── ImportFileError         a blacklist file that cannot be read as a whole (format, encoding, header)
    ├── CryptoError
    │   ├── MalformedElement    bytes that are not a canonical, non-identity group element
    │   ├── MalformedScalar     bytes that are not a canonical, non-zero scalar
    │   ├── InvalidLabel        a sealed label failed to open (every cause, one error)
    │   ├── LabelTooLarge       a label plaintext does not fit the fixed padded size
    │   ├── InvalidProof        a Merkle inclusion or consistency proof, or a DLEQ proof, did not verify
    │   ├── InvalidShare        a secret share that does not match its dealer's public commitments
    │   │   └── InvalidSealedShare  a sealed key-ceremony share that does not open (every cause, one error)
    │   └── InvalidSignature    a signature did not verify
    │       ├── ReportMismatch  a lead report that does not match its signed evidence
    │       ├── ResultMismatch  a result whose leaves or log entry do not match its signed header
    │       └── LogInconsistent the coordinator's audit log contradicts a checkpoint it signed
    ├── ConfigurationError      a suite, key share, certificate, key file or option that cannot be used
    ├── RequestError            a request a peer sent that cannot be served (crosses the network)
    │   ├── InvalidRequest      a malformed or out-of-range field          → INVALID_ARGUMENT
    │   ├── NotAuthenticated    no, foreign, revoked or unparsable cert    → UNAUTHENTICATED
    │   │   └── CertificateRevoked  the alliance CRL lists the caller's certificate → UNAUTHENTICATED
    │   ├── NotAuthorized       authenticated, but not allowed to do this  → PERMISSION_DENIED
    │   ├── NotFound            no such round, result or submission        → NOT_FOUND
    │   ├── LimitExceeded       over a server limit (size, calls, items)   → RESOURCE_EXHAUSTED
    │   │   └── QuotaExceeded   the member's evaluation quota is spent     → RESOURCE_EXHAUSTED
    │   ├── RoundClosed         the round no longer takes submissions      → FAILED_PRECONDITION
    │   ├── WrongEpoch          a request for another key epoch            → FAILED_PRECONDITION
    │   ├── CeremonyMismatch    a key-ceremony message of another ceremony → FAILED_PRECONDITION
    │   └── Conflict            a chunk or commit that contradicts a stored one → ALREADY_EXISTS
    │       └── SetMismatch     the commit's expected set is not the one the coordinator holds → ABORTED
    ├── CeremonyFailed          a key ceremony that stopped without a key (names who and why)
    ├── NotificationFailed      a member node's notifier could not deliver an alert notice (retried)
    ├── PeerUnavailable         a custodian or coordinator cannot be reached (client side)
    │   └── HandshakeFailed     what answers there is not the configured server (or refuses us)
    └── StorageError
        └── AuditLogBroken      the hash chain does not verify (names the first bad entry)

Every error alliance-psi raises on purpose is in this module (a test walks the package for
subclasses defined elsewhere), and ``services.status`` maps each class to one gRPC status. Context
is keyword-only. Messages never contain a raw identifier in full: ``InvalidIdentifier``
shows at most a truncated prefix, and it is an error of the member node, which must not send it
over the network (the gRPC status mapping replaces its text).
"""

from __future__ import annotations

__all__ = [
    "AlliancePsiError",
    "AuditLogBroken",
    "CeremonyFailed",
    "CeremonyMismatch",
    "CertificateRevoked",
    "ConfigurationError",
    "Conflict",
    "CryptoError",
    "HandshakeFailed",
    "ImportFileError",
    "InvalidIdentifier",
    "InvalidLabel",
    "InvalidProof",
    "InvalidRequest",
    "InvalidSealedShare",
    "InvalidShare",
    "InvalidSignature",
    "LabelTooLarge",
    "LimitExceeded",
    "LogInconsistent",
    "MalformedElement",
    "MalformedScalar",
    "NotAuthenticated",
    "NotAuthorized",
    "NotFound",
    "NotificationFailed",
    "PeerUnavailable",
    "QuotaExceeded",
    "ReportMismatch",
    "RequestError",
    "ResultMismatch",
    "RoundClosed",
    "ServerBusy",
    "SetMismatch",
    "StorageError",
    "WrongEpoch",
    "truncate_value",
]

_SHOWN_CHARS = 6


def truncate_value(value: str, shown: int = _SHOWN_CHARS) -> str:
    """Return a prefix of ``value`` fit for a local error message: enough to find the row, not the value."""
    value = value.replace("\n", " ").replace("\r", " ")
    if len(value) <= shown:
        return value
    return value[:shown] + "…"


class AlliancePsiError(Exception):
    """Base of every error alliance-psi raises on purpose."""


class InvalidIdentifier(AlliancePsiError, ValueError):
    """A raw identifier could not be normalized.

    ``row`` (1-based line of the source file) and ``field`` are set by importers; ``type`` and
    ``reason`` by the normalizer. The value appears only truncated.
    """

    def __init__(
        self,
        reason: str,
        *,
        type: str,
        value: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.type = type
        self.value_hint = truncate_value(value) if value is not None else None
        self.row = row
        self.field = field
        super().__init__(self._message())

    def at(self, *, row: int | None = None, field: str | None = None) -> InvalidIdentifier:
        """Return a copy that also names where the value came from."""
        located = InvalidIdentifier.__new__(InvalidIdentifier)
        located.reason, located.type, located.value_hint = self.reason, self.type, self.value_hint
        located.row = row if row is not None else self.row
        located.field = field if field is not None else self.field
        Exception.__init__(located, located._message())
        return located

    def _message(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        shown = f" {self.value_hint!r}" if self.value_hint else ""
        return f"{prefix}invalid {self.type}{shown}: {self.reason}"


class ImportFileError(AlliancePsiError):
    """The file as a whole cannot be read: unreadable, wrong format or encoding, or a header
    without a required column. Names the file; shows no identifier beyond a truncated prefix."""


class CryptoError(AlliancePsiError):
    """A cryptographic input or check failed."""


class MalformedElement(CryptoError, ValueError):
    """Bytes that do not encode a canonical, non-identity element of the suite's group."""


class MalformedScalar(CryptoError, ValueError):
    """Bytes that do not encode a canonical, non-zero scalar of the suite's group."""


class InvalidLabel(CryptoError):
    """A sealed label could not be opened.

    Raised for every cause (wrong key, wrong context, tampering, bad padding, bad version), with
    the same message, so the holder of a sealed label learns nothing about which check failed.
    """

    def __init__(self) -> None:
        super().__init__("sealed label could not be opened")


class LabelTooLarge(CryptoError, ValueError):
    """A label plaintext does not fit the fixed padded size (an error of the sealing member)."""


class InvalidProof(CryptoError):
    """A Merkle inclusion or consistency proof (RFC 9162, section 2.1) or a custodian's DLEQ proof
    (RFC 9497, section 2.2) did not verify."""


class InvalidShare(CryptoError):
    """A secret share that does not match its dealer's public commitments (key generation)."""


class InvalidSealedShare(InvalidShare):
    """A key-ceremony share sealed to this custodian (``crypto.sealed_shares``) could not be opened.

    Raised for every cause (sealed to another key, for another ceremony, dealer, receiver or
    round-1 message, damaged, truncated, or not a share once opened) with the same message, naming
    the dealer only, so that the dealer learns nothing about which check failed.
    """

    def __init__(self, *, dealer: str) -> None:
        self.dealer = dealer
        super().__init__(
            f"the share custodian {dealer} sealed to this custodian does not open with this custodian's certificate key"
        )


class InvalidSignature(CryptoError):
    """A signature did not verify against the expected public key."""


class ReportMismatch(InvalidSignature):
    """A report that does not match its signed evidence, or cannot be checked; the message says what."""


class ResultMismatch(InvalidSignature):
    """A result whose leaves, or whose audit-log entry, do not add up to its signed header.

    The member refuses the whole result and keeps nothing of it.
    """


class LogInconsistent(InvalidSignature):
    """The coordinator's audit log contradicts a checkpoint it signed earlier (rewritten, truncated
    or forked). ``evidence``, when set, holds the signed documents that show it to an outsider
    (a ``protocol.checkpoints.Evidence``)."""

    def __init__(self, message: str, *, evidence: object | None = None) -> None:
        self.evidence = evidence
        super().__init__(message)


class ConfigurationError(AlliancePsiError, ValueError):
    """A configuration value (suite, key share, option) that cannot be used."""


class RequestError(AlliancePsiError):
    """A peer's request that cannot be served. Its message crosses the network: never put an
    identifier, a label or a secret in it."""


class InvalidRequest(RequestError, ValueError):
    """A malformed or out-of-range request field."""


class NotAuthenticated(RequestError):
    """The peer presented no usable certificate of the alliance CA (or a revoked one)."""


class CertificateRevoked(NotAuthenticated):
    """The alliance CA revoked the peer's certificate (its CRL lists the serial)."""


class NotAuthorized(RequestError):
    """The peer is authenticated but its role or identity does not allow this."""


class NotFound(RequestError):
    """No such round, submission or result (for this peer)."""


class LimitExceeded(RequestError):
    """A request over one of the server's limits: message size, concurrent calls, calls per
    second, items per round or per set. The message names the limit."""


class ServerBusy(LimitExceeded):
    """A call refused by a server's admission limits (its calls in progress, a peer's calls or
    streams in progress, a peer's calls per second): nothing was done, and the same call may
    succeed a moment later, so clients retry it with back-off."""


class QuotaExceeded(LimitExceeded):
    """The member's evaluation quota for the key epoch would be exceeded."""

    def __init__(self, message: str, *, member_id: str, quota: int, used: int, requested: int) -> None:
        self.member_id, self.quota, self.used, self.requested = member_id, quota, used, requested
        super().__init__(message)


class RoundClosed(RequestError):
    """The round is past the state that allows this request (for example, submitting when closed)."""


class WrongEpoch(RequestError):
    """The request names a key epoch this party does not serve."""


class CeremonyMismatch(RequestError):
    """A key-ceremony message for another ceremony: another epoch, threshold or set of custodians."""


class Conflict(RequestError):
    """The request contradicts what is already stored (a chunk resent with other content, a second commit)."""


class SetMismatch(Conflict):
    """A commit expects a member set other than the one its delta would leave at the coordinator."""


class CeremonyFailed(AlliancePsiError):
    """A key ceremony stopped without a key: a custodian missing, views that differ, too many faults.
    The message names the custodians concerned; no custodian keeps a share of a failed ceremony."""


class NotificationFailed(AlliancePsiError):
    """A member node's notifier could not deliver an alert notice: the webhook did not answer or
    refused it, or the alert log could not be written. The message says why and names no
    identifier; the outbox retries it, then keeps it as a dead letter."""


class PeerUnavailable(AlliancePsiError):
    """A custodian or the coordinator could not be reached after retries (raised on the client side)."""


class HandshakeFailed(PeerUnavailable):
    """The TLS handshake with a custodian or the coordinator failed in a way retrying cannot fix:
    the server there is another party, its certificate is of another CA, expired or for clients
    only (raised on the client side; the message names the cause and the fix)."""


class StorageError(AlliancePsiError):
    """The database refused or lost something."""


class AuditLogBroken(StorageError):
    """The audit log's hash chain does not verify; ``seq`` is the first entry that fails."""

    def __init__(self, message: str, *, seq: int) -> None:
        self.seq = seq
        super().__init__(message)
