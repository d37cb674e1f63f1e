"""How a call runs behind the identity interceptor: requests stay raw bytes until it is admitted.

grpcio decodes a request before any interceptor can see who sent it, so a revoked certificate's
garbage would reach the protobuf decoder (and undecodable requests leak memory inside grpcio).
``guarded_handler`` therefore re-registers every handler as a request-streaming handler over raw
bytes (no ``request_deserializer``), also for unary methods, so that no request is even read
before the call is admitted. A guarded call then:

1. is admitted (``admit``: certificate, revocation, role policy, the server's checks, limits)
   or refused before any request is read;
2. reads each request under the idle reaper's watch (a peer that sends nothing is cut off);
3. checks each request against the method's ``WireLimit`` (size, top-level fields) on its raw
   bytes, and only then decodes it with the method's own deserializer;
4. runs the original behavior with the decoded request, or a lazily decoded iterator for a
   client stream; a server stream's responses are watched too (a peer that stops reading).

Every message after the first request, in either direction, first asks the call's ``recheck``
(revocation and the server's checks again, answered from memory): a stream opened before its
peer's certificate was revoked, or before the member was removed from the enrolment list, ends
at its next message with the status that refuses the peer. (The server's housekeeping also ends
such calls while they wait: ``IdleReaper.end_fallen``.)

A request over its limit ends the call with RESOURCE_EXHAUSTED, an undecodable one with
INVALID_ARGUMENT; neither message quotes the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from alliance_psi.errors import InvalidRequest, RequestError
from alliance_psi.protocol.wire import WireLimit, check_wire
from alliance_psi.services.status import abort

if TYPE_CHECKING:
    from alliance_psi.services.interceptors import Peer
    from alliance_psi.services.limits import IdleWatch

__all__ = ["AdmittedCall", "guarded_handler"]

# Which attribute of a handler holds its behavior, by (request streaming, response streaming).
_BEHAVIOR = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


def _stands() -> None:
    pass


class _NoWatch:
    def waiting(self) -> None:
        pass

    def working(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class AdmittedCall:
    """A call the interceptor admitted: who made it, and what to do when it ends.

    ``on_end`` runs once, when gRPC reports the call over (``end``), with the call's request
    refusal if its request was refused (``refuse_request``), else None. ``recheck`` raises the
    ``RequestError`` that would refuse the peer now (revoked, no longer enrolled), else returns.
    ``producing_waits`` says the behavior's wait for its next response is a wait on events the
    peer asked to hear about (a health ``Watch``), which the reaper counts as idle.
    """

    method: str
    peer: Peer
    on_end: Callable[[AdmittedCall, RequestError | None], None]
    recheck: Callable[[], None] = _stands
    producing_waits: bool = False
    watch: IdleWatch | _NoWatch = field(default_factory=_NoWatch)
    refused_request: RequestError | None = None
    _ended: threading.Event = field(default_factory=threading.Event)

    def end(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            self.watch.close()
            self.on_end(self, self.refused_request)


Admit = Callable[[grpc.ServicerContext, bool], AdmittedCall]


def guarded_handler(
    handler: grpc.RpcMethodHandler[Any, Any], *, method: str, admit: Admit, limit: WireLimit
) -> grpc.RpcMethodHandler[Any, Any]:
    """A raw-bytes, request-streaming handler that admits the call before it reads a request.

    ``admit(context, streaming)`` returns the ``AdmittedCall`` or aborts the call (it raises).
    """
    streaming_in, streaming_out = bool(handler.request_streaming), bool(handler.response_streaming)
    behavior = getattr(handler, _BEHAVIOR[(streaming_in, streaming_out)])
    decode = handler.request_deserializer
    what = method.rsplit("/", 1)[-1]

    def run(raw_requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        call = admit(context, streaming_in or streaming_out)
        requests = _decoded(raw_requests, call, decode, limit, what)
        try:
            if streaming_in:
                result = behavior(requests, context)
            else:
                request = next(requests, None)
                if request is None:
                    raise InvalidRequest(f"{what}: the call carried no request")
                result = behavior(request, context)
        except RequestError as exc:  # From reading requests, in a behavior that does not map errors.
            abort(context, exc)
        return _responses(result, call, context) if streaming_out else result

    make = grpc.stream_stream_rpc_method_handler if streaming_out else grpc.stream_unary_rpc_method_handler
    return make(run, request_deserializer=None, response_serializer=handler.response_serializer)


def _decoded(
    raw_requests: Iterator[bytes],
    call: AdmittedCall,
    decode: Callable[[bytes], Any] | None,
    limit: WireLimit,
    what: str,
) -> Iterator[Any]:
    """Each request, read while watched, its peer rechecked (after the first), checked against
    ``limit`` on its bytes, then decoded."""
    first = True
    while True:
        call.watch.waiting()
        try:
            data = next(raw_requests)
        except StopIteration:
            return
        finally:
            call.watch.working()
        try:
            if not first:
                call.recheck()
            first = False
            check_wire(data, limit, what=what)
            if decode is None:
                yield data
                continue
            try:
                message = decode(data)
            except Exception:  # noqa: BLE001 - whatever the decoder raises, the request is not a message
                raise InvalidRequest(f"{what}: the request is not a valid message") from None
        except RequestError as exc:
            call.refused_request = exc
            raise
        yield message


def _responses(responses: Iterator[Any], call: AdmittedCall, context: grpc.ServicerContext) -> Iterator[Any]:
    """The behavior's responses, each sent only if the peer still stands; the time the peer takes
    to read each one is watched (and the time the behavior waits for it, if ``producing_waits``)."""
    try:
        for response in _produced(responses, call):
            call.recheck()
            call.watch.waiting()
            yield response
            call.watch.working()
    except RequestError as exc:
        abort(context, exc)


def _produced(responses: Iterator[Any], call: AdmittedCall) -> Iterator[Any]:
    if not call.producing_waits:
        yield from responses
        return
    iterator = iter(responses)
    while True:
        call.watch.waiting()
        try:
            response = next(iterator)
        except StopIteration:
            return
        finally:
            call.watch.working()
        yield response
