"""End-to-end fixtures: the alliance PKI of the service tests, and role servers as real processes."""

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


_PORT = re.compile(r"serving.* on port (\d+)")


class ServerProcess:
    """An ``alliance-psi ... serve`` process; its stderr is kept for the failure message."""

    def __init__(self, args: Sequence[str], *, timeout: float = 60) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "alliance_psi.cli.main", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.lines: list[str] = []
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
            match = _PORT.search(line)
            if match:
                return int(match.group(1))
        self.kill()
        raise AssertionError("server did not start:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def tls_args(pki_dir: Path, name: str) -> list[str]:
    return ["--ca", str(pki_dir / "ca.pem"), "--cert", str(pki_dir / f"{name}.pem"), "--key", str(pki_dir / f"{name}.key")]
