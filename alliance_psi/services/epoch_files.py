"""Reading a key epoch's files from disk: a custodian's share (secret) and the public epoch file.

The formats are ``crypto.key_shares``' (a chain share) and ``crypto.threshold_keys``' (a threshold
share and the public epoch file); this module only reads the files and names them in every error.
A share file must be readable by its owner only (``read_secret``) and is read once.
"""

from __future__ import annotations

from pathlib import Path

from alliance_psi._files import read_secret
from alliance_psi.crypto.key_shares import KeyShare
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare, is_threshold_share
from alliance_psi.errors import ConfigurationError

__all__ = ["load_key_share", "load_public_epoch", "load_threshold_share"]


def _read_share(path: Path) -> bytes:
    try:
        return read_secret(path, what="key share")
    except OSError as exc:
        raise ConfigurationError(f"key share {path}: {exc.strerror}") from None


def _threshold_share(path: Path, data: bytes) -> ThresholdShare:
    try:
        return ThresholdShare.from_bytes(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"key share {path}: {exc}") from None


def load_threshold_share(path: Path) -> ThresholdShare:
    """The threshold share in ``path`` (mode 0600 required); never shown in an error.

    Raises:
        ConfigurationError: unreadable, open to others, or not a valid share file; names the file.
    """
    return _threshold_share(path, _read_share(path))


def load_key_share(path: Path) -> KeyShare | ThresholdShare:
    """The chain share (``custodian init-share``) or threshold share in ``path``, whichever it holds.

    Raises:
        ConfigurationError: unreadable, open to others, or not a valid share file of either kind.
    """
    data = _read_share(path)
    if is_threshold_share(data):
        return _threshold_share(path, data)
    try:
        return KeyShare.from_bytes(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"key share {path}: {exc}") from None


def load_public_epoch(path: Path) -> PublicEpoch:
    """The public epoch file at ``path``, checked (``PublicEpoch.check``).

    Raises:
        ConfigurationError: unreadable, or not a consistent public epoch file; names the file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"public epoch file {path}: {exc.strerror}") from None
    try:
        return PublicEpoch.from_bytes(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"public epoch file {path}: {exc}") from None
