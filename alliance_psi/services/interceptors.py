"""The identity interceptor: every call is authenticated and authorized before its handler runs,
and before any of its requests is read or decoded.

The TLS handshake has already verified the peer's certificate against the alliance CA and its
validity dates (``services.tls``). This interceptor then, for every call:

1. reads the verified peer certificate from the call's auth context (none: UNAUTHENTICATED);
2. reads the identity ``urn:alliance-psi:<role>:<name>`` from it (missing or bad: UNAUTHENTICATED);
3. refuses a certificate whose serial the CRL lists (UNAUTHENTICATED, "certificate revoked");
4. refuses a method the policy does not name, or names without the caller's role
   (PERMISSION_DENIED). The gRPC health and reflection services are open to any authenticated peer;
5. runs the server's own ``PeerCheck``s (for example its enrolment list, which pins each member's
   public key), which refuse by raising ``NotAuthenticated`` or ``NotAuthorized``;
6. counts the call against the server's limits (``services.limits``; RESOURCE_EXHAUSTED).

Only then are the call's requests read, checked against the method's size limits and decoded
(``services.calls``). Handlers call ``identity_of(context)`` for the caller: identity is never
read from a request. Refusal messages name the reason and the method, never request data; every
refusal is logged and audited (``services.refusals``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from alliance_psi.errors import (
    CertificateRevoked,
    ConfigurationError,
    LimitExceeded,
    NotAuthenticated,
    NotAuthorized,
    RequestError,
)
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.protocol.wire import SMALL_REQUEST, WireLimit
from alliance_psi.services.calls import AdmittedCall, guarded_handler
from alliance_psi.services.limits import CallLimiter, IdleReaper
from alliance_psi.services.pki import identity_from_pem, serial_of, spki_sha256
from alliance_psi.services.refusals import Refusal, RefusalLog
from alliance_psi.services.status import abort, status_for

__all__ = [
    "OPEN_SERVICE_PREFIXES",
    "REFUSING_CODES",
    "IdentityInterceptor",
    "Peer",
    "PeerCheck",
    "identity_of",
    "peer_of",
]

# Services any authenticated peer may call, whatever the policy says.
OPEN_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_FULL_METHOD = re.compile(r"/[A-Za-z_][A-Za-z0-9_.]*/[A-Za-z_][A-Za-z0-9_]*")
_PEER_CERT_KEY = "x509_pem_cert"
_CACHED_PEERS = 1024
# Statuses that refuse a call rather than answer it; the refusal is logged and audited.
REFUSING_CODES = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


@dataclass(frozen=True, slots=True)
class Peer:
    """The verified caller: its identity, certificate serial and public-key pin.

    ``spki_sha256`` is SHA-256 over the certificate's DER SubjectPublicKeyInfo: what an
    enrolment list pins, so a certificate re-issued under the same name with another key (by
    whoever holds the CA) is a different peer.
    """

    identity: Identity
    serial: int
    spki_sha256: bytes

    @property
    def key(self) -> str:
        """``role:name``: what the server's per-peer limits count by."""
        return f"{self.identity.role.value}:{self.identity.name}"


# A server's own admission rule, run after revocation and the role policy: refuse by raising
# NotAuthenticated or NotAuthorized (the message crosses the network; never put request data in it).
PeerCheck = Callable[[Peer, str], None]


@functools.lru_cache(maxsize=_CACHED_PEERS)
def _peer_from_pem(cert_pem: bytes) -> Peer:
    """Parse a peer certificate once; calls on one connection present the same bytes."""
    return Peer(identity=identity_from_pem(cert_pem), serial=serial_of(cert_pem), spki_sha256=spki_sha256(cert_pem))


def peer_of(context: grpc.ServicerContext) -> Peer:
    """The caller of the current call, from its verified TLS certificate.

    Raises:
        NotAuthenticated: the call carries no certificate with an alliance identity.
    """
    certs = context.auth_context().get(_PEER_CERT_KEY)
    if not certs:
        raise NotAuthenticated("no client certificate")
    return _peer_from_pem(certs[0])


def identity_of(context: grpc.ServicerContext) -> Identity:
    """The caller of the current call, from its TLS certificate (never from the request).

    Call it in handlers behind ``IdentityInterceptor``, which has already refused revoked
    certificates and roles the policy does not allow.

    Raises:
        NotAuthenticated: the call carries no certificate with an alliance identity.
    """
    return peer_of(context).identity


class IdentityInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticate every call from its peer certificate, authorize it by role, then let it read
    and decode its requests within limits.

    ``policy`` maps full method names (``/alliance_psi.v1.Coordinator/CreateRound``) to the roles
    allowed to call them; a method it does not name is refused (fail closed). ``revoked_serials``
    holds the serials of the alliance CRL (a set, or a ``services.revocation.RevocationList``
    that reloads). ``checks`` run in order for every method outside ``OPEN_SERVICE_PREFIXES``.
    ``limiter`` bounds calls per peer and in total, ``reaper`` ends calls idle on their peer,
    ``refusals`` logs and audits refused calls, and ``request_limits`` bounds each method's
    requests (``SMALL_REQUEST`` for a method it does not name); each is optional.

    Raises:
        ConfigurationError: a policy key is not a full method name, or a role is unknown.
    """

    def __init__(
        self,
        policy: Mapping[str, frozenset[Role]],
        *,
        revoked_serials: Container[int] = frozenset(),
        checks: Sequence[PeerCheck] = (),
        limiter: CallLimiter | None = None,
        reaper: IdleReaper | None = None,
        refusals: RefusalLog | None = None,
        request_limits: Mapping[str, WireLimit] | None = None,
    ) -> None:
        self._policy = {method: _checked_roles(method, roles) for method, roles in policy.items()}
        self._revoked = revoked_serials
        self._checks = tuple(checks)
        self._limiter, self._reaper, self._refusals = limiter, reaper, refusals
        self._request_limits = dict(request_limits or {})

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # No such method: gRPC answers UNIMPLEMENTED.
        method = handler_call_details.method
        return guarded_handler(
            handler,
            method=method,
            admit=functools.partial(self._admit, method),
            limit=self._request_limits.get(method, SMALL_REQUEST),
        )

    def _admit(self, method: str, context: grpc.ServicerContext, streaming: bool) -> AdmittedCall:
        """Return the admitted call if the caller may call ``method``; otherwise abort (raises)."""
        try:
            peer = peer_of(context)
        except NotAuthenticated as exc:
            self._refuse(context, method, None, exc)
        if peer.serial in self._revoked:
            self._refuse(
                context, method, peer, CertificateRevoked("certificate revoked")
            )  # Typed: the client says what to do.
        if not method.startswith(OPEN_SERVICE_PREFIXES):
            self._authorize(method, context, peer)
        release = None
        if self._limiter is not None:
            try:
                release = self._limiter.acquire(peer.key, streaming=streaming)
            except LimitExceeded as exc:
                self._refuse(context, method, peer, exc)
        call = AdmittedCall(method, peer, functools.partial(self._ended, context, release))
        if self._reaper is not None:
            call.watch = self._reaper.watch(context, f"{method.rsplit('/', 1)[-1]} from {peer.key}")
        if not context.add_callback(call.end):
            call.end()  # The call is already over.
        return call

    def _authorize(self, method: str, context: grpc.ServicerContext, peer: Peer) -> None:
        short_name = method.rsplit("/", 1)[-1]
        allowed = self._policy.get(method)
        if allowed is None:
            self._refuse(context, method, peer, NotAuthorized(f"method {short_name} is not in the access policy"))
        if peer.identity.role not in allowed:
            self._refuse(
                context, method, peer, NotAuthorized(f"role {peer.identity.role.value} may not call {short_name}")
            )
        for check in self._checks:
            try:
                check(peer, method)
            except (NotAuthenticated, NotAuthorized) as exc:
                self._refuse(context, method, peer, exc)

    def _refuse(self, context: grpc.ServicerContext, method: str, peer: Peer | None, exc: RequestError) -> NoReturn:
        """Record the refusal, then end the call with the status of ``exc`` (never returns)."""
        code, reason = status_for(exc)
        self._record(method, peer, code, reason)
        abort(context, exc)

    def _ended(
        self,
        context: grpc.ServicerContext,
        release: Callable[[], None] | None,
        call: AdmittedCall,
        refused_request: RequestError | None,
    ) -> None:
        """When an admitted call is over: free its slot, and record it if it ended refused."""
        if release is not None:
            release()
        code, details = _final_status(context)
        if refused_request is not None or code in REFUSING_CODES:
            self._record(call.method, call.peer, code or grpc.StatusCode.UNKNOWN, details)

    def _record(self, method: str, peer: Peer | None, code: grpc.StatusCode, reason: str) -> None:
        if self._refusals is not None:
            self._refusals.record(Refusal(method, code, reason, peer))


def _final_status(context: grpc.ServicerContext) -> tuple[grpc.StatusCode | None, str]:
    """The status code and details a call ended with (grpcio has ``code()`` and ``details()`` on
    its servicer context since 1.38; the type stubs lack them)."""
    code = getattr(context, "code", lambda: None)()
    details = getattr(context, "details", lambda: b"")()
    text = details.decode("utf-8", "replace") if isinstance(details, bytes) else str(details or "")
    return (code if isinstance(code, grpc.StatusCode) else None), text


def _checked_roles(method: str, roles: frozenset[Role]) -> frozenset[Role]:
    if _FULL_METHOD.fullmatch(method) is None:
        raise ConfigurationError(f"access policy key {method!r} is not a full method name like /pkg.Service/Method")
    try:
        return frozenset(Role(role) for role in roles)
    except ValueError as exc:
        raise ConfigurationError(f"access policy for {method}: {exc}") from None
