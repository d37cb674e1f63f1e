"""The RPC metrics interceptor: every call of a method this server serves, counted by method and
final status code, with its duration.

It is the server's outermost interceptor, so calls the identity interceptor refuses
(UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED) are counted with their code too. A
method the server does not serve (gRPC answers UNIMPLEMENTED) is not counted: its name comes
from the caller, and a label made of it would let any caller grow the label set without bound.
The method's type (unary, client stream, …) comes from its protobuf descriptor, since the
handler this interceptor sees is the identity interceptor's raw-bytes stream (``services.calls``).

The status is read when gRPC reports the call over: the code the handler aborted with, OK if it
returned, UNKNOWN if it raised otherwise, CANCELLED if a response stream ended before its last
message without either (the peer went away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from alliance_psi.services.metrics import Metrics

__all__ = ["RpcMetricsInterceptor"]

log = logging.getLogger(__name__)

_BEHAVIOR = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
# go-grpc-prometheus's grpc_type values, by (client streams, server streams).
_TYPE = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}


@dataclass(frozen=True, slots=True)
class _Method:
    kind: str
    service: str
    name: str


class RpcMetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Count every call of a served method in ``metrics`` (``grpc_server_*``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._methods: dict[str, _Method | None] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # Not served: not counted (the name is the caller's).
        method = self._method(handler_call_details.method)
        if method is None:
            return handler
        attribute = _BEHAVIOR[(bool(handler.request_streaming), bool(handler.response_streaming))]
        behavior = getattr(handler, attribute)
        streaming_out = bool(handler.response_streaming)

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(self._metrics, method, time.perf_counter())
            self._metrics.rpc_started.labels(method.kind, method.service, method.name).inc()
            if not context.add_callback(lambda: call.ended(context)):
                call.ended(context)  # Already over.
            try:
                result = behavior(request, context)
            except BaseException:
                call.raised = True
                raise
            if not streaming_out:
                call.finished = True
                return result
            return call.watched(result)

        return handler._replace(**{attribute: observed})  # type: ignore[attr-defined, no-any-return]

    def _method(self, full_name: str) -> _Method | None:
        """The served method's type and names, from the protobuf descriptors (cached)."""
        with self._lock:
            if full_name not in self._methods:
                self._methods[full_name] = _describe(full_name)
            return self._methods[full_name]


def _describe(full_name: str) -> _Method | None:
    service, _, name = full_name.strip("/").rpartition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return None
    if found is None:
        return None
    return _Method(_TYPE[(found.client_streaming, found.server_streaming)], service, name)


class _Call:
    """One call being counted: ended once, when gRPC reports it over."""

    def __init__(self, metrics: Metrics, method: _Method, started: float) -> None:
        self.metrics, self.method, self.started = metrics, method, started
        self.raised = self.finished = False
        self._ended = threading.Event()

    def watched(self, responses: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from responses
        except BaseException:
            self.raised = True
            raise
        self.finished = True

    def ended(self, context: grpc.ServicerContext) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        code = getattr(context, "code", lambda: None)()  # grpcio >= 1.38; the stubs lack it.
        if not isinstance(code, grpc.StatusCode):
            if self.raised:
                code = grpc.StatusCode.UNKNOWN
            elif self.finished:
                code = grpc.StatusCode.OK
            else:
                code = grpc.StatusCode.CANCELLED
        labels = (self.method.kind, self.method.service, self.method.name)
        seconds = time.perf_counter() - self.started
        self.metrics.rpc_handled.labels(*labels, code.name).inc()
        self.metrics.rpc_seconds.labels(*labels).observe(seconds)
        log.debug("%s ended %s after %.1f ms", self.method.name, code.name, seconds * 1000)
