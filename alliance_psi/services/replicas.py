"""Several addresses of one server as one gRPC channel, its calls spread round-robin.

A custodian may run as several processes (replicas) that hold the same certificate and key share
and charge one PostgreSQL quota store (docs/operations.md, Custodian replicas). A member dials
them as one server: ``replica_target`` resolves every ``HOST:PORT`` once, when the channel is
made, into gRPC's own address-list target (``ipv4:10.0.0.5:7101,10.0.0.6:7101``, or ``ipv6:``),
and ``REPLICA_OPTIONS`` select gRPC's ``round_robin`` load-balancing policy: the channel keeps a
connection to every replica that answers and sends each call to the next one, leaving out a
replica that is down until it is back. Every connection's handshake checks the server's name
exactly as with one address (``services.tls``): an address that reaches another party fails its
handshake and takes no call.

One address whose name resolves to several (a Kubernetes headless Service: one A record per
ready pod) is left to gRPC's DNS resolver, which the channel asks at start and again whenever a
connection to one of them is lost (at most every 30 s): with ``REPLICA_OPTIONS``, which
``CustodianClient`` always sets, the calls go round-robin over every address the name has, and a
pod that comes back with another address is found. A replica added while every connection holds
is used from the next resolution. (Without ``round_robin``, gRPC's default ``pick_first`` would
send every call to the first address.)

Only the addresses are round-robin: the quota is one counter in the shared database, charged by
one conditional UPDATE whichever replica is called (``storage.custodian_repo``), so spreading
calls never lets a member past it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from alliance_psi.errors import ConfigurationError
from alliance_psi.services.tls_diagnosis import split_address

__all__ = ["REPLICA_OPTIONS", "replica_target"]

REPLICA_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.lb_policy_name", "round_robin"),)


def replica_target(addresses: Sequence[str]) -> str:
    """One gRPC target for ``addresses``: the address itself if there is one, else gRPC's list of
    every address each ``HOST:PORT`` resolves to (IPv4 or IPv6, not both).

    Raises:
        ConfigurationError: an address is not ``HOST:PORT``, a host does not resolve, or the
            hosts resolve to both IPv4 and IPv6 addresses (give them all of one family).
    """
    if len(addresses) == 1:
        return addresses[0]
    resolved: list[tuple[int, str]] = []
    for address in addresses:
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise ConfigurationError(f"replica address {exc}") from None
        for family, ip in _resolve(host, port):
            entry = f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"
            if (family, entry) not in resolved:
                resolved.append((family, entry))
    families = {family for family, _ in resolved}
    if len(families) != 1:
        raise ConfigurationError(
            f"replica addresses {', '.join(addresses)} resolve to both IPv4 and IPv6 addresses: give them all "
            "of one family"
        )
    scheme = "ipv6" if families == {6} else "ipv4"
    return f"{scheme}:" + ",".join(entry for _, entry in resolved)


def _resolve(host: str, port: int) -> list[tuple[int, str]]:
    """(4 or 6, ip) of every address ``host`` has; an IP literal is itself."""
    try:
        literal = ipaddress.ip_address(host)
        return [(literal.version, str(literal))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"replica host {host!r} does not resolve: {exc.strerror}") from None
    found: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (6 if family == socket.AF_INET6 else 4, str(sockaddr[0]))
        if entry not in found:
            found.append(entry)
    return found
