"""The plain health port against whoever reaches it without asking anything sensible: garbage,
half-open and reset connections print no traceback, connections over the cap are closed while
those in hand are served, and slow or idle connections give their slot back in time. Real sockets
on loopback; every wait is generous, nothing asserts a duration."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from alliance_psi.services.metrics import Metrics
from alliance_psi.services.monitoring import serve_monitoring
from alliance_psi.services.readiness import Readiness

pytestmark = pytest.mark.timeout(300)

HEALTHZ = b"GET /healthz HTTP/1.0\r\n\r\n"


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def answer(client: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" if it closed, or reset, at once)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(4096):
            received += chunk
    return received


def healthz(port: int) -> bytes:
    with connect(port) as client:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            client.sendall(HEALTHZ)
        return answer(client)


def reset(client: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a scanner or a dying client does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def eventually_healthy(port: int, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not (reply := healthz(port)).startswith(b"HTTP/1.0 200"):
        assert time.monotonic() < deadline, f"/healthz never answered: {reply!r}"
        time.sleep(0.2)


@contextlib.contextmanager
def held(port: int, count: int) -> Iterator[list[socket.socket]]:
    clients = [connect(port) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def test_garbage_and_reset_connections_print_no_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alliance_psi.services.monitoring")
    with serve_monitoring("127.0.0.1:0", Metrics(process=False), Readiness([])) as port:
        for payload in (b"GET /healthz HTTP/1.0\r\nHost: x", b"\x16\x03\x01\x02\x00\x01\x00", b"GE", b""):
            for _ in range(5):
                client = connect(port)
                client.sendall(payload)
                time.sleep(0.05)  # Not a timing assertion: lets the server start reading first.
                reset(client)
        with held(port, 3) as idle:
            assert [answer(c) for c in idle] == [b""] * 3  # Closed by the server once their time is up.
        assert healthz(port).startswith(b"HTTP/1.0 200")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    failures = [r for r in caplog.records if "connection failed" in r.getMessage()]
    assert failures and all(r.levelno == logging.DEBUG and r.exc_info is None for r in failures)
    assert any("127.0.0.1: connection failed (ConnectionResetError)" == r.getMessage() for r in failures)


def test_a_connection_over_the_cap_is_closed_while_those_in_hand_are_served(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="alliance_psi.services.monitoring")
    readiness = Readiness([])
    with serve_monitoring(
        "127.0.0.1:0", Metrics(process=False), readiness, max_connections=4, connection_seconds=120
    ) as port:
        with held(port, 4) as clients:
            # Accepted in order: the fifth is past the four. It is closed unanswered, request or not.
            assert healthz(port) == b""
            clients[0].sendall(HEALTHZ)
            assert answer(clients[0]).startswith(b"HTTP/1.0 200 OK")
            eventually_healthy(port)  # The slot clients[0] held is free again once its answer is sent.
            for client in clients[1:]:
                client.sendall(HEALTHZ)
                assert answer(client).startswith(b"HTTP/1.0 200 OK")
        refused = [r for r in caplog.records if "refused, 4 connections open already" in r.getMessage()]
        assert refused and all(r.levelno == logging.DEBUG for r in refused)
        deadline = time.monotonic() + 30
        while not [r for r in caplog.records if r.levelno == logging.WARNING]:
            assert time.monotonic() < deadline, "no warning about the refused connections"
            time.sleep(0.1)
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.startswith("metrics and health port: ") and "over its cap of 4 at once" in warning


def drip(client: socket.socket, stop: threading.Event) -> None:
    """A slowloris: one byte of a request line at a time, never finished, until the server ends it."""
    with contextlib.suppress(OSError):
        for byte in b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"a" * 100_000:
            if stop.wait(0.2):
                return
            client.send(bytes([byte]))


@pytest.mark.parametrize("slow", [False, True], ids=["idle", "dripping"])
def test_idle_or_dripping_connections_give_their_slots_back(slow: bool) -> None:
    readiness = Readiness([])
    with serve_monitoring(
        "127.0.0.1:0", Metrics(process=False), readiness, max_connections=4, connection_seconds=5
    ) as port:
        stop = threading.Event()
        with held(port, 4) as clients:
            drippers = [threading.Thread(target=drip, args=(c, stop), daemon=True) for c in clients if slow]
            for dripper in drippers:
                dripper.start()
            try:
                assert healthz(port) == b""  # Every slot is taken.
                eventually_healthy(port)  # Freed by the server once each connection's time is up.
                assert [answer(c) for c in clients] == [b""] * 4  # Closed without an answer.
            finally:
                stop.set()
                for dripper in drippers:
                    dripper.join(timeout=30)


class _Broken:
    def describe(self) -> list[object]:
        return []

    def collect(self) -> Iterator[object]:
        raise RuntimeError("collector \x1b[2J broke")


def test_an_answer_that_fails_is_one_debug_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alliance_psi.services.monitoring")
    metrics = Metrics(process=False)
    metrics.registry.register(_Broken())  # type: ignore[arg-type]
    with serve_monitoring("127.0.0.1:0", metrics, Readiness([])) as port:
        with connect(port) as client:
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert answer(client).startswith(b"HTTP/1.0 500")
        assert healthz(port).startswith(b"HTTP/1.0 200")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "broke" not in err, err
    (failed,) = [r.getMessage() for r in caplog.records if "answer failed" in r.getMessage()]
    assert failed == "127.0.0.1: answer failed (RuntimeError: collector \\x1b[2J broke)"
