"""Starting a gRPC server the alliance way: mutual TLS, identity interceptor, limits, health, reflection.

``run_server`` is a context manager, like gRPC's own examples: it binds (port 0 picks a free
port), starts, yields the bound port and stops on exit. ``guarded`` turns our typed errors into
gRPC statuses at the one boundary where that happens.

A server runs at most ``ServerLimits.max_calls`` calls of its own services at once, each on its
own worker thread, ``max_open_calls`` health and reflection calls apart from those (so probes
and watches never take a member's slot), plus a few threads kept for refusing calls over the
limits (grpcio refuses beyond those with RESOURCE_EXHAUSTED before any handler). Health and
reflection answer the parties the server serves and the server's own certificate and key (a
probe run beside the server; ``IdentityInterceptor``). A housekeeping thread ends idle calls and
calls whose peer was revoked or removed from the enrolment list since they opened, writes
refused calls to the audit log and reloads a changed CRL. Stopping gives running calls
``shutdown_grace_seconds``, cancels the rest, and waits as long again at most: a call stuck
where cancelling cannot reach it is logged and left behind (the CLI then exits regardless).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from alliance_psi.config import ServerLimits, TlsMaterial
from alliance_psi.defaults import OPEN_CALLS_PER_PEER
from alliance_psi.errors import AlliancePsiError, ConfigurationError
from alliance_psi.protocol.model import Role
from alliance_psi.protocol.wire import WireLimit
from alliance_psi.services.interceptors import IdentityInterceptor, PeerCheck, peer_from_pem
from alliance_psi.services.limits import CallLimiter, IdleReaper
from alliance_psi.services.metrics import Metrics
from alliance_psi.services.refusals import AuditWriter, RefusalLog
from alliance_psi.services.revocation import RevocationList
from alliance_psi.services.rpc_metrics import RpcMetricsInterceptor
from alliance_psi.services.status import abort
from alliance_psi.services.tls import revoked_serials, server_credentials, server_options

__all__ = ["Registration", "guarded", "run_server"]

log = logging.getLogger(__name__)

# Worker threads beyond max_calls, so that calls over the limits are refused at once.
_REFUSING_THREADS = 8
_HOUSEKEEPING_SECONDS = 1.0
_DEFAULT_LIMITS = ServerLimits()


@dataclass(frozen=True)
class Registration:
    """One service for ``run_server``: how to add it, its servicer, its full name, who may call
    each method (``{"CreateRound": frozenset({Role.ADMIN})}``), and the request limits of the
    methods whose requests may be larger than ``protocol.wire.SMALL_REQUEST``."""

    add: Callable[[object, grpc.Server], None]
    servicer: object
    service: str
    methods: Mapping[str, frozenset[Role]]
    request_limits: Mapping[str, WireLimit] = field(default_factory=dict)


@contextlib.contextmanager
def guarded(context: grpc.ServicerContext) -> Iterator[None]:
    """Map any error raised inside to its gRPC status; unexpected ones become INTERNAL, logged here only."""
    try:
        yield
    except AlliancePsiError as exc:
        abort(context, exc)
    except grpc.RpcError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexpected may leak its text
        abort(context, exc)


@contextlib.contextmanager
def run_server(
    registrations: Sequence[Registration],
    *,
    address: str,
    tls: TlsMaterial,
    checks: Sequence[PeerCheck] = (),
    limits: ServerLimits = _DEFAULT_LIMITS,
    revocations: RevocationList | None = None,
    audit: AuditWriter | None = None,
    metrics: Metrics | None = None,
) -> Iterator[int]:
    """Serve ``registrations`` on ``address`` over mutual TLS within ``limits``; yield the bound port.

    ``checks`` are the server's own admission rules (``IdentityInterceptor``), such as its
    enrolment list. ``revocations`` is the CRL to enforce and reload (``RevocationList.from_file``);
    without it, the CRL in ``tls`` is enforced as loaded. ``audit`` receives refused calls
    (``services.refusals.sql_audit_writer``); they are logged either way. ``metrics`` counts
    every call of a served method by status code, refused ones included (``services.rpc_metrics``).

    Raises:
        ConfigurationError: ``address`` cannot be bound (in use by another process: servers
            never share a port, or not an address of this machine).
    """
    policy: dict[str, frozenset[Role]] = {}
    request_limits: dict[str, WireLimit] = {}
    for registration in registrations:
        for method, roles in registration.methods.items():
            policy[f"/{registration.service}/{method}"] = roles
        for method, limit in registration.request_limits.items():
            request_limits[f"/{registration.service}/{method}"] = limit
    revoked = revocations if revocations is not None else RevocationList(revoked_serials(tls))
    reaper, refusals = IdleReaper(limits.stream_idle_seconds), RefusalLog(audit)
    per_peer = min(OPEN_CALLS_PER_PEER, limits.max_open_calls)
    open_limits = dataclasses.replace(
        limits, max_calls=limits.max_open_calls, max_calls_per_peer=per_peer, max_streams_per_peer=per_peer
    )
    interceptor = IdentityInterceptor(
        policy,
        revoked_serials=revoked,
        checks=checks,
        limiter=CallLimiter(limits),
        open_limiter=CallLimiter(open_limits, busy="health and reflection busy"),
        reaper=reaper,
        refusals=refusals,
        request_limits=request_limits,
        monitor=peer_from_pem(tls.cert),
    )
    threads = limits.max_calls + limits.max_open_calls + _REFUSING_THREADS
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc-call"),
        interceptors=[RpcMetricsInterceptor(metrics), interceptor] if metrics is not None else [interceptor],
        options=server_options(limits),
        maximum_concurrent_rpcs=threads,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [registration.service for registration in registrations]
    for registration in registrations:
        registration.add(registration.servicer, server)
        health_servicer.set(registration.service, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = _bind(server, address, tls)
    server.start()
    # Not "serving … on port N": that line is the serve command's, said once the server is ready
    # (cli._processes waits for it).
    log.info("listening on port %d for %s", port, ", ".join(names))
    stop = threading.Event()

    def housekeeping() -> None:
        next_crl_check = 0.0
        while not stop.wait(_HOUSEKEEPING_SECONDS):
            try:
                reaper.reap()
                reaper.end_fallen()
                refusals.flush()
                next_crl_check -= _HOUSEKEEPING_SECONDS
                if next_crl_check <= 0:
                    next_crl_check = limits.crl_reload_seconds
                    revoked.reload_if_changed()
            except Exception:
                log.exception("server housekeeping failed")

    keeper = threading.Thread(target=housekeeping, name="server-housekeeping", daemon=True)
    keeper.start()
    try:
        yield port
    finally:
        health_servicer.enter_graceful_shutdown()
        grace = limits.shutdown_grace_seconds
        if not server.stop(grace=grace).wait(timeout=2 * grace):
            log.error("calls still running %g s after the stop began; leaving them behind", 2 * grace)
        stop.set()
        keeper.join(timeout=grace)
        refusals.flush(final=True)


def _bind(server: grpc.Server, address: str, tls: TlsMaterial) -> int:
    try:
        port = server.add_secure_port(address, server_credentials(tls))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"cannot listen on {address}: the port is in use (servers never share a port) "
            "or the address is not one of this machine's"
        )
    return port
