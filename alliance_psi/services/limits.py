"""What one peer may hold of a server: calls in progress, streams, calls per second, idle time.

``CallLimiter`` counts the calls in progress per peer (a certificate identity, whatever
connections it opens) and in total, and the calls each peer started in the last second (a
token bucket). A call over a limit is refused with ``ServerBusy`` (a ``LimitExceeded`` clients
retry) naming the limit, before it reads a request, so a member holding streams open spends its own slots, not the other members'.

``IdleReaper`` ends calls that wait on their peer longer than ``stream_idle_seconds``: a stream
whose client sends nothing, a unary call whose request never comes, a server stream whose client
stops reading, a health ``Watch`` with no change to send. The peer sees DEADLINE_EXCEEDED naming
the idle time. It also ends every open call whose peer no longer stands (``end_fallen``): a
certificate revoked, or a member removed from the enrolment list, while its stream is open.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from alliance_psi.config import ServerLimits
from alliance_psi.errors import RequestError, ServerBusy
from alliance_psi.services.status import status_for

__all__ = ["CallLimiter", "IdleReaper", "IdleWatch"]

log = logging.getLogger(__name__)

_BURST_SECONDS = 2.0  # A peer may start this many seconds' worth of calls at once (at least one call).
_FORGET_BUCKETS_AFTER = 600.0  # Seconds without calls after which a peer's bucket is dropped.


@dataclass
class _PeerCalls:
    calls: int = 0
    streams: int = 0
    tokens: float = 0.0
    refilled: float = field(default_factory=time.monotonic)


class CallLimiter:
    """Admits a call, or refuses it naming the limit; ``acquire`` returns the call's release.

    ``busy`` names what is full when the total is reached (``server busy``; a server keeps a
    second limiter for its health and reflection services, apart from its own calls).
    """

    def __init__(self, limits: ServerLimits, *, busy: str = "server busy") -> None:
        self.limits, self._busy = limits, busy
        self._lock = threading.Lock()
        self._total = 0
        self._peers: dict[str, _PeerCalls] = {}
        self._burst = max(1.0, limits.calls_per_second_per_peer * _BURST_SECONDS)

    def acquire(self, peer: str, *, streaming: bool) -> Callable[[], None]:
        """Count a call of ``peer`` (``role:name``) in progress; call the result once it ends.

        Raises:
            ServerBusy: the server's total, the peer's calls or streams in progress, or the
                peer's calls per second would go over their limit; nothing is counted then.
        """
        limits, now = self.limits, time.monotonic()
        with self._lock:
            state = self._peers.get(peer)
            if state is None:
                if len(self._peers) > 4 * limits.max_calls:
                    self._forget_idle_peers(now)
                state = self._peers[peer] = _PeerCalls(tokens=self._burst, refilled=now)
            state.tokens = min(self._burst, state.tokens + (now - state.refilled) * limits.calls_per_second_per_peer)
            state.refilled = now
            if state.tokens < 1:
                raise ServerBusy(f"too many calls from {peer}: at most {limits.calls_per_second_per_peer:g} per second")
            if self._total >= limits.max_calls:
                raise ServerBusy(f"{self._busy}: {limits.max_calls} calls in progress, the limit; try again later")
            if state.calls >= limits.max_calls_per_peer:
                raise ServerBusy(
                    f"too many calls in progress from {peer}: at most {limits.max_calls_per_peer} at a time"
                )
            if streaming and state.streams >= limits.max_streams_per_peer:
                raise ServerBusy(f"too many open streams from {peer}: at most {limits.max_streams_per_peer} at a time")
            state.tokens -= 1
            state.calls += 1
            state.streams += streaming
            self._total += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                state.calls -= 1
                state.streams -= streaming
                self._total -= 1

        return release

    def in_progress(self) -> int:
        """Calls admitted and not yet ended."""
        with self._lock:
            return self._total

    def _forget_idle_peers(self, now: float) -> None:
        for key in [k for k, s in self._peers.items() if not s.calls and now - s.refilled > _FORGET_BUCKETS_AFTER]:
            del self._peers[key]


class IdleWatch:
    """One call's view of the reaper: mark when the call waits on its peer and when it works."""

    def __init__(self, reaper: IdleReaper, key: int) -> None:
        self._reaper, self._key = reaper, key

    def waiting(self) -> None:
        self._reaper._mark(self._key, time.monotonic())

    def working(self) -> None:
        self._reaper._mark(self._key, None)

    def close(self) -> None:
        self._reaper._forget(self._key)


# Raises the RequestError that would refuse the call's peer now (revoked, no longer enrolled).
Standing = Callable[[], None]


def _stands() -> None:
    pass


@dataclass
class _Watched:
    context: grpc.ServicerContext
    what: str
    standing: Standing
    idle_message: str
    since: float | None = None


class IdleReaper:
    """Ends calls that have waited on their peer for longer than ``idle_seconds``, and calls whose
    peer no longer stands; ``reap`` and ``end_fallen`` run from the server's housekeeping thread,
    about once a second."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._calls: dict[int, _Watched] = {}
        self._keys = itertools.count()

    def watch(
        self,
        context: grpc.ServicerContext,
        what: str,
        *,
        standing: Standing = _stands,
        idle_message: str | None = None,
    ) -> IdleWatch:
        """Start watching a call (``what`` names it in the log: method and peer).

        ``standing()`` raises the ``RequestError`` that refuses the call's peer now, if it no
        longer may call (``end_fallen``); ``idle_message`` replaces the message an idle call
        ends with.
        """
        key = next(self._keys)
        message = idle_message or f"the server ended this call: it waited on its peer for over {self.idle_seconds:g} s"
        with self._lock:
            self._calls[key] = _Watched(context, what, standing, message)
        return IdleWatch(self, key)

    def reap(self) -> int:
        """End every call idle for too long; return how many."""
        now = time.monotonic()
        with self._lock:
            idle = [key for key, c in self._calls.items() if c.since is not None and now - c.since > self.idle_seconds]
            ended = [self._calls.pop(key) for key in idle]
        for call in ended:
            log.warning("ended %s: it waited on its peer for over %g s", call.what, self.idle_seconds)
            _end(call.context, grpc.StatusCode.DEADLINE_EXCEEDED, call.idle_message)
        return len(ended)

    def end_fallen(self) -> int:
        """End every call whose peer no longer stands, with the status that refuses it; return how many.

        What a revocation (CRL reload, SIGHUP) or a ``member remove`` does to the calls already
        open: a stream is not served a moment longer than this sweep takes to notice (the checks
        answer from memory, so the sweep costs a few lookups per open call).
        """
        with self._lock:
            calls = list(self._calls.items())
        fallen: list[tuple[_Watched, RequestError]] = []
        for key, call in calls:
            try:
                call.standing()
            except RequestError as exc:
                fallen.append((call, exc))
                self._forget(key)
            except Exception:
                log.exception("cannot recheck %s; it goes on until its next message is checked", call.what)
        for call, refusal in fallen:
            code, message = status_for(refusal)
            log.warning("ended %s: %s", call.what, message)
            _end(call.context, code, message)
        return len(fallen)

    def _mark(self, key: int, since: float | None) -> None:
        with self._lock:
            watched = self._calls.get(key)
            if watched is not None:
                watched.since = since

    def _forget(self, key: int) -> None:
        with self._lock:
            self._calls.pop(key, None)


def _end(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """End a call from another thread than its handler's, with ``code`` and ``message``.

    grpcio's public ``cancel()`` gives the peer a bare CANCELLED. The call object behind grpcio's
    servicer context can cancel with a status, so it is used when present (grpcio 1.x); the
    public cancel is the fallback, which ends the call all the same.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], message)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - any failure of the private path falls back to the public one
        context.cancel()  # type: ignore[no-untyped-call]
