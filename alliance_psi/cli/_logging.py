"""The one place logging is set up: every serve command calls ``configure_logging`` first.

Records go to stderr, as text (``2026-11-30T20:08:59.134Z INFO alliance_psi.services.server:
serving … key=value``) or as JSON lines (``{"timestamp": …, "level": …, "logger": …,
"message": …, <fields>}``; python-json-logger). The level is alliance-psi's own loggers'; every
other library logs warnings and errors only, and SQLAlchemy is held there whatever the root
says: at INFO it logs each statement, at DEBUG each row read, and on a member node a row is a
raw identifier.

A database error in a logged exception is shown by its class, SQLSTATE and table or constraint
names, never with the statement's parameters or PostgreSQL's DETAIL line (which quotes the
row: a token, a label, an identifier): ``describe_database_error``, the one rule of every layer
(``alliance_psi._database_errors``). Engines also hide parameters themselves
(``storage.engine``), so an error raised elsewhere carries none either.

gRPC's C core writes its own lines to stderr, apart from ``logging`` (an INFO line for every
failed TLS handshake: any port scan). ``alliance-psi`` sets ``GRPC_VERBOSITY=ERROR`` before gRPC
loads unless the environment already says otherwise (``cli.main``), so what remains of it is its
errors, as plain lines; ``GRPC_VERBOSITY=INFO`` in the environment brings the rest back.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import Any, TextIO

import click
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from alliance_psi._database_errors import describe_database_error
from alliance_psi.config import MonitoringConfig

__all__ = ["announce", "configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ANNOUNCER = "alliance_psi.cli"


def configure_logging(config: MonitoringConfig, *, stream: TextIO | None = None) -> None:
    """Send log records to ``stream`` (stderr) as ``config`` says; calling it again replaces the setup."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_JsonLines() if config.log_format == "json" else _TextLines())
    handler._alliance_psi = True  # type: ignore[attr-defined]  # Ours: replaced on the next call.
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_alliance_psi", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("alliance_psi").setLevel(_LEVELS[config.log_level])
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.captureWarnings(True)


def announce(text: str) -> None:
    """Say a serve command's start-up line (what it serves, what it warns about) on stderr,
    whatever the log level: as it is, or with ``--log-format json`` as a JSON record of logger
    ``alliance_psi.cli`` (level WARNING for a line that starts ``warning:``), so that stderr
    holds JSON lines only."""
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_alliance_psi", False)]
    if not ours or not isinstance(ours[0].formatter, _JsonLines):
        click.echo(text, err=True)
        return
    level = logging.WARNING if text.startswith("warning:") else logging.INFO
    ours[0].handle(logging.getLogger(_ANNOUNCER).makeRecord(_ANNOUNCER, level, "", 0, text, (), None))


def _format_exception(exc: BaseException) -> str:
    """A traceback of ``exc`` and its causes, database errors described by ``describe_database_error``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for index, item in enumerate(reversed(chain)):
        if index:
            explicit = item.__cause__ is chain[len(chain) - index]  # The one shown just above.
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if explicit
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        if item.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(item.__traceback__))
        described = describe_database_error(item)
        if described is None:
            parts.extend(traceback.format_exception_only(item))
        else:
            parts.append(f"{type(item).__module__}.{type(item).__qualname__}: {described}\n")
    return "".join(parts).rstrip("\n")


class _TextLines(logging.Formatter):
    """``TIMESTAMP LEVEL logger: message key=value …``, then the sanitized traceback if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record)

    def formatException(self, ei: Any) -> str:
        return _format_exception(ei[1])

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # Another handler's cached text is not sanitized: format it anew.
        line = super().format(record)
        fields = " ".join(f"{key}={value!r}" for key, value in _extra_fields(record).items())
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {fields}{newline}{rest}"


class _JsonLines(JsonFormatter):
    """One JSON object per record: ``timestamp``, ``level``, ``logger``, ``message``, the
    record's fields (``extra=``), and ``exc_info`` with the sanitized traceback."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = _utc_timestamp(record)
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: Any) -> str:
        return _format_exception(ei[1])

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None
        return super().format(record)


def _utc_timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-30T20:08:59.134Z``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in RESERVED_ATTRS and key not in ("message", "asctime") and not key.startswith("_")
    }
