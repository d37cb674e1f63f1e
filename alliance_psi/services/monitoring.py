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
(docs/operations.md, "Monitor"). The database behind /metrics and /readyz is asked at most
about once a second, however many ask.

Whoever reaches the port may also open connections and never finish them. The port serves
``MAX_MONITORING_CONNECTIONS`` at once (a thread each) and closes one more as soon as it is
accepted; each connection gets ``MONITORING_CONNECTION_SECONDS`` from its acceptance to the end
of its answer, idle or not, so half-open and slowly sent requests free their slot. A connection
that fails (reset, timed out, closed) is logged as one DEBUG line, never a traceback on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from alliance_psi.config import split_listen
from alliance_psi.defaults import MAX_MONITORING_CONNECTIONS, MONITORING_CONNECTION_SECONDS
from alliance_psi.errors import ConfigurationError
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.readiness import Readiness

__all__ = ["serve_monitoring"]

log = logging.getLogger(__name__)

# Connections refused over the cap are counted, and a warning says how many at most this often.
_REFUSED_REPORT_SECONDS = 60.0
# A new header list for each response: the WSGI server appends Content-Length to the one it gets.
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


@contextlib.contextmanager
def serve_monitoring(
    listen: str,
    metrics: Metrics,
    readiness: Readiness,
    *,
    max_connections: int = MAX_MONITORING_CONNECTIONS,
    connection_seconds: float = MONITORING_CONNECTION_SECONDS,
) -> Iterator[int]:
    """Serve /metrics, /healthz and /readyz on ``listen`` on a thread of its own; yield the bound port.

    At most ``max_connections`` connections are served at once, each for at most
    ``connection_seconds`` (see the module).

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
    server.limit(max_connections, connection_seconds)
    thread = threading.Thread(target=server.serve_forever, name="monitoring-http", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Server(ThreadingWSGIServer):
    """One thread per connection (prometheus_client's server), at most ``max_connections`` at
    once, each shut down ``connection_seconds`` after it was accepted; never shares its port (no
    SO_REUSEPORT). Its failures are DEBUG lines, not the tracebacks ``socketserver`` prints;
    connections refused over the cap are a DEBUG line each and a warning at most once a minute."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._refused, self._refused_reported = 0, -_REFUSED_REPORT_SECONDS
        self.limit(MAX_MONITORING_CONNECTIONS, MONITORING_CONNECTION_SECONDS)

    def limit(self, max_connections: int, connection_seconds: float) -> None:
        """Set the limits; before ``serve_forever``."""
        self.max_connections, self.connection_seconds = max_connections, connection_seconds
        self._slots = threading.BoundedSemaphore(max_connections)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Called on the serving thread; socketserver closes a connection refused here at once.
        if self._slots.acquire(blocking=False):
            return True
        self._refused += 1
        log.debug("%s: refused, %d connections open already", _address(client_address), self.max_connections)
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open:
            self._deadlines[request] = time.monotonic() + self.connection_seconds
        try:
            super().process_request(request, client_address)  # Starts the connection's thread.
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown_request(self, request: Any) -> None:
        with self._open:  # Never closed while service_actions shuts it down.
            self._deadlines.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Shut down the connections past their time (``serve_forever`` calls this twice a second):
        the thread blocked reading or writing one sees it end, and ends."""
        now = time.monotonic()
        with self._open:
            for request in [r for r, deadline in self._deadlines.items() if deadline <= now]:
                del self._deadlines[request]
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)
        if self._refused and now - self._refused_reported >= _REFUSED_REPORT_SECONDS:
            log.warning(
                "metrics and health port: %d connection(s) refused, over its cap of %d at once",
                self._refused,
                self.max_connections,
            )
            self._refused, self._refused_reported = 0, now

    def handle_error(self, request: Any, client_address: Any) -> None:
        failure = sys.exc_info()[1]
        log.debug("%s: connection failed (%s)", _address(client_address), type(failure).__name__)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Requests are logged at DEBUG through ``logging`` (not printed to stderr), control
    characters escaped as ``http.server`` escapes them: whoever reaches the port writes the
    request line, and an escape sequence in it must not reach an operator's terminal. An answer
    that fails to be written (the client went away or stopped reading) prints nothing either."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.connection_seconds)  # Each read and write; the server bounds the whole.

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", _address(self.client_address), (format % args).translate(_CONTROL_ESCAPES))

    def get_stderr(self) -> _FailedAnswers:
        return _FailedAnswers(_address(self.client_address))


class _FailedAnswers:
    """What wsgiref's handler is given as stderr: it prints the traceback of an answer that failed
    there; one DEBUG line is logged instead, with the exception's last line."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._text: list[str] = []

    def write(self, text: str) -> int:
        self._text.append(text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        self._text.extend(lines)

    def flush(self) -> None:
        if last := "".join(self._text).strip().rpartition("\n")[2]:
            log.debug("%s: answer failed (%s)", self._address, last.translate(_CONTROL_ESCAPES))
        self._text.clear()


def _address(client_address: Any) -> str:
    """The peer's address as a log shows it, control characters escaped."""
    host = client_address[0] if isinstance(client_address, tuple) and client_address else client_address
    return str(host).translate(_CONTROL_ESCAPES)


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
