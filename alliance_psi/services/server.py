"""Starting a gRPC server the alliance way: mutual TLS, identity interceptor, health, reflection.

``run_server`` is a context manager, like gRPC's own examples: it binds (port 0 picks a free
port), starts, yields the bound port and stops on exit. ``guarded`` turns our typed errors into
gRPC statuses at the one boundary where that happens.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from alliance_psi.config import TlsMaterial
from alliance_psi.errors import AlliancePsiError
from alliance_psi.protocol.model import Role
from alliance_psi.services.interceptors import IdentityInterceptor, PeerCheck
from alliance_psi.services.status import abort
from alliance_psi.services.tls import SERVER_OPTIONS, revoked_serials, server_credentials

__all__ = ["Registration", "guarded", "run_server"]

log = logging.getLogger(__name__)

# (add_to_server function, servicer, full service name, {method: allowed roles})
Registration = tuple[Callable[[object, grpc.Server], None], object, str, Mapping[str, frozenset[Role]]]


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
    max_workers: int = 16,
    checks: Sequence[PeerCheck] = (),
) -> Iterator[int]:
    """Serve ``registrations`` on ``address`` over mutual TLS; yield the bound port.

    ``checks`` are the server's own admission rules (``IdentityInterceptor``), such as its
    enrolment list.
    """
    policy: dict[str, frozenset[Role]] = {}
    for _, _, service, methods in registrations:
        for method, roles in methods.items():
            policy[f"/{service}/{method}"] = roles
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[IdentityInterceptor(policy, revoked_serials=revoked_serials(tls), checks=checks)],
        options=list(SERVER_OPTIONS),
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service for _, _, service, _ in registrations]
    for add, servicer, service, _ in registrations:
        add(servicer, server)
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_secure_port(address, server_credentials(tls))
    if port == 0:
        raise AlliancePsiError(f"could not bind {address}")
    server.start()
    log.info("serving %s on port %d", ", ".join(names), port)
    try:
        yield port
    finally:
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=2).wait()
