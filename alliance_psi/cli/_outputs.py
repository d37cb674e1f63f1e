"""The files a command will write, checked before it does any work (``custodian deal``, ``keygen``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from alliance_psi.errors import ConfigurationError

__all__ = ["check_outputs", "out_options"]

F = TypeVar("F", bound=Callable[..., Any])


def out_options(files: str) -> Callable[[F], F]:
    """``--out`` (a folder for ``files``) and ``--force`` (replace files that exist there)."""

    def decorate(function: F) -> F:
        function = click.option("--force", is_flag=True, help="Overwrite existing files in --out.")(function)
        return click.option(
            "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help=f"Folder for {files}."
        )(function)

    return decorate


def check_outputs(folder: Path, files: Sequence[Path], *, force: bool) -> None:
    """Refuse to go on when any of ``files`` (in ``folder``) exists, unless ``force``, or when
    ``folder`` could not be made and written: before a command spends a key ceremony or draws a
    key it could not keep. Creates nothing.

    Raises:
        ConfigurationError: naming the files that exist, or the folder and why it cannot hold them.
    """
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise ConfigurationError(f"{', '.join(existing)} exist; pass --force to replace them")
    nearest = folder
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise ConfigurationError(f"--out {folder}: {nearest} is not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigurationError(f"--out {folder}: {nearest} is not writable by this user")
