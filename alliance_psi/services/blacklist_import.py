"""Importing a blacklist file into the member node's database: every valid row in one transaction.

``import_records`` streams the importer's items (``identifiers.importer.BlacklistFile.read``) into
the node's database in one transaction and writes the rejected rows to a rejects file; a file
whose first ``WRONG_FILE_ROWS`` rows are nearly all rejected is taken for the wrong file and
nothing is imported (nor a rejects file written). ``import_blacklist`` does it for a file by its
path. ``node import`` (the CLI) and ``node run`` (its inbox) both import through here.

Security: raw identifiers stay on the node, in its database and its rejects file (created with
mode 0600, written beside its place and moved there only when the import ends without an
error). The tally counts rows and keeps the first rejections (row, field, reason: a reason
quotes a value only as a short truncated prefix), never a whole value.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alliance_psi.identifiers.importer import ImportRecord, Rejection

__all__ = [
    "REJECTS_KEPT",
    "SHOWN_PROBLEMS",
    "WRONG_FILE_ROWS",
    "WRONG_FILE_VALID",
    "ImportTally",
    "RejectsFile",
    "import_blacklist",
    "import_records",
]

# The rejects file keeps the first rejected rows only: a wrong file would otherwise write a copy of
# itself (a 50 MB junk file wrote 180 MB of rejects). The tally counts every one, by reason.
REJECTS_KEPT = 10_000
# A file whose first WRONG_FILE_ROWS data rows hold at most WRONG_FILE_VALID valid ones is not a
# blacklist (another export, the wrong column, the wrong encoding given): the import stops there.
WRONG_FILE_ROWS = 1_000
WRONG_FILE_VALID = 10
SHOWN_PROBLEMS = 10
_BATCH = 1000


@dataclass
class ImportTally:
    """What an import (or a withdrawal) did: ``figures`` by name; ``problems`` keeps only the first
    few rejections, ``reasons`` counts every one by field and kind of reason (never a value);
    ``stopped`` when the file was taken for a wrong one (nothing imported)."""

    figures: dict[str, int]
    rejected: int = 0
    problems: list[Rejection] = field(default_factory=list)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    stopped: bool = False

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.reasons[rejection.field, rejection.kind_of_reason] += 1
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(rejection)

    @property
    def stored(self) -> int:
        """Rows imported or already present (refreshed)."""
        return self.figures.get("imported", 0) + self.figures.get("duplicates", 0)


def _no_progress(row: int) -> None:
    return None


def import_blacklist(
    engine: Engine,
    path: Path,
    *,
    rejects_path: Path,
    default_type: str | None = None,
    encoding: str | None = None,
    strict: bool = False,
) -> ImportTally:
    """Import the blacklist file ``path`` (CSV, JSONL or XLSX) as ``import_records`` does.

    Raises:
        ImportFileError: the file cannot be read as a blacklist (no data rows, an encoding that
            does not decode, a missing column, ...): nothing is imported, no rejects file written.
        StorageError and SQLAlchemy's errors: the database failed; the transaction is rolled back.
    """
    from alliance_psi.identifiers.importer import BlacklistFile

    blacklist = BlacklistFile(path, encoding=encoding)
    items = blacklist.read(default_type=default_type)
    first = next(items)  # A file without data rows is refused here.
    return import_records(engine, chain([first], items), rejects_path=rejects_path, strict=strict)


def import_records(
    engine: Engine,
    items: Iterator[ImportRecord | Rejection],
    *,
    rejects_path: Path,
    strict: bool = False,
    advance: Callable[[int], None] = _no_progress,
) -> ImportTally:
    """Stream ``items`` into the database in one transaction, rolled back in strict mode with
    rejections and when the file looks like a wrong one (see ``WRONG_FILE_ROWS``); then no
    rejects file is written either: nothing in it would help fix a wrong file, and it would be
    one more copy of its raw values. ``advance(row)`` is called after each batch of rows."""
    from alliance_psi.identifiers.importer import Rejection
    from alliance_psi.storage import MemberRepository

    now = datetime.now(UTC)
    figures = {"rows read": 0, "imported": 0, "duplicates": 0, "rejected": 0, "expired (purged)": 0}
    tally = ImportTally(figures)
    judged = False  # Whether the first WRONG_FILE_ROWS rows were looked at as a whole.
    with RejectsFile(rejects_path) as rejects, engine.connect() as conn, conn.begin() as transaction:
        repo = MemberRepository(conn)
        while batch := list(islice(items, _BATCH)):
            records = []
            for item in batch:
                if isinstance(item, Rejection):
                    tally.reject(item)
                    rejects.write(item)
                else:
                    records.append(_stored(item))
            inserted, duplicates = repo.upsert_identifiers(records, at=now)
            figures.update(
                {
                    "rows read": figures["rows read"] + len(batch),
                    "imported": figures["imported"] + inserted,
                    "duplicates": figures["duplicates"] + duplicates,
                }
            )
            advance(batch[-1].row)
            if not judged and figures["rows read"] >= WRONG_FILE_ROWS:
                judged, tally.stopped = True, _looks_wrong(figures["rows read"], tally.rejected)
                if tally.stopped:
                    rejects.discard()
                    break
        figures.update({"rejected": tally.rejected, "expired (purged)": repo.purge_expired(now)})
        if tally.stopped or (strict and tally.rejected):
            transaction.rollback()
            figures.update({"imported": 0, "duplicates": 0, "expired (purged)": 0})
    return tally


def _looks_wrong(rows: int, rejected: int) -> bool:
    """Whether ``rows`` rows read (``WRONG_FILE_ROWS``, or the batch that reached it) with
    ``rejected`` of them rejected hold too few valid ones for a blacklist."""
    return rows - rejected <= WRONG_FILE_VALID * rows // WRONG_FILE_ROWS


def _stored(record: ImportRecord) -> dict[str, Any]:
    """The repository row for a record (the database keeps an absent severity as "")."""
    return {
        "type": record.type,
        "canonical": record.canonical,
        "category": record.category,
        "severity": record.severity or "",
        "first_seen": record.first_seen,
        "case_ref": record.case_ref,
        "note": record.note,
        "expires_at": record.expires_at,
        "spelling": record.spelling,
    }


class RejectsFile:
    """Rejected rows as CSV in UTF-8 with a BOM (so Excel opens it): row, field, reason, then the
    original cells; the first ``REJECTS_KEPT`` of them, then, if there were more, a last row that
    says how many were left out. Holds raw identifiers, so it is created with mode 0600; it is
    written beside its place and moved there only when the import ends without an error, so a
    failed import leaves no half-written rejects file (and an earlier one stays as it was), and
    not at all once ``discard`` is called."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._temporary = ""
        self._columns: list[str] = []
        self._rejected = 0
        self._discarded = False

    def __enter__(self) -> RejectsFile:
        return self

    def write(self, rejection: Rejection) -> None:
        self._rejected += 1
        if self._rejected > REJECTS_KEPT:
            return
        if self._handle is None:
            descriptor, self._temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            self._handle = open(descriptor, "w", encoding="utf-8-sig", newline="")
            self._columns = list(rejection.raw)
            csv.writer(self._handle).writerow(["row", "field", "reason", *self._columns])
        cells = [rejection.raw.get(column, "") for column in self._columns]
        csv.writer(self._handle).writerow([rejection.row, rejection.field, rejection.reason, *cells])

    def discard(self) -> None:
        """Write nothing: what was written is deleted on exit, and further rows are not written."""
        self._discarded = True

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if self._handle is None:
            return
        if self._rejected > REJECTS_KEPT:
            left_out = f"{self._rejected - REJECTS_KEPT:,} more rejected rows not written (capped at {REJECTS_KEPT:,})"
            csv.writer(self._handle).writerow(["…", "", left_out])
        self._handle.close()
        if error_type is None and not self._discarded:
            os.replace(self._temporary, self.path)
        else:
            os.unlink(self._temporary)
