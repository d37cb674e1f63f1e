"""Why a connection to a custodian or the coordinator failed, in a sentence that says what to fix.

gRPC reports every failure to connect as UNAVAILABLE, with text such as "failed to connect to all
addresses; last error: UNKNOWN: ipv4:127.0.0.1:7100: Custom verification check failed with error:
UNAUTHENTICATED: Hostname Verification Check failed", which names neither the cause nor the fix.
After such a failure a client calls ``diagnose``: its own TCP connection and TLS handshake (Python
``ssl``) to the same address, which fetches the server's certificate *without trusting it*, and
``cert_checks.server_certificate_problem`` says what is wrong with that certificate.

This only explains a refusal; it never grants trust. The gRPC handshake decided, on another
connection; a server that answers this probe well and the real connection badly is reported as
"its certificate checks out" and the client still fails. No client certificate is presented
(Python's ``ssl`` loads keys only from files, and a party's key stays in memory): under TLS 1.3
the client sees the server's certificate before the server judges the client's.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from alliance_psi.config import TlsMaterial
from alliance_psi.protocol.model import Identity
from alliance_psi.services.anchors import TrustAnchor
from alliance_psi.services.cert_checks import server_certificate_problem
from alliance_psi.services.pki import identity_dns_name

__all__ = ["DIAGNOSIS_TIMEOUT", "Diagnosis", "diagnose", "split_address"]

DIAGNOSIS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What went wrong with a connection: ``cause`` names it and the fix.

    ``lasting`` is True for problems retrying cannot fix (a certificate that is not the configured
    server's); False for a server that may yet come up (connection refused, timeout).
    """

    cause: str
    lasting: bool


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ValueError if it is not one."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host, int(port)


def diagnose(
    address: str,
    *,
    server: Identity,
    tls: TlsMaterial,
    anchor: TrustAnchor | None = None,
    timeout: float = DIAGNOSIS_TIMEOUT,
) -> Diagnosis | None:
    """Connect to ``address`` as a client expecting ``server`` (from ``anchor``'s CA if given); say
    what is wrong, or None.

    None means the server's certificate would be accepted: the failure was elsewhere (the server
    refused ours, or it was transient).
    """
    try:
        host, port = split_address(address)
    except ValueError as exc:
        return Diagnosis(f"{exc}: give the address as HOST:PORT", lasting=True)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return Diagnosis(f"the host name {host!r} does not resolve: check the address", lasting=False)
    except ConnectionRefusedError:
        return Diagnosis(
            f"nothing accepts connections there (connection refused): check the address and that the "
            f"{server.role.value} is running",
            lasting=False,
        )
    except TimeoutError:
        return Diagnosis(
            f"no answer within {timeout:g} s (timeout): check the address, the port and any firewall on the way",
            lasting=False,
        )
    except OSError as exc:
        return Diagnosis(f"cannot connect ({exc.strerror or exc}): check the address and the network", lasting=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Fetch the certificate to explain it; never trust this connection.
    context.set_alpn_protocols(["h2"])
    try:
        with context.wrap_socket(raw, server_hostname=identity_dns_name(server.role, server.name)) as conn:
            der = conn.getpeercert(binary_form=True)
    except TimeoutError:
        return Diagnosis(
            f"no TLS answer within {timeout:g} s (timeout): check that the address is the {server.role.value}'s "
            "port, and whether that server is overloaded",
            lasting=False,
        )
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        return Diagnosis(
            f"it does not complete a TLS handshake ({reason}): check that the address is the "
            f"{server.role.value}'s port, served with TLS",
            lasting=True,
        )
    finally:
        raw.close()
    if not der:
        return Diagnosis("it presents no certificate: check the address", lasting=True)
    cert_pem = ssl.DER_cert_to_PEM_cert(der).encode()
    problem = server_certificate_problem(cert_pem, ca_cert_pem=tls.ca_cert, expected=server, anchor=anchor)
    return Diagnosis(problem, lasting=True) if problem is not None else None
