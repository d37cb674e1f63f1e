"""The identity interceptor: every call is authenticated and authorized before its handler runs.

The TLS handshake has already verified the peer's certificate against the alliance CA and its
validity dates (``services.tls``). This interceptor then, for every call:

1. reads the verified peer certificate from the call's auth context (none: UNAUTHENTICATED);
2. reads the identity ``urn:alliance-psi:<role>:<name>`` from it (missing or bad: UNAUTHENTICATED);
3. refuses a certificate whose serial the CRL lists (UNAUTHENTICATED, "certificate revoked");
4. refuses a method the policy does not name, or names without the caller's role
   (PERMISSION_DENIED). The gRPC health and reflection services are open to any authenticated peer;
5. runs the server's own ``PeerCheck``s (for example its enrolment list, which pins each member's
   public key), which refuse by raising ``NotAuthenticated`` or ``NotAuthorized``.

Handlers then call ``identity_of(context)`` for the caller: identity is never read from a request.
Refusal messages name the reason and the method, never request data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from alliance_psi.errors import CertificateRevoked, ConfigurationError, NotAuthenticated, NotAuthorized
from alliance_psi.protocol.model import Identity, Role
from alliance_psi.services.pki import identity_from_pem, serial_of, spki_sha256
from alliance_psi.services.status import abort

__all__ = ["OPEN_SERVICE_PREFIXES", "IdentityInterceptor", "Peer", "PeerCheck", "identity_of", "peer_of"]

# Services any authenticated peer may call, whatever the policy says.
OPEN_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_FULL_METHOD = re.compile(r"/[A-Za-z_][A-Za-z0-9_.]*/[A-Za-z_][A-Za-z0-9_]*")
_PEER_CERT_KEY = "x509_pem_cert"
_CACHED_PEERS = 1024

Behavior = Callable[[Any, grpc.ServicerContext], Any]

# Each kind of handler: which attribute holds its behavior, and how to build one of that kind.
_HANDLER_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


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
    """Authenticate every call from its peer certificate and authorize it by role.

    ``policy`` maps full method names (``/alliance_psi.v1.Coordinator/CreateRound``) to the roles
    allowed to call them; a method it does not name is refused (fail closed). ``revoked_serials``
    are the serials of the alliance CRL (``services.tls.revoked_serials``). ``checks`` run last, in
    order, for every method outside ``OPEN_SERVICE_PREFIXES``.

    Raises:
        ConfigurationError: a policy key is not a full method name, or a role is unknown.
    """

    def __init__(
        self,
        policy: Mapping[str, frozenset[Role]],
        *,
        revoked_serials: frozenset[int] = frozenset(),
        checks: Sequence[PeerCheck] = (),
    ) -> None:
        self._policy = {method: _checked_roles(method, roles) for method, roles in policy.items()}
        self._revoked = frozenset(revoked_serials)
        self._checks = tuple(checks)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # No such method: gRPC answers UNIMPLEMENTED.
        return _guarded(handler, functools.partial(self._admit, handler_call_details.method))

    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        """Return if the caller may call ``method``; otherwise abort the call (which raises)."""
        try:
            peer = peer_of(context)
        except NotAuthenticated as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if peer.serial in self._revoked:
            abort(context, CertificateRevoked("certificate revoked"))  # Typed, so the client can say what to do.
        if method.startswith(OPEN_SERVICE_PREFIXES):
            return
        short_name = method.rsplit("/", 1)[-1]
        allowed = self._policy.get(method)
        if allowed is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"method {short_name} is not in the access policy")
        if peer.identity.role not in allowed:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"role {peer.identity.role.value} may not call {short_name}"
            )
        for check in self._checks:
            try:
                check(peer, method)
            except NotAuthenticated as exc:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            except NotAuthorized as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))


def _checked_roles(method: str, roles: frozenset[Role]) -> frozenset[Role]:
    if _FULL_METHOD.fullmatch(method) is None:
        raise ConfigurationError(f"access policy key {method!r} is not a full method name like /pkg.Service/Method")
    try:
        return frozenset(Role(role) for role in roles)
    except ValueError as exc:
        raise ConfigurationError(f"access policy for {method}: {exc}") from None


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any], admit: Callable[[grpc.ServicerContext], None]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind that runs ``admit`` before the real behavior sees the call."""
    attribute, make = _HANDLER_KINDS[(bool(handler.request_streaming), bool(handler.response_streaming))]
    behavior: Behavior = getattr(handler, attribute)

    def guarded(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        admit(context)
        return behavior(request_or_iterator, context)

    return make(
        guarded,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
