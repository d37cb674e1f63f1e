"""The member node's inbox: a folder where the bank's own systems drop blacklist files.

``node run`` imports each file that is complete, oldest first, one at a time, each in one
transaction (``services.blacklist_import``), then moves it to ``done/`` or ``failed/`` inside the
inbox, with its rejects file beside it (``NAME.rejects.csv``) and, for a file that could not be
read at all, a ``NAME.error.txt`` saying why.

When a file is complete (the settle rule):

- a name that starts with ``.`` or ends with ``.part`` or ``.tmp`` is never picked up: write a
  file as ``list.csv.part`` and rename it to ``list.csv`` when it is complete (a rename within
  one file system is atomic) and it is picked up whole;
- any other file is picked up once its size and modification time have not changed for
  ``settle_seconds`` (two looks at least that far apart, and its modification time at least that
  old), for writers that cannot rename.

A file whose name does not end in ``.csv``, ``.jsonl``, ``.ndjson`` or ``.xlsx`` goes to
``failed/`` unread. Files keep their names in ``done/`` and ``failed/``; a name already there
gets a suffix (``list.1.csv``). A file is moved only after its import committed or was rolled
back, so a node stopped in between imports the file again when it starts (an import of the same
rows changes nothing, not even their change stamps).

Security: the files hold raw identifiers; so do the rejects files (mode 0600). Nothing here logs
a value: the caller logs file names, counts, rows, fields and kinds of reasons.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ACCEPTED_SUFFIXES", "Inbox", "Placed"]

ACCEPTED_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".xlsx")
_IGNORED_SUFFIXES = (".part", ".tmp")
DONE, FAILED = "done", "failed"


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a finished file went: the file itself and, if any, its rejects and error files."""

    file: Path
    rejects: Path | None = None
    error: Path | None = None


@dataclass
class Inbox:
    """The inbox folder ``folder`` (created 0700 with ``done/`` and ``failed/`` on ``prepare``)."""

    folder: Path
    settle_seconds: float = 2.0
    clock: Callable[[], float] = time.time
    _seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # name -> (size, mtime_ns, first seen)

    def prepare(self) -> None:
        """Create the folder and its ``done/`` and ``failed/`` folders if missing (mode 0700), and
        delete the rejects files an import stopped in the middle (SIGKILL, power cut) left
        half-written: they hold raw identifiers, and the file's import is done again whole."""
        for folder in (self.folder, self.folder / DONE, self.folder / FAILED):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # ``RejectsFile`` writes ``rejects_path`` as a temporary file named after it, then renames it.
        for stale in self.folder.glob("..*.rejects.csv.*"):
            stale.unlink(missing_ok=True)

    def ready(self) -> list[Path]:
        """The files complete by the settle rule, oldest first (by modification time, then name)."""
        now = self.clock()
        found: list[tuple[int, str, Path]] = []
        seen: dict[str, tuple[int, int, float]] = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name.endswith(_IGNORED_SUFFIXES):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # Renamed or removed while we looked.
                    continue
                size, mtime = info.st_size, info.st_mtime_ns
                previous = self._seen.get(entry.name)
                first_seen = previous[2] if previous is not None and previous[:2] == (size, mtime) else now
                seen[entry.name] = (size, mtime, first_seen)
                if now - first_seen >= self.settle_seconds and now - mtime / 1e9 >= self.settle_seconds:
                    found.append((mtime, entry.name, Path(entry.path)))
        self._seen = seen
        return [path for _, _, path in sorted(found)]

    @staticmethod
    def accepted(path: Path) -> bool:
        """Whether ``path`` has the suffix of a file ``node import`` reads."""
        return path.suffix.lower() in ACCEPTED_SUFFIXES

    def rejects_path(self, path: Path) -> Path:
        """Where the import of ``path`` writes its rejects: hidden in the inbox until the file is placed."""
        return self.folder / f".{path.name}.rejects.csv"

    def place(self, path: Path, *, failed: bool, error: str | None = None) -> Placed:
        """Move ``path`` to ``done/`` or ``failed/``, its rejects file (if its import wrote one) beside
        it as ``NAME.rejects.csv``, and ``error`` (if given) into ``NAME.error.txt``."""
        target_folder = self.folder / (FAILED if failed else DONE)
        target = _free_name(target_folder, path.name)
        rejects_from, rejects = self.rejects_path(path), None
        if rejects_from.exists():
            rejects = target.with_name(target.name + ".rejects.csv")
            os.replace(rejects_from, rejects)
        os.replace(path, target)  # FileNotFoundError if it was taken out of the inbox meanwhile.
        self._seen.pop(path.name, None)
        error_file = None
        if error is not None:
            error_file = target.with_name(target.name + ".error.txt")
            descriptor = os.open(error_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "w", encoding="utf-8") as handle:
                handle.write(error.rstrip("\n") + "\n")
        return Placed(target, rejects, error_file)


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem.N.suffix`` with the first N not taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 0
    while candidate.exists() or candidate.with_name(candidate.name + ".rejects.csv").exists():
        number += 1
        candidate = folder / f"{stem}.{number}{suffix}"
    return candidate
