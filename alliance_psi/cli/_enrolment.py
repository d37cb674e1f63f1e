"""``member`` (and, at the coordinator, ``admin``) commands: a server operator's enrolment list.

Each server's own operator runs them against that server's own database, while it runs or not;
a running server sees the change within about a second (``services.enrolment``). Enrol from a
certificate the member itself sent you, and compare its key pin with the member's, since whoever
holds the alliance CA can issue a certificate for any name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from alliance_psi.cli._options import DATABASE_URL, reported

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alliance_psi.services.enrolment import EnrolmentRoster

__all__ = ["echo_enrolment", "enrolment_group"]

_DATABASE_HELP = "This server's database URL (as given to its serve command)."


def _engine(database: str, *, server: str, create: bool = False) -> Engine:
    """An engine on the server's database with its tables. Only ``add`` (``create``) may start a
    new SQLite file, and says so on stderr: a typo in ``--database`` must not enrol a member into a
    database no server reads, nor list an empty one as if the server had no members.

    Raises:
        ConfigurationError: without ``create``, the SQLite file does not exist.
    """
    from alliance_psi.config import sqlite_file
    from alliance_psi.errors import ConfigurationError
    from alliance_psi.storage import create_schema, make_engine

    file = sqlite_file(database)
    new = None if file is None or file.exists() else file.resolve()
    if new is not None and not create:
        raise ConfigurationError(
            f"no database at {new}: give --database as this {server}'s serve command does "
            "(`add` creates it before the first start)"
        )
    engine = make_engine(database)
    create_schema(engine)
    if new is not None:
        click.echo(
            f"note: created a new database at {new}; if this {server} already runs, check that its serve "
            "command uses this --database",
            err=True,
        )
    return engine


def _read_cert(path: Path) -> bytes:
    from alliance_psi.errors import ConfigurationError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"--cert {path}: {exc.strerror}") from None


def enrolment_group(
    name: str, *, server: str, role: str, with_quota: bool = False, with_display_name: bool = False
) -> click.Group:
    """A click group ``NAME add|remove|list`` for parties of ``role`` at ``server``.

    ``with_quota`` adds ``--quota`` and the usage columns (custodian); ``with_display_name`` adds
    ``--display-name`` (coordinator members).
    """

    @click.group(name, help=f"Enrol {role}s by certificate key at this {server} (run by its own operator).")
    def group() -> None:
        pass

    def add(cert: Path, database: str, quota: int | None = None, display_name: str | None = None) -> None:
        from alliance_psi.errors import ConfigurationError
        from alliance_psi.protocol.model import Role
        from alliance_psi.services.enrolment import enrol

        with reported():
            pem = _read_cert(cert)
            engine = _engine(database, server=server, create=True)  # Its errors are --database's, not --cert's.
            try:
                enrolment, new = enrol(
                    engine,
                    pem,
                    role=Role(role),
                    quota=quota,
                    display_name=display_name,
                )
            except ConfigurationError as exc:
                raise ConfigurationError(f"--cert {cert}: {exc}") from None
        details = ""
        if with_quota:
            details = f", quota {enrolment.quota:,}" if enrolment.quota is not None else ", default quota"
        if enrolment.display_name:
            details += f", shown as {enrolment.display_name}"
        click.echo(f"{'enrolled' if new else 'updated'} {role} {enrolment.name} at this {server}{details}")
        click.echo(f"key pin (SHA-256 of its public key): {enrolment.key_pin.hex()}")

    options = [
        click.option(
            "--cert",
            type=click.Path(dir_okay=False, path_type=Path),
            required=True,
            help=f"The {role}'s certificate (PEM), as the {role} itself sent it.",
        ),
        click.option("--database", type=DATABASE_URL, required=True, help=_DATABASE_HELP),
    ]
    if with_quota:
        options.append(
            click.option(
                "--quota",
                type=click.IntRange(min=1),
                default=None,
                help="Elements this member may have evaluated per key epoch (default: serve's --quota).",
            )
        )
    if with_display_name:
        options.append(click.option("--display-name", default=None, help="How people call the member, e.g. 某某银行."))
    for option in reversed(options):
        add = option(add)
    group.command(
        "add",
        help=f"Enrol the {role} named in a certificate, pinned to its public key. Compare the printed key pin "
        f"with the one the {role} reports for its own certificate: the CA holder can issue certificates for any name.",
    )(add)

    @group.command("remove")
    @click.argument("party")
    @click.option("--database", type=DATABASE_URL, required=True, help=_DATABASE_HELP)
    def remove(party: str, database: str) -> None:
        """Stop serving PARTY (its quota usage stays counted)."""
        from alliance_psi.errors import NotFound
        from alliance_psi.protocol.model import Role
        from alliance_psi.services.enrolment import unenrol

        with reported():
            if not unenrol(_engine(database, server=server), Role(role), party):
                raise NotFound(f"{role} {party} is not enrolled at this {server}")
        click.echo(f"removed {role} {party} from this {server}")

    def list_(database: str, epoch: str | None = None) -> None:
        from alliance_psi.protocol.model import Role
        from alliance_psi.storage import EnrolmentRepository, QuotaRepository

        with reported():
            engine = _engine(database, server=server)
            with engine.connect() as conn:
                enrolled = EnrolmentRepository(conn).list(Role(role))
                usage_epoch = epoch or QuotaRepository(conn).latest_epoch()
                usage = QuotaRepository(conn).usage(usage_epoch) if with_quota and usage_epoch else {}
        header = ["name", "key pin (SHA-256 of the public key)"]
        if with_quota:
            header += ["quota", f"used in {usage_epoch}" if usage_epoch else "used"]
        if with_display_name:
            header += ["display name"]
        rows = []
        for e in enrolled:
            row = [e.name, e.key_pin.hex()]
            if with_quota:
                row += [f"{e.quota:,}" if e.quota is not None else "default", f"{usage.get(e.name, 0):,}"]
            if with_display_name:
                row += [e.display_name or "-"]
            rows.append([*row, f"{e.added_at:%Y-%m-%d %H:%M} UTC"])
        header.append("added")
        _print_table(header, rows)
        if not rows:
            click.echo(f"no {role} is enrolled at this {server}", err=True)

    list_ = click.option("--database", type=DATABASE_URL, required=True, help=_DATABASE_HELP)(list_)
    if with_quota:
        list_ = click.option(
            "--epoch", default=None, help="Key epoch of the usage column (default: the latest one charged)."
        )(list_)
    usage_help = ", quota, usage in a key epoch" if with_quota else ""
    group.command("list", help=f"List the enrolled {role}s: name, key pin{usage_help}, when added.")(list_)
    return group


def echo_enrolment(
    roster: EnrolmentRoster,
    server: str,
    name: str,
    *,
    roles: tuple[str, ...],
    needed: str,
    without: str,
    say: Callable[[str], None],
) -> None:
    """Say at start-up (``say``: a serve command's ``announce``) how many parties of ``roles`` are enrolled; warn if none of ``needed`` is."""
    from alliance_psi.protocol.model import Role

    counts = " and ".join(f"{roster.count(Role(role))} {role}(s)" for role in roles)
    say(f"{server} {name}: {counts} enrolled")
    if not roster.count(Role(needed)):
        command = f"alliance-psi {server} {needed} add --cert {needed.upper()}.pem --database …"
        say(f"warning: no {needed} is enrolled, so {without}; enrol with `{command}` (no restart needed)")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Plain aligned columns: key pins stay whole and copyable at any terminal width."""
    widths = [max(_width(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = (cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def _width(text: str) -> int:
    """Terminal columns of ``text``: Chinese (East Asian wide) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
