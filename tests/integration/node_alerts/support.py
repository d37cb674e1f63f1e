"""Builders shared by the member node's alert tests: applied alerts, and a webhook receiver on loopback."""

from __future__ import annotations

import base64
import contextlib
import http.server
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alliance_psi.protocol.leads import LeadLabel
from alliance_psi.protocol.node_alerts import AppliedAlert, alert_id_of

NOW = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
SCOPE = "epoch-test/phone/labels"


def applied(sequence: int, token: bytes, *, kind: str = "match", holders: int = 2, **fields: object) -> AppliedAlert:
    """An applied alert for ``token`` with made-up signed bytes (storage and notifiers do not check them)."""
    signed = b"signed alert %d" % sequence + token
    values: dict[str, object] = {
        "sequence": sequence,
        "alert_id": alert_id_of(signed, b"sig"),
        "scope": SCOPE,
        "kind": kind,
        "key_epoch": "epoch-test",
        "match_token": token,
        "holder_count": holders,
        "threshold": 2,
        "peer_labels": (LeadLabel("wool_party", "level1", None, "B-77", "bank-b"),),
        "unreadable_labels": 0,
        "refused": None,
        "signed": signed,
        "signature": b"sig",
        "created_at": NOW,
        "applied_at": NOW,
    }
    values.update(fields)
    return AppliedAlert(**values)  # type: ignore[arg-type]


def write_secret(path: Path, size: int = 32) -> str:
    """A fresh ``whsec_`` secret in ``path`` (mode 0600); returns its text for the receiver."""
    text = "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()
    path.write_text(text + "\n")
    path.chmod(0o600)
    return text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers ``status`` and records every request."""

    port: int
    status: int = 204
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alliance"

    @contextlib.contextmanager
    def serving(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, receiver.status)
                )
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
