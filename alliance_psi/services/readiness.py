"""What ``/readyz`` answers: whether this server can serve now, and if not, why.

A server (or a member node under ``node run``) names what it needs at start (``Readiness(["tls", "database", "key share", "grpc"])``)
and says when each is met, with a check to run again at every probe where the need can be lost
later (the database reachable, the TLS files readable). It is ready once every need is met and
every check passes, and not ready again from the moment it begins to stop (so a load balancer
sends it nothing new while it drains). Usage::

    readiness = Readiness(["tls", "database", "grpc"])
    readiness.met("tls", tls_files_check(config.tls))
    readiness.met("database", database_check(engine))
    readiness.met("grpc")
    readiness.problems()          # [] when ready, else ["database: unreachable (OperationalError)", …]
    readiness.stopping()

Checks run at most once per ``min_interval`` seconds whatever the probe rate, one probe at a
time: a flood of probes costs the database one query per interval. A reason says what failed
in words an operator acts on; it never holds a secret, an identifier, a file's path or a
database message (the port answers without authentication). The details go to the server's
log, at WARNING, each time the problems change: a check's ``NotReady`` carries them apart from
its reason, and any other error is served as its class only (a ``PeerUnavailable``, which names
a peer and a gRPC status only, as its message).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from alliance_psi.config import TlsConfig, sqlite_file
from alliance_psi.errors import ConfigurationError, PeerUnavailable

__all__ = ["Check", "NotReady", "Readiness", "database_check", "folder_writable_check", "tls_files_check"]

log = logging.getLogger(__name__)

_MIN_INTERVAL = 1.0
_WAIT_FOR_CHECKS = 5.0


class NotReady(Exception):
    """Raised by a readiness check: its message is the reason /readyz shows (no path, no secret);
    ``detail`` (a path, an OS error) goes only to the server's log."""

    def __init__(self, reason: str, *, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail


# A check returns if the need still holds, else raises NotReady (or any error, shown by its class).
Check = Callable[[], None]


class Readiness:
    """A server's needs and checks; ``problems()`` is what /readyz reports (see the module)."""

    def __init__(self, needs: Iterable[str], *, min_interval: float = _MIN_INTERVAL) -> None:
        self._pending = list(dict.fromkeys(needs))
        self._checks: dict[str, Check] = {}
        self._stopping = False
        self._min_interval = min_interval
        self._state = threading.Lock()
        self._probing = threading.Lock()
        self._last: tuple[float, list[str]] | None = None
        self._logged: list[str] | None = None

    def met(self, need: str, check: Check | None = None) -> None:
        """``need`` is met; ``check`` (if any) runs again at every probe from now on."""
        with self._state:
            if need in self._pending:
                self._pending.remove(need)
            if check is not None:
                self._checks[need] = check
            self._last = None

    def stopping(self) -> None:
        """The server begins to stop: not ready from now on."""
        with self._state:
            self._stopping = True
            self._last = None

    def problems(self) -> list[str]:
        """Why the server is not ready (empty: ready), each as ``"need: reason"``."""
        with self._state:
            if self._stopping:
                return ["stopping"]
            if self._pending:
                return [f"starting: waiting for {', '.join(self._pending)}"]
        if not self._probing.acquire(timeout=_WAIT_FOR_CHECKS):
            return [f"checks still running after {_WAIT_FOR_CHECKS:g} s"]
        try:
            with self._state:
                cached, checks = self._last, dict(self._checks)
            if cached is not None and time.monotonic() - cached[0] < self._min_interval:
                return cached[1]
            results = [problem for name, check in checks.items() if (problem := _run(name, check)) is not None]
            found = [served for served, _ in results]
            with self._state:
                self._last = (time.monotonic(), found)
            self._log_change([logged for _, logged in results])
            return found
        finally:
            self._probing.release()

    def _log_change(self, details: list[str]) -> None:
        if details != self._logged:
            if details:
                log.warning("not ready: %s", "; ".join(details))
            else:
                log.info("ready")
        self._logged = details


def _run(name: str, check: Check) -> tuple[str, str] | None:
    """None if ``check`` passes, else (the reason served, the reason with its details, logged)."""
    try:
        check()
    except NotReady as exc:
        served = f"{name}: {exc}"
        return served, f"{served} ({exc.detail})" if exc.detail else served
    except PeerUnavailable as exc:
        return f"{name}: {exc}", f"{name}: {exc}"
    except Exception as exc:
        log.warning("readiness check %s failed", name, exc_info=exc)
        served = f"{name}: failed ({type(exc).__name__})"
        return served, served
    return None


def database_check(engine: Engine) -> Check:
    """A check that the database answers (``SELECT 1``) and, for a SQLite file, that the file is
    still where it was (a deleted file would take writes nobody can read back)."""
    file = sqlite_file(engine.url.render_as_string()) if engine.url.get_backend_name() == "sqlite" else None
    reader = engine.execution_options(sqlite_begin="DEFERRED")

    def check() -> None:
        if file is not None and not file.exists():
            raise NotReady("the SQLite file is gone", detail=str(file))
        try:
            with reader.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("readiness: the database does not answer", exc_info=exc)
            raise NotReady(f"unreachable ({type(exc).__name__})") from None

    return check


def tls_files_check(config: TlsConfig) -> Check:
    """A check that every TLS file is still readable and PEM (a rotation gone wrong, a mode
    changed): the server keeps serving with what it loaded, but would not start again. The log
    names the option and the file; /readyz only says that one is wrong."""

    def check() -> None:
        try:
            config.load()
        except ConfigurationError as exc:
            raise NotReady("a TLS file is missing, unreadable or not PEM", detail=str(exc)) from None

    return check


def folder_writable_check(folder: Path) -> Check:
    """A check that a file can be made in ``folder`` (a member node's inbox: it moves every file
    it takes in within it): one is created and deleted again, named ``.readyz-….tmp``, which the
    inbox never reads."""

    def check() -> None:
        try:
            descriptor, name = tempfile.mkstemp(prefix=".readyz-", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise NotReady("folder not writable", detail=f"{folder}: {exc.strerror}") from None
        os.close(descriptor)
        os.unlink(name)

    return check
