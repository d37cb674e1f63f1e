"""The plain HTTP port of a server: Prometheus metrics, liveness and readiness, no TLS.

Kubernetes probes, a container's health check and Prometheus hold no alliance certificate, so
this port is apart from the mutual-TLS gRPC port and speaks plain HTTP:

==========  ===============================================================================
path        answer
==========  ===============================================================================
/metrics    the Prometheus text format (OpenMetrics if asked for), from ``Metrics``
/healthz    200 ``ok`` while the process serves HTTP at all (liveness)
/readyz     200 ``ready``, or 503 with one reason per line (``services.readiness``)
==========  ===============================================================================

Anything else is 404, any method but GET and HEAD 405. Nothing here changes state, and nothing
here is secret: counts, states, method names, the enrolled members' names at a custodian. But
anyone who reaches the port reads it all, unauthenticated: serve it on 127.0.0.1 (the default
address of the option) or on an address only the operator's own monitoring reaches
(docs/operations.md, "Monitor"). A request gets ``_REQUEST_TIMEOUT`` seconds to arrive, and the
database behind /metrics and /readyz is asked at most about once a second, however many ask.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from alliance_psi.config import split_listen
from alliance_psi.errors import ConfigurationError
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.readiness import Readiness

__all__ = ["serve_monitoring"]

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 10.0
# A new header list for each response: the WSGI server appends Content-Length to the one it gets.
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


@contextlib.contextmanager
def serve_monitoring(listen: str, metrics: Metrics, readiness: Readiness) -> Iterator[int]:
    """Serve /metrics, /healthz and /readyz on ``listen`` on a thread of its own; yield the bound port.

    Raises:
        ConfigurationError: ``listen`` is not HOST:PORT, or cannot be bound (the port is taken,
            or the address is not one of this machine's); the message names the address.
    """
    host, port = split_listen(listen)
    server_class = _IPv6Server if ":" in host else _Server
    try:
        server = make_server(host, port, _app(metrics, readiness), server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics and health on {listen}: {exc.strerror or exc} (the port is in use by "
            "another process, or the address is not one of this machine's)"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="monitoring-http", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Server(ThreadingWSGIServer):
    """One thread per request (prometheus_client's server); never shares its port (no SO_REUSEPORT)."""


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Requests are logged at DEBUG through ``logging`` (not printed to stderr), control
    characters escaped as ``http.server`` escapes them: whoever reaches the port writes the
    request line, and an escape sequence in it must not reach an operator's terminal."""

    timeout = _REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), (format % args).translate(_CONTROL_ESCAPES))


def _app(metrics: Metrics, readiness: Readiness) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [_TEXT, ("Allow", "GET, HEAD")])
            return [b"only GET and HEAD\n"]
        if path == "/metrics":
            body: Iterable[bytes] = exposition(environ, start_response)
        elif path == "/healthz":
            start_response("200 OK", [_TEXT])
            body = [b"ok\n"]
        elif path == "/readyz":
            problems = readiness.problems()
            start_response("503 Service Unavailable" if problems else "200 OK", [_TEXT])
            body = [("".join(f"not ready: {p}\n" for p in problems) or "ready\n").encode()]
        else:
            start_response("404 Not Found", [_TEXT])
            body = [b"not found: the paths are /metrics, /healthz and /readyz\n"]
        return [] if method == "HEAD" else body

    return app
