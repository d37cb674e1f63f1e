"""Role servers as child processes, for the demo and the end-to-end tests.

A server prints ``... serving ... on port N`` on stderr once it listens; ``ServerProcess`` waits
for that line, keeps the rest of stderr for error messages, and stops the child on exit. With
``--metrics-listen``, the line before names the metrics port (``ServerProcess.metrics_port``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from alliance_psi.errors import AlliancePsiError

__all__ = ["ServerProcess", "cli_command", "tls_args"]

_PORT = re.compile(r"serving.* on port (\d+)")
_METRICS_PORT = re.compile(r"metrics and health on http://\S+:(\d+)/metrics")


def cli_command(*args: str) -> list[str]:
    """The argv that runs ``alliance-psi ARGS`` with this interpreter."""
    return [sys.executable, "-m", "alliance_psi.cli.main", *args]


def tls_args(pki_dir: Path, name: str) -> list[str]:
    """``--ca/--cert/--key`` for party ``name`` in an ``alliance-psi pki`` directory."""
    return [
        "--ca",
        str(pki_dir / "ca.pem"),
        "--cert",
        str(pki_dir / f"{name}.pem"),
        "--key",
        str(pki_dir / f"{name}.key"),
    ]


class ServerProcess:
    """An ``alliance-psi ... serve`` child process, started and waited for until it listens."""

    def __init__(self, args: Sequence[str], *, timeout: float = 60) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cli_command(*args), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: list[str] = []
        self.metrics_port: int | None = None
        self.port = self._wait_for_port(timeout)
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            metrics = _METRICS_PORT.search(line)
            if metrics:
                self.metrics_port = int(metrics.group(1))
            match = _PORT.search(line)
            if match:
                return int(match.group(1))
        self.kill()
        raise AlliancePsiError("server did not start:\n" + "".join(self.lines[-20:]))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
