"""The identity interceptor: every call is authenticated and authorized before its handler runs,
and before any of its requests is read or decoded.

The TLS handshake has already verified the peer's certificate against the alliance CA and its
validity dates (``services.tls``). This interceptor then, for every call:

1. reads the verified peer certificate from the call's auth context (none: UNAUTHENTICATED);
2. reads the identity ``urn:alliance-psi:<role>:<name>`` from it (missing or bad: UNAUTHENTICATED);
3. refuses a certificate whose serial the CRL lists (UNAUTHENTICATED, "certificate revoked");
4. refuses a method the policy does not name, or names without the caller's role
   (PERMISSION_DENIED);
5. runs the server's own ``PeerCheck``s (for example its enrolment list, which pins each member's
   public key), which refuse by raising ``NotAuthenticated`` or ``NotAuthorized``;
6. counts the call against the server's limits (``services.limits``; RESOURCE_EXHAUSTED).

The gRPC health and reflection services (``OPEN_SERVICE_PREFIXES``) are served to the parties
this server serves, and to the server's own identity with its own key (``monitor``: a probe run
with the server's own certificate, as Kubernetes or an operator's monitoring would), nobody else:
step 4 asks for a role that may call some method of the server instead of the method's own
roles, and step 5 runs all the same, so a certificate the CA issued to a name no server enrolled
is refused here as everywhere. Their calls count against a limiter of their own
(``open_limiter``), so health and reflection traffic never takes a slot of the server's own calls.

Only then are the call's requests read, checked against the method's size limits and decoded
(``services.calls``). Every further message of the call re-runs steps 3 to 5 (answered from
memory), and the idle reaper re-runs them on every open call about once a second
(``IdleReaper.end_fallen``): a revocation or an enrolment removal ends the streams already open.
Handlers call ``identity_of(context)`` for the caller: identity is never read from a request.
Refusal messages name the reason and the method, never request data; every refusal is logged and
audited (``services.refusals``).
"""

from __future__ import annotations

import functools
import hmac
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
    "peer_from_pem",
    "peer_of",
]

# Services any party this server serves may call (and the server's own identity), whatever the
# method policy says.
OPEN_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# Server streams that wait for events to report: the wait counts as idle, so a watch is bounded.
_WATCHES = frozenset({"/grpc.health.v1.Health/Watch"})
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
def peer_from_pem(cert_pem: bytes) -> Peer:
    """The ``Peer`` a certificate (PEM) makes; each is parsed once, as calls on one connection
    present the same bytes.

    Raises:
        NotAuthenticated: no alliance identity in the certificate.
    """
    return Peer(identity=identity_from_pem(cert_pem), serial=serial_of(cert_pem), spki_sha256=spki_sha256(cert_pem))


def peer_of(context: grpc.ServicerContext) -> Peer:
    """The caller of the current call, from its verified TLS certificate.

    Raises:
        NotAuthenticated: the call carries no certificate with an alliance identity.
    """
    certs = context.auth_context().get(_PEER_CERT_KEY)
    if not certs:
        raise NotAuthenticated("no client certificate")
    return peer_from_pem(certs[0])


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
    that reloads). ``checks`` run in order for every call, ``monitor`` excepted (the server's own
    peer, admitted to ``OPEN_SERVICE_PREFIXES`` only). ``limiter`` bounds calls per peer and in
    total, ``open_limiter`` likewise the calls of the open services apart from the others,
    ``reaper`` ends calls idle on their peer and calls whose peer no longer stands, ``refusals``
    logs and audits refused calls, and ``request_limits`` bounds each method's requests
    (``SMALL_REQUEST`` for a method it does not name); each is optional.

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
        open_limiter: CallLimiter | None = None,
        reaper: IdleReaper | None = None,
        refusals: RefusalLog | None = None,
        request_limits: Mapping[str, WireLimit] | None = None,
        monitor: Peer | None = None,
    ) -> None:
        self._policy = {method: _checked_roles(method, roles) for method, roles in policy.items()}
        self._served_roles = frozenset().union(*self._policy.values())
        self._revoked = revoked_serials
        self._checks = tuple(checks)
        self._limiter, self._open_limiter = limiter, open_limiter
        self._reaper, self._refusals, self._monitor = reaper, refusals, monitor
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
        try:
            self._check(method, peer)
        except RequestError as exc:
            self._refuse(context, method, peer, exc)
        open_service = method.startswith(OPEN_SERVICE_PREFIXES)
        limiter = self._open_limiter if open_service else self._limiter
        release = None
        if limiter is not None:
            try:
                release = limiter.acquire(peer.key, streaming=streaming)
            except LimitExceeded as exc:
                self._refuse(context, method, peer, exc)
        recheck = functools.partial(self._check, method, peer)
        call = AdmittedCall(
            method,
            peer,
            functools.partial(self._ended, context, release),
            recheck=recheck,
            producing_waits=method in _WATCHES,
        )
        if self._reaper is not None:
            idle = None
            if call.producing_waits:
                idle = f"the server ends a watch after {self._reaper.idle_seconds:g} s without a change; watch again"
            call.watch = self._reaper.watch(
                context,
                f"{method.rsplit('/', 1)[-1]} from {peer.key}",
                standing=functools.partial(self._still_stands, method, peer),
                idle_message=idle,
            )
        if not context.add_callback(call.end):
            call.end()  # The call is already over.
        return call

    def _check(self, method: str, peer: Peer) -> None:
        """Raise the ``RequestError`` that refuses ``peer`` calling ``method`` now, if any.

        Answered from memory (the CRL's serials, the policy, the checks' cached lists): the
        admission of a call, and again every further message of it.
        """
        if peer.serial in self._revoked:
            raise CertificateRevoked("certificate revoked")  # Typed: the client says what to do.
        short_name = method.rsplit("/", 1)[-1]
        if method.startswith(OPEN_SERVICE_PREFIXES):
            if self._is_monitor(peer):
                return
            allowed = self._served_roles
        else:
            found = self._policy.get(method)
            if found is None:
                raise NotAuthorized(f"method {short_name} is not in the access policy")
            allowed = found
        if peer.identity.role not in allowed:
            raise NotAuthorized(f"role {peer.identity.role.value} may not call {short_name}")
        for check in self._checks:
            check(peer, method)

    def _is_monitor(self, peer: Peer) -> bool:
        monitor = self._monitor
        return (
            monitor is not None
            and peer.identity == monitor.identity
            and hmac.compare_digest(peer.spki_sha256, monitor.spki_sha256)
        )

    def _still_stands(self, method: str, peer: Peer) -> None:
        """``_check`` for the reaper's sweep of open calls: a refusal found there is recorded here."""
        try:
            self._check(method, peer)
        except RequestError as exc:
            code, reason = status_for(exc)
            self._record(method, peer, code, reason)
            raise

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
