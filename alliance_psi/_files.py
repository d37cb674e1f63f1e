"""Writing a file so that nobody ever sees half of it, and secrets are never readable by others.

Used for key shares, signing keys, TLS keys and certificates, CRLs and investigator reports.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from alliance_psi.errors import ConfigurationError

__all__ = ["already_exists", "write_file_atomic"]


def already_exists(path: Path) -> ConfigurationError:
    """The error for a file that exists where replacing it needs ``--force``."""
    return ConfigurationError(f"{path} already exists (use --force / force=True to replace it)")


def write_file_atomic(path: Path, data: bytes, *, private: bool = True, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename.

    Readers see the old file or the whole new one. ``private`` files get mode 0600 before any
    byte is written. With ``replace=False`` an existing file is never clobbered, not even one
    that appears while writing (a hard link refuses an existing target). Raises
    ``ConfigurationError`` naming the path if it exists (``replace=False``) or cannot be written.
    """
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600 if private else 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise already_exists(path) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return path
