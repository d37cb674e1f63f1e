"""The text of a member's CSV or JSONL file: opened, decoded and split into lines, in constant memory.

Contract of the encoding: the text is UTF-8, UTF-8 with a BOM, or GB18030 (Excel on Chinese
Windows), chosen deterministically: a BOM means UTF-8; otherwise ASCII (the same in all three)
passes through and the 64 KiB from the first non-ASCII byte decide, UTF-8 first. A byte no
candidate accepts there, or that the chosen one rejects later, is an ``ImportFileError`` naming the
file and the byte offset: the encoding never switches mid-file, which would turn text into mojibake
silently. Lines end in ``\\r\\n``, ``\\r`` or ``\\n``, and keep their ending.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from alliance_psi.errors import ImportFileError

__all__ = ["count_lines", "opened", "text_lines"]

_CHUNK = 64 * 1024
_ASCII = re.compile(rb"[\x00-\x7f]*")
_LINE_END = re.compile(r"\r\n|\r|\n")


@contextmanager
def opened(path: Path) -> Iterator[BinaryIO]:
    """``open(path, "rb")``, with ``OSError`` as ``ImportFileError``."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


@contextmanager
def text_lines(path: Path) -> Iterator[Iterator[str]]:
    """The lines of the text file at ``path``, decoded as the module says; the file closes on exit."""
    with opened(path) as raw:
        yield _lines(_decoded(raw, path))


def count_lines(path: Path) -> int:
    """Return the lines of the file at ``path``, a last one without a line end included."""
    newlines, returns, last = 0, 0, b"\n"
    with opened(path) as raw:
        while chunk := raw.read(_CHUNK):
            newlines, returns, last = newlines + chunk.count(b"\n"), returns + chunk.count(b"\r"), chunk[-1:]
    return max(newlines, returns) + (last not in (b"\n", b"\r"))


def _decoded(raw: BinaryIO, path: Path) -> Iterator[str]:
    """Yield the text of ``raw`` in chunks, in the encoding the module docstring says."""
    data, offset = raw.read(_CHUNK), 0
    if data.startswith(codecs.BOM_UTF8):
        encoding, data, offset = "utf-8", data[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
    else:
        while data and (ascii_end := _ASCII.match(data).end()) == len(data):  # type: ignore[union-attr]
            yield data.decode("ascii")
            offset, data = offset + len(data), raw.read(_CHUNK)
        if not data:
            return
        yield data[:ascii_end].decode("ascii")
        offset, data = offset + ascii_end, data[ascii_end:]
        while len(data) < _CHUNK and (more := raw.read(_CHUNK)):
            data += more
        encoding = _choose_encoding(data, offset, len(data) < _CHUNK, path)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    while True:
        pending = len(decoder.getstate()[0])
        try:
            yield decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{path}: byte {exc.object[exc.start]:#04x} at offset {offset - pending + exc.start} "
                f"is not valid {encoding.upper()}, the encoding of the file's start"
            ) from None
        if not data:
            return
        offset, data = offset + len(data), raw.read(_CHUNK)


def _choose_encoding(window: bytes, offset: int, final: bool, path: Path) -> str:
    failed_at = []
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)("strict").decode(window, final=final)
            return encoding
        except UnicodeDecodeError as exc:
            failed_at.append(exc.start)
    at = max(failed_at)  # Where the last candidate gave up.
    raise ImportFileError(
        f"{path}: byte {window[at]:#04x} at offset {offset + at} is not valid UTF-8 or GB18030; "
        "save the file as CSV UTF-8"
    )


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Split text into lines ending in ``\\r\\n``, ``\\r`` or ``\\n`` (kept), across chunk borders."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        start = 0
        for match in _LINE_END.finditer(pending):
            if match.end() == len(pending) and match.group() == "\r":
                break  # A "\n" may follow in the next chunk.
            yield pending[start : match.end()]
            start = match.end()
        pending = pending[start:]
    if pending:
        yield pending
