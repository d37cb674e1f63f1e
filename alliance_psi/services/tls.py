"""Mutual-TLS credentials for every alliance gRPC server and channel.

Both sides trust only the alliance CA (never the system roots) and both present a certificate:
servers require and verify the client's certificate during the handshake, so a peer without a
certificate of the alliance CA, or with an expired one, never reaches a handler. Revocation is
checked after the handshake by ``services.interceptors.IdentityInterceptor`` (gRPC's Python API
cannot load a CRL), with the serials from ``revoked_serials``.

Clients pin each server's role and name. ``secure_channel`` takes the identity the server must
have (``Identity(name="custodian-1", role=Role.CUSTODIAN)``) and sets gRPC's
``grpc.ssl_target_name_override`` to its identity name, ``custodian-1.custodian.alliance-psi.internal``
(``pki.identity_dns_name``), which only that party's certificate carries. The handshake itself
then refuses any other certificate of the CA: another custodian's, the coordinator's, a member's
(no identity name, and no serverAuth usage either). Which address was dialed no longer matters,
so ``127.0.0.1`` reaches a server whose certificate was issued for ``coord.example``.

Why the TLS name, and not another check:

- gRPC Python has no client-side callback to inspect the server's certificate, and a client call
  has no auth context, so a check after the handshake is not available;
- a second, separate handshake (Python ``ssl``) to look at the certificate is a different
  connection: a server could answer it correctly and the real one falsely, and gRPC reconnects
  on its own. It is only used to *explain* a failure (``services.tls_diagnosis``);
- asking the server who it is over RPC proves nothing;
- a CA per role would separate roles but not custodian-1 from custodian-2;
- the name override is checked in the handshake of every connection and reconnection of the
  channel, costs nothing, and fails closed. gRPC core's header says the option "should be used
  for testing only", since it usually papers over a host-name mismatch; here it replaces the host
  name with a stronger name to check, the identity, which the CA puts only in that party's
  certificate (``pki.issue`` refuses any other name under ``alliance-psi.internal``).

The name override also sets TLS SNI and the default ``:authority`` to the identity name; servers
ignore both. A custodian's public commitment to its key share is not pinned: custodians publish
none today; threshold custody (Pedersen VSS) adds commitments, and with them that pin.

Whoever holds the alliance CA can mint a certificate under any name: pinning names stops mistakes
and other parties, not the CA holder (enrolment lists pin members' keys for that). Against the CA
holder posing as an independent custodian, a channel may trust another anchor instead of the
alliance CA: that custodian's own CA (``services.anchors``), given to ``secure_channel`` as
``anchor``. gRPC's ``root_certificates`` are per channel credentials, so the handshake of that
channel, and only that one, refuses every certificate the alliance CA issued. Servers keep
verifying their clients against the alliance CA whatever CA issued their own certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from alliance_psi.config import ServerLimits, TlsMaterial
from alliance_psi.protocol.messages import CHUNK_REQUEST, EVALUATE_REQUEST
from alliance_psi.protocol.model import Identity
from alliance_psi.protocol.wire import SMALL_REQUEST
from alliance_psi.services.anchors import TrustAnchor
from alliance_psi.services.cert_checks import check_server_certificate
from alliance_psi.services.pki import identity_dns_name, load_crl_serials

__all__ = [
    "CHANNEL_OPTIONS",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "SERVER_OPTIONS",
    "channel_credentials",
    "revoked_serials",
    "secure_channel",
    "server_credentials",
    "server_options",
]

# The largest legal request (a full submission chunk, about 2.7 MB): servers receive and clients
# send nothing larger. Each method's own limit (``protocol.wire.WireLimit``) is checked as well.
MAX_REQUEST_BYTES = max(CHUNK_REQUEST.max_bytes, EVALUATE_REQUEST.max_bytes, SMALL_REQUEST.max_bytes)
# The largest response message. GetResult streams a result as its header and then pages of at most
# ``result_codec.PAGE_BYTES`` of leaves (one leaf alone if larger), so this bounds one leaf, not a result.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

# Clients ping every 30 s during calls (not when idle) so a dead peer is noticed within 40 s,
# even on a long submission stream behind a NAT that forgets quiet connections.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_REQUEST_BYTES),
    ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)
# Servers accept those pings (the default would answer them with GOAWAY "too_many_pings") but no
# more often than every 20 s (a third ping too early closes the connection), ping their own peers
# every 60 s and drop one that does not answer within 20 s, and never share a port with another
# process (``so_reuseport`` off: a second server on the port fails to start).
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    ("grpc.http2.min_ping_interval_without_data_ms", 20000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.keepalive_time_ms", 60000),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.so_reuseport", 0),
)
# HTTP/2 streams one connection may hold open; per-peer call limits answer well before this.
_STREAMS_PER_CONNECTION = 100


def server_options(limits: ServerLimits) -> list[tuple[str, Any]]:
    """``SERVER_OPTIONS`` plus the connection limits of ``limits`` (idle, age, grace)."""
    return [
        *SERVER_OPTIONS,
        ("grpc.max_concurrent_streams", _STREAMS_PER_CONNECTION),
        ("grpc.max_connection_idle_ms", int(limits.connection_idle_seconds * 1000)),
        ("grpc.max_connection_age_ms", int(limits.connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(limits.connection_age_grace_seconds * 1000)),
    ]


def server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by the alliance CA.

    The handshake fails (the client sees UNAVAILABLE) for no certificate, a certificate of another
    CA, or an expired one. Revoked certificates are refused by the identity interceptor. The
    server's own certificate may come from another CA (``material.own_ca``, an independent
    custodian's): clients are still verified against ``material.ca_cert`` only.

    Raises:
        ConfigurationError: the server's own certificate would be refused by every client (one for
            clients only, or without its identity name), so the server does not start.
    """
    check_server_certificate(material.cert)
    return grpc.ssl_server_credentials(
        [(material.key, material.cert)],
        root_certificates=material.ca_cert,
        require_client_auth=True,
    )


def channel_credentials(material: TlsMaterial, anchor: TrustAnchor | None = None) -> grpc.ChannelCredentials:
    """Channel credentials that present this party's certificate and trust only one CA: ``anchor``
    if given (an independent custodian's own CA), else the alliance CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=anchor.cert_pem if anchor is not None else material.ca_cert,
        private_key=material.key,
        certificate_chain=material.cert,
    )


def secure_channel(
    target: str,
    material: TlsMaterial,
    *,
    server: Identity,
    anchor: TrustAnchor | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A mutual-TLS channel to ``target`` (``host:port``) that accepts only ``server``'s certificate.

    The handshake refuses a server whose certificate the trusted CA did not issue, that lacks the
    serverAuth usage, or that does not carry ``server``'s identity name (another party). The trusted
    CA is ``anchor`` when given (the alliance CA is then not trusted on this channel: a certificate
    it issued under ``server``'s name is refused), else the alliance CA. ``options`` override
    ``CHANNEL_OPTIONS`` key by key, except the name override, which is always ``server``'s.

    Raises:
        ConfigurationError: ``server`` is not a coordinator or custodian with a valid server name.
    """
    merged = dict(CHANNEL_OPTIONS)
    merged.update(options)
    merged["grpc.ssl_target_name_override"] = identity_dns_name(server.role, server.name)
    return grpc.secure_channel(target, channel_credentials(material, anchor), options=list(merged.items()))


def revoked_serials(material: TlsMaterial) -> frozenset[int]:
    """The serials the material's CRL revokes (empty without a CRL), checked against the CA.

    Raises:
        ConfigurationError: the CRL is not a CRL of the alliance CA.
    """
    if material.crl is None:
        return frozenset()
    return load_crl_serials(material.crl, material.ca_cert)
