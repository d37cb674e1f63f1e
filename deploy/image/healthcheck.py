"""The image's health check: is the server in this container up and serving its own certificate?

Run by the Dockerfile's HEALTHCHECK with the image's Python. It opens a TLS connection to
``ALLIANCE_PSI_HEALTH_ADDRESS`` (``HOST:PORT``), trusting only ``ALLIANCE_PSI_HEALTH_CA`` (the CA
that issued the server's certificate: the alliance CA, or an independent custodian's own CA) and
accepting only the identity name ``ALLIANCE_PSI_HEALTH_SERVER``
(``custodian-1.custodian.alliance-psi.internal``), and exits 0 once the server's side of the
handshake is complete. It presents no client certificate and sends no request: the server
refuses the connection right after (mutual TLS), so the check learns nothing a stranger could
not and needs none of the container's secrets. A container that sets no address (a member node,
a one-shot command) has nothing to check and is healthy.

Exit codes: 0 healthy, 1 not (the reason on stderr), as HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys

TIMEOUT_SECONDS = 4.0


def check(address: str, ca_file: str, server_name: str) -> None:
    """Complete a TLS handshake with the server at ``address`` as ``server_name``.

    Raises:
        OSError: nothing listens, the handshake fails, or the certificate is not ``server_name``'s
            from ``ca_file`` (ssl.SSLCertVerificationError).
        ValueError: ``address`` is not HOST:PORT.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ALLIANCE_PSI_HEALTH_ADDRESS {address!r} is not HOST:PORT")
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_SECONDS) as raw:
        with context.wrap_socket(raw, server_hostname=server_name):
            pass


def main() -> int:
    address = os.environ.get("ALLIANCE_PSI_HEALTH_ADDRESS", "")
    if not address:
        return 0
    try:
        check(address, os.environ["ALLIANCE_PSI_HEALTH_CA"], os.environ["ALLIANCE_PSI_HEALTH_SERVER"])
    except KeyError as exc:
        print(f"unhealthy: {exc.args[0]} is not set (needed with ALLIANCE_PSI_HEALTH_ADDRESS)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {address}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
