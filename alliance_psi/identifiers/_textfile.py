"""The text of a member's CSV or JSONL file: its encoding decided over the whole file, then its lines.

Contract of ``survey(path, encoding=None)``, one streaming pass over the file in constant memory:

- With ``encoding`` (any Python text codec): every byte must decode in it. A UTF-8 byte-order mark
  is skipped when the codec is UTF-8.
- Without, in this order (docs/file-format.md explains it to members):

  1. A UTF-8 byte-order mark means UTF-8; a UTF-16 one is refused (save as CSV UTF-8).
  2. A file of ASCII bytes only is ASCII.
  3. UTF-8, GB18030 and Big5 are each checked against every byte; those that decode the whole
     file are the candidates.
  4. A file whose lines are UTF-8 Chinese but which is not UTF-8 as a whole mixes encodings (one
     row pasted from a GB18030 file) and is refused with the first byte that is not UTF-8.
  5. No candidate: refused, naming the first byte that is not UTF-8 and the first that is not
     GB18030.
  6. UTF-8 among the candidates: UTF-8, unless the detector below prefers another (a short
     GB18030 text can be valid UTF-8 by chance).
  7. GB18030 (and not UTF-8) whose text lies within GB2312, the 6,763 characters of everyday
     simplified Chinese: GB18030.
  8. Otherwise charset-normalizer, given the file's first 64 KiB of lines with non-ASCII bytes and
     only the candidates, picks the encoding whose reading looks like language. Big5 is refused
     (its bytes also decode as GB18030, into garbled characters that would never match), and so
     is a file none of whose readings looks like text.

  The detector is the well-kept library of the field (the one requests uses); steps 4 and 7 are
  the two facts about Chinese text it does not check, so they are written here.

Every refusal is an ``ImportFileError`` naming the file, the byte, its line (1-based) and its offset
(bytes from the start, 0-based). ``survey`` returns the ``TextEncoding``; ``text_lines`` then
yields the lines in it, each keeping its end (``\\r\\n``, ``\\r`` or ``\\n``).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alliance_psi.errors import ImportFileError

__all__ = ["TextEncoding", "opened", "survey", "text_codec", "text_lines"]

_CHUNK = 64 * 1024
_SAMPLE_BYTES = 64 * 1024
_SAMPLED_LINE_BYTES = 4 * 1024
_CANDIDATES = ("utf-8", "gb18030", "big5")
_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "ascii": "ASCII", "gb18030": "GB18030", "big5": "Big5"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Chinese as UTF-8 writes: CJK symbols and punctuation, ideographs, compatibility ideographs, full-width forms.
_CHINESE = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_LINE_END = re.compile(r"\r\n|\r|\n")
_SAVE_AS = "save it as CSV UTF-8, or name its encoding with --encoding"


@dataclass(frozen=True, slots=True)
class TextEncoding:
    """How a text file is read: ``codec`` decodes it, ``name`` is shown to people, ``detected`` is
    false when the caller named the encoding; ``lines`` counts its lines (a last one without a
    line end included)."""

    codec: str
    name: str
    detected: bool
    lines: int


@contextmanager
def opened(path: Path) -> Iterator[BinaryIO]:
    """``open(path, "rb")``, with ``OSError`` as ``ImportFileError``."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


def survey(path: Path, encoding: str | None = None) -> TextEncoding:
    """Read the file at ``path`` once and return the encoding to read it in (see the module)."""
    given = text_codec(encoding) if encoding is not None else None
    with opened(path) as raw:
        head = raw.read(_CHUNK)
        bom = head.startswith(codecs.BOM_UTF8)
        if given is None and head.startswith(_UTF16_BOMS):
            raise ImportFileError(f"{path}: UTF-16 text (Excel's 'Unicode text'); {_SAVE_AS}")
        codecs_to_check = (given,) if given is not None else ("utf-8",) if bom else _CANDIDATES
        decodings = [_Decoding(codec) for codec in codecs_to_check]
        lines, sample = _Lines(), _Sample()
        chunk = head[len(codecs.BOM_UTF8) :] if bom and codecs_to_check[0] == "utf-8" else head
        start = len(head) - len(chunk)
        ascii_only = True
        while chunk:
            following = raw.read(_CHUNK)
            for decoding in decodings:
                decoding.feed(chunk, start, lines, final=not following)
            ascii_only = ascii_only and chunk.isascii()
            sample.feed(chunk)
            lines.feed(chunk)
            start, chunk = start + len(chunk), following
    if given is not None:
        _require(decodings[0], path, f"is not valid {given} (the encoding given)")
        codec = "utf-8-sig" if bom and given == "utf-8" else given
        return TextEncoding(codec, _NAMES.get(codec, given), False, lines.total(start))
    if bom:
        _require(decodings[0], path, "is not valid UTF-8, though the file starts with a UTF-8 byte-order mark")
        return TextEncoding("utf-8-sig", _NAMES["utf-8-sig"], True, lines.total(start))
    codec = "ascii" if ascii_only else _decide(path, {d.codec: d.failure for d in decodings}, sample.finish())
    return TextEncoding(codec, _NAMES[codec], True, lines.total(start))


@contextmanager
def text_lines(path: Path, encoding: TextEncoding) -> Iterator[Iterator[str]]:
    """The lines of the text file at ``path`` in ``encoding``; the file closes on exit."""
    with opened(path) as raw:
        yield _lines(_decoded(raw, path, encoding))


# The decision (steps 4 to 8 of the module docstring). ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    """The first byte a codec could not decode: its value, offset and line."""

    byte: int
    offset: int
    line: int

    def __str__(self) -> str:
        return f"byte {self.byte:#04x} at line {self.line}, offset {self.offset}"


def _decide(path: Path, failures: dict[str, _Failure | None], sample: list[bytes]) -> str:
    valid = [codec for codec, failure in failures.items() if failure is None]
    not_utf8, not_gb18030 = failures["utf-8"], failures["gb18030"]
    if not_utf8 is not None and _reads_as_utf8(sample):
        raise ImportFileError(
            f"{path}: mixed encodings: the file is UTF-8 Chinese, but {not_utf8} is not UTF-8 "
            "(a row saved in another encoding?); save the whole file as CSV UTF-8"
        )
    if not_utf8 is not None and not_gb18030 is not None:
        raise ImportFileError(f"{path}: not UTF-8 ({not_utf8}) nor GB18030 ({not_gb18030}); {_SAVE_AS}")
    if valid == ["utf-8"]:
        return "utf-8"
    if not_utf8 is not None and sample and _within_gb2312(b"\n".join(sample)):
        return "gb18030"
    pick = _detected(b"\n".join(sample), valid)
    if pick is None and not_utf8 is None:
        return "utf-8"
    if pick == "big5":
        raise ImportFileError(
            f"{path}: looks like Big5 (traditional Chinese), which also decodes as GB18030 but into garbled "
            "text that would never match; save it as CSV UTF-8, or pass --encoding big5 (or --encoding "
            "gb18030 if it really is GB18030)"
        )
    if pick is None:
        raise ImportFileError(f"{path}: not UTF-8 ({not_utf8}), and read as GB18030 it is not text; {_SAVE_AS}")
    return pick


def _reads_as_utf8(sample: list[bytes]) -> bool:
    """Whether at least as many sampled lines read as Chinese in UTF-8 as are not UTF-8 at all.

    GB18030 bytes that happen to be valid UTF-8 decode mostly to Latin, Greek or Cyrillic letters,
    never to a line of Chinese: a line of UTF-8 Chinese was written in UTF-8.
    """
    chinese = invalid = 0
    for line in sample:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            invalid += 1
            continue
        non_ascii = sum(1 for char in text if not char.isascii())
        chinese += 2 * len(_CHINESE.findall(text)) > non_ascii
    return chinese > 0 and chinese >= invalid


def _within_gb2312(sample: bytes) -> bool:
    try:
        sample.decode("gb18030").encode("gb2312")
    except UnicodeError:
        return False
    return True


def _detected(sample: bytes, candidates: list[str]) -> str | None:
    """The candidate charset-normalizer finds most plausible for ``sample``, or None."""
    from charset_normalizer import from_bytes  # Only files that need a decision load it.

    if not sample:
        return None
    best = from_bytes(sample, cp_isolation=candidates).best()
    return codecs.lookup(best.encoding).name if best is not None else None


# Reading: decoders, lines, the sample. ---------------------------------------------------------


def text_codec(name: str) -> str:
    """The canonical name of the Python text codec ``name``; ``ImportFileError`` if there is none."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ImportFileError(f"unknown encoding {name!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ImportFileError(f"{name!r} is not a text encoding")
    return info.name


class _Decoding:
    """A codec checked incrementally against a file: ``failure`` is its first undecodable byte."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.failure: _Failure | None = None
        self._decoder = codecs.getincrementaldecoder(codec)("strict")

    def feed(self, chunk: bytes, start: int, lines: _Lines, *, final: bool) -> None:
        if self.failure is not None:
            return
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            # exc.object is the bytes held back from the last chunk followed by this one.
            at = start - pending + exc.start
            self.failure = _Failure(exc.object[exc.start], at, lines.line_at(chunk, max(at - start, 0)))


def _require(decoding: _Decoding, path: Path, what: str) -> None:
    if decoding.failure is not None:
        raise ImportFileError(f"{path}: {decoding.failure} {what}")


class _Lines:
    """Counts line ends (``\\r\\n``, ``\\r`` or ``\\n``) across chunks."""

    def __init__(self) -> None:
        self.ends, self._after_cr, self._last = 0, False, b"\n"

    def feed(self, chunk: bytes) -> None:
        self.ends += self._count(chunk)
        self._after_cr, self._last = chunk.endswith(b"\r"), chunk[-1:]

    def line_at(self, chunk: bytes, position: int) -> int:
        """The line of byte ``position`` of ``chunk``, the chunk after those fed."""
        return self.ends + self._count(chunk[:position]) + 1

    def total(self, size: int) -> int:
        return self.ends + (size > 0 and self._last not in (b"\n", b"\r"))

    def _count(self, data: bytes) -> int:
        joined = self._after_cr and data.startswith(b"\n")  # "\r" ended the last chunk, "\n" starts this.
        return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") - joined


class _Sample:
    """The first ``_SAMPLE_BYTES`` of lines that hold non-ASCII bytes, each cut to at most
    ``_SAMPLED_LINE_BYTES``. A line ends at ``\\n``, never part of a multi-byte character in UTF-8,
    GB18030 or Big5, and a long one is cut where a character ends in each of them that reads it,
    so every sampled line is whole text in every candidate."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._size = 0
        self._partial = b""
        self._overlong = False

    def feed(self, chunk: bytes) -> None:
        if self._size >= _SAMPLE_BYTES:
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if lines and self._overlong:
            lines.pop(0)  # The rest of a line too long to sample.
            self._overlong = False
        for line in lines:
            self._take(line)
        if len(self._partial) > _SAMPLED_LINE_BYTES:
            self._take(self._partial)
            self._partial, self._overlong = b"", True

    def finish(self) -> list[bytes]:
        if not self._overlong:
            self._take(self._partial)
        return self._lines

    def _take(self, line: bytes) -> None:
        if len(line) > _SAMPLED_LINE_BYTES:
            line = _whole_prefix(line[:_SAMPLED_LINE_BYTES])
        if not line.isascii() and self._size < _SAMPLE_BYTES:
            self._lines.append(line.rstrip(b"\r"))
            self._size += len(line) + 1


def _whole_prefix(prefix: bytes) -> bytes:
    """The longest start of ``prefix`` (itself the start of a line) that ends where a character
    ends in every candidate that reads ``prefix`` at all; empty if there is none nearby."""
    readers = [codec for codec in _CANDIDATES if _decodes(prefix, codec, final=False)]
    # A character has at most 4 bytes in each candidate, so a common end lies among the last few.
    for cut in range(len(prefix), max(len(prefix) - 8, 0), -1):
        if all(_decodes(prefix[:cut], codec, final=True) for codec in readers):
            return prefix[:cut]
    return b""


def _decodes(data: bytes, codec: str, *, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder(codec)("strict").decode(data, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _decoded(raw: BinaryIO, path: Path, encoding: TextEncoding) -> Iterator[str]:
    """Yield the text of ``raw`` in chunks (``survey`` checked every byte; a file changed since then
    is an ``ImportFileError``)."""
    decoder = codecs.getincrementaldecoder(encoding.codec)("strict")
    offset = 0
    while True:
        data = raw.read(_CHUNK)
        try:
            yield decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            at = offset - len(exc.object) + len(data) + exc.start
            raise ImportFileError(
                f"{path}: byte {exc.object[exc.start]:#04x} at offset {at} is not valid {encoding.name}; "
                "did the file change while it was imported?"
            ) from None
        if not data:
            return
        offset += len(data)


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
