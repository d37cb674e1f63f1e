"""Mutual-TLS credentials for every alliance gRPC server and channel.

Both sides trust only the alliance CA (never the system roots) and both present a certificate:
servers require and verify the client's certificate during the handshake, so a peer without a
certificate of the alliance CA, or with an expired one, never reaches a handler. Revocation is
checked after the handshake by ``services.interceptors.IdentityInterceptor`` (gRPC's Python API
cannot load a CRL), with the serials from ``revoked_serials``.

Channels verify the server's name against the certificate's DNS/IP SANs: ``pki.issue`` puts
``localhost`` and ``127.0.0.1`` in by default, so dialing either works without a name override.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from alliance_psi.config import TlsMaterial
from alliance_psi.services.pki import load_crl_serials

__all__ = [
    "CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "SERVER_OPTIONS",
    "channel_credentials",
    "revoked_serials",
    "secure_channel",
    "server_credentials",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_MESSAGE_SIZE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)
# Clients ping every 30 s during calls (not when idle) so a dead peer is noticed within 40 s,
# even on a long submission stream behind a NAT that forgets quiet connections.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    *_MESSAGE_SIZE_OPTIONS,
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)
# Servers accept those pings (the default would answer them with GOAWAY "too_many_pings").
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    *_MESSAGE_SIZE_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 20000),
    ("grpc.keepalive_permit_without_calls", 0),
)


def server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by the alliance CA.

    The handshake fails (the client sees UNAVAILABLE) for no certificate, a certificate of another
    CA, or an expired one. Revoked certificates are refused by the identity interceptor.
    """
    return grpc.ssl_server_credentials(
        [(material.key, material.cert)],
        root_certificates=material.ca_cert,
        require_client_auth=True,
    )


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Channel credentials that present this party's certificate and trust only the alliance CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_cert,
        private_key=material.key,
        certificate_chain=material.cert,
    )


def secure_channel(target: str, material: TlsMaterial, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A mutual-TLS channel to ``target`` (``host:port``) with the alliance defaults.

    ``options`` override ``CHANNEL_OPTIONS`` key by key. The server's certificate must name
    ``host`` (DNS or IP SAN); to dial an address the certificate does not name (a load balancer),
    pass ``("grpc.ssl_target_name_override", "<name in the certificate>")`` explicitly.
    """
    merged = dict(CHANNEL_OPTIONS)
    merged.update(options)
    return grpc.secure_channel(target, channel_credentials(material), options=list(merged.items()))


def revoked_serials(material: TlsMaterial) -> frozenset[int]:
    """The serials the material's CRL revokes (empty without a CRL), checked against the CA.

    Raises:
        ConfigurationError: the CRL is not a CRL of the alliance CA.
    """
    if material.crl is None:
        return frozenset()
    return load_crl_serials(material.crl, material.ca_cert)
