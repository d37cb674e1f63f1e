"""The alliance CRL as a server sees it: loaded at start, reloaded while serving.

A server started with ``--crl`` loads the file at start and refuses to start if it is missing,
unreadable, not a CRL or not signed by the alliance CA (fail closed: a server must never serve
without the revocations it was told to enforce). While it serves, the file is checked every
``crl_reload_seconds`` (``ServerLimits``; 30 s by default) and reloaded when its modification
time, size or inode changed, and ``reload()`` reloads it at once (the CLI calls it on SIGHUP).
A certificate revoked with ``alliance-psi pki revoke`` is therefore refused within that interval.

A reload that fails (the file vanished, is half-written by a non-atomic copy, or is not a CRL of
the CA) keeps the previous list and logs an error: the server goes on refusing everything it
refused, and picks up the file once it is valid again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from alliance_psi.errors import ConfigurationError
from alliance_psi.services.pki import load_crl_serials

__all__ = ["RevocationList"]

log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]


class RevocationList:
    """The revoked certificate serials; ``serial in revocations`` is what the interceptor asks."""

    def __init__(self, serials: Iterable[int] = (), *, path: Path | None = None, ca_cert: bytes = b"") -> None:
        self._serials = frozenset(serials)
        self._path, self._ca_cert = path, ca_cert
        self._stamp: _Stamp | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, ca_cert: bytes) -> RevocationList:
        """Load the CRL at ``path``, checked against the CA certificate ``ca_cert`` (PEM).

        Raises:
            ConfigurationError: the file cannot be read, is not a CRL, or the CA did not sign it.
        """
        revocations = cls(path=Path(path), ca_cert=ca_cert)
        revocations._stamp, revocations._serials = revocations._load()
        return revocations

    def __contains__(self, serial: object) -> bool:
        return serial in self._serials

    def __len__(self) -> int:
        return len(self._serials)

    def reload(self) -> bool:
        """Read the file again now; return whether the list was replaced.

        A file that cannot be loaded keeps the previous list; the error is logged, not raised.
        """
        if self._path is None:
            return False
        with self._lock:
            try:
                stamp, serials = self._load()
            except ConfigurationError as exc:
                log.error(
                    "CRL %s not reloaded, still refusing the %d serials loaded before: %s", self._path, len(self), exc
                )
                return False
            self._stamp = stamp
            if serials == self._serials:
                return False
            if dropped := self._serials - serials:
                # Revocation is never undone (`pki revoke` only adds), so a CRL that lists fewer of
                # the serials in force is an older one put back, by mistake or to un-revoke someone.
                log.error(
                    "CRL %s not reloaded: it no longer revokes %d of the %d serials in force (an older CRL put "
                    "back?); still refusing them all; restart the server to load a shorter list on purpose",
                    self._path,
                    len(dropped),
                    len(self._serials),
                )
                return False
            self._serials = serials
        log.warning("CRL %s reloaded: %d revoked certificates", self._path, len(serials))
        return True

    def reload_if_changed(self) -> bool:
        """Reload if the file's modification time, size or inode changed since it was loaded."""
        if self._path is None:
            return False
        try:
            stamp = _stamp(self._path)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return False
        return self.reload()

    def _load(self) -> tuple[_Stamp, frozenset[int]]:
        assert self._path is not None
        try:
            stamp = _stamp(self._path)
            data = self._path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"CRL {self._path}: {exc.strerror}") from None
        try:
            return stamp, load_crl_serials(data, self._ca_cert)
        except ConfigurationError as exc:
            raise ConfigurationError(f"CRL {self._path}: {exc}") from None


def _stamp(path: Path) -> _Stamp:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size, status.st_ino
