"""Writing a file so that nobody ever sees half of it, and reading secrets only others cannot read.

``write_file_atomic`` writes key shares, signing keys, TLS keys and certificates, CRLs and
investigator reports; ``read_secret`` reads back the private keys, key shares, signing key,
label-nonce key and CA key, refusing any that group or others may open.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from alliance_psi.errors import ConfigurationError

__all__ = ["already_exists", "read_secret", "write_file_atomic"]


def already_exists(path: Path) -> ConfigurationError:
    """The error for a file that exists where replacing it needs ``--force``."""
    return ConfigurationError(f"{path} already exists (use --force to replace it)")


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


def read_secret(path: Path, *, what: str) -> bytes:
    """Read a secret file (a private key, key share, signing key or label-nonce key) that only its
    owner may open, as ssh does with private keys; a drop-in for ``path.read_bytes()``.

    The mode is checked on the opened file (a symbolic link is followed to it), so the check and
    the read see the same file. Raises ``OSError`` as ``open`` does (callers name the file in
    their own words), and ``ConfigurationError`` naming ``what`` and the path, with the ``chmod``
    that fixes it, for a file its group or others may read, write or run, or not a regular file.
    """
    path = Path(path)
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"{what} {path} is not a regular file")
        if mode & 0o077:
            raise ConfigurationError(
                f"{what} {path} is open to group or others (mode {stat.S_IMODE(mode):04o}) and holds a secret: "
                f"run `chmod 600 {path}`"
            )
        return handle.read()
