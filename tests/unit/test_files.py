"""Secret files: read only when nobody but their owner may open them, as ssh does with private keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alliance_psi._files import read_secret, write_file_atomic
from alliance_psi.errors import ConfigurationError


def secret(tmp_path: Path, mode: int, name: str = "signing.key") -> Path:
    path = tmp_path / name
    path.write_bytes(b"secret bytes")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_file_only_its_owner_may_open_is_read(tmp_path: Path, mode: int) -> None:
    assert read_secret(secret(tmp_path, mode), what="signing key") == b"secret bytes"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o666])
def test_a_file_group_or_others_may_open_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = secret(tmp_path, mode)
    with pytest.raises(ConfigurationError) as refused:
        read_secret(path, what="signing key")
    assert str(refused.value) == (
        f"signing key {path} is open to group or others (mode {mode:04o}) and holds a secret: run `chmod 600 {path}`"
    )


def test_a_link_is_judged_by_the_file_it_points_to(tmp_path: Path) -> None:
    private, public = secret(tmp_path, 0o600, "a.key"), secret(tmp_path, 0o644, "b.key")
    (tmp_path / "to-private").symlink_to(private)
    (tmp_path / "to-public").symlink_to(public)
    assert os.lstat(tmp_path / "to-private").st_mode & 0o077  # The link itself is 0777.
    assert read_secret(tmp_path / "to-private", what="key") == b"secret bytes"
    with pytest.raises(ConfigurationError, match="mode 0644"):
        read_secret(tmp_path / "to-public", what="key")


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_secret(tmp_path / "none", what="key")


def test_a_file_that_is_not_a_regular_one_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # So that opening it to read does not block.
    try:
        with pytest.raises(ConfigurationError, match="is not a regular file"):
            read_secret(fifo, what="key")
    finally:
        os.close(writer)


def test_what_write_file_atomic_writes_privately_reads_back(tmp_path: Path) -> None:
    path = write_file_atomic(tmp_path / "share", b"\x01\x02")
    assert read_secret(path, what="key share") == b"\x01\x02"
