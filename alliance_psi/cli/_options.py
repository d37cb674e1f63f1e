"""Options shared by the role commands, and the one place CLI errors become messages."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from alliance_psi import defaults
from alliance_psi.errors import AlliancePsiError

if TYPE_CHECKING:
    from alliance_psi.config import MemberConfig, MonitoringConfig, PeerEndpoint, ServerLimits, TlsConfig
    from alliance_psi.crypto.threshold_keys import PublicEpoch

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(dir_okay=False, path_type=Path)


def tls_options(function: F) -> F:
    """``--ca``, ``--cert``, ``--key`` and ``--crl``: this party's mutual-TLS files."""
    for option in reversed(
        [
            click.option("--ca", "ca_cert", type=_FILE, required=True, help="The alliance CA certificate (ca.pem)."),
            click.option("--cert", type=_FILE, required=True, help="This party's certificate (NAME.pem)."),
            click.option("--key", type=_FILE, required=True, help="This party's private key (NAME.key)."),
            click.option("--crl", type=_FILE, default=None, help="The alliance CRL; servers refuse revoked peers."),
        ]
    ):
        function = option(function)
    return function


def tls_config(ca_cert: Path, cert: Path, key: Path, crl: Path | None, own_ca: Path | None = None) -> TlsConfig:
    from alliance_psi.config import TlsConfig

    return TlsConfig(ca_cert=ca_cert, cert=cert, key=key, crl=crl, own_ca=own_ca)


class PeerAddress(click.ParamType["PeerEndpoint", Any]):
    """A server to dial, ``NAME@HOST:PORT`` or a TOML table ``{name = "NAME", address = "HOST:PORT"}``.

    ``NAME`` is the name in the server's certificate: the client accepts no other. Without a
    ``default_name`` the name is required (custodians: the client must know which one it reaches);
    with one, a bare ``HOST:PORT`` means that name (the coordinator is ``coordinator``).

    A custodian run by another institution than the alliance operator also names its own CA, the
    only one its certificate is then accepted from: ``NAME@HOST:PORT,ca=FILE`` or the table's
    ``ca = "FILE"`` (``config.PeerEndpoint``). The coordinator takes no ``ca``: it is the
    operator's, anchored in the alliance CA.

    A custodian run as several replicas gives every address: ``NAME@HOST:PORT+HOST:PORT`` or the
    table's ``address = ["HOST:PORT", "HOST:PORT"]``; calls are spread round-robin over them.
    """

    name = "NAME@HOST:PORT[+HOST:PORT…][,ca=FILE]"

    def __init__(self, role: str, default_name: str | None = None) -> None:
        self.role, self.default_name = role, default_name

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        """The usage line's shape, spelled as the help text and the parser spell it (``,ca=FILE``,
        not click's upper-cased ``,CA=FILE``); replicas and a CA only for a custodian (compared by
        the role's value: ``--help`` must not import the protocol layer)."""
        address = "NAME@HOST:PORT" if self.default_name is None else "[NAME@]HOST:PORT"
        return f"{address}[+HOST:PORT…][,ca=FILE]" if self.role == "custodian" else address

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> PeerEndpoint:
        from alliance_psi.config import PeerEndpoint, peer_text_parts
        from alliance_psi.errors import ConfigurationError
        from alliance_psi.protocol.model import Role
        from alliance_psi.services.pki import validate_server_name
        from alliance_psi.services.tls_diagnosis import split_address

        if isinstance(value, PeerEndpoint):
            return value
        pinnable = Role(self.role) is Role.CUSTODIAN
        keys = "name, address and optionally ca" if pinnable else "name and address"
        if isinstance(value, dict):
            listed = value.get("address")
            if pinnable and isinstance(listed, list) and listed and all(isinstance(a, str) for a in listed):
                value = {**value, "address": "+".join(listed)}  # Replicas: one address per entry.
            if not {"name", "address"} <= set(value) <= {"name", "address", *(["ca"] if pinnable else [])} or not all(
                isinstance(v, str) for v in value.values()
            ):
                self.fail(f"{self.role} {value!r}: a table needs exactly the text keys {keys}", param, ctx)
            name, address, shown = value["name"], value["address"], f"{value['name']}@{value['address']}"
            options = {"ca": value["ca"]} if "ca" in value else {}
        elif isinstance(value, str):
            shown = value
            peer, options = peer_text_parts(value)
            name, at, address = peer.rpartition("@")
            if not at:
                if self.default_name is None:
                    self.fail(
                        f"{self.role} {value!r} has no name: write NAME@HOST:PORT with the name in the "
                        f"{self.role}'s certificate, e.g. {self.role}-1@{peer} (the node accepts only that "
                        f"{self.role})",
                        param,
                        ctx,
                    )
                name = self.default_name
        else:
            self.fail(f"{self.role} {value!r}: expected NAME@HOST:PORT or a table with {keys}", param, ctx)
        if options and (not pinnable or set(options) != {"ca"} or not options["ca"]):
            allowed = "only ca=FILE (its own CA)" if pinnable else "nothing (it is anchored in the alliance CA)"
            self.fail(f"{self.role} {shown!r}: after the address a {self.role} takes {allowed}", param, ctx)
        addresses = address.split("+") if pinnable else [address]
        if len(set(addresses)) != len(addresses):
            self.fail(f"{self.role} {shown!r}: an address is given twice", param, ctx)
        try:
            validate_server_name(Role(self.role), name)
            for one in addresses:
                split_address(one)
        except (ConfigurationError, ValueError) as exc:
            self.fail(f"{self.role} {shown!r}: {exc}", param, ctx)
        ca = Path(options["ca"]).expanduser() if options else None
        return PeerEndpoint(name=name, address=addresses[0], ca=ca, replicas=tuple(addresses[1:]))


class DatabaseUrl(click.ParamType[str, Any]):
    """A database URL, ``sqlite:///FILE`` or ``postgresql://…``, checked for its ``SCHEME://``
    before anything is imported (the backend is checked when the engine is made).

    A bare path is the usual slip, so its refusal names the option and the URL it meant:
    ``Invalid value for '--database': 'node.db' is not a database URL; a SQLite file is written
    sqlite:///node.db (PostgreSQL: postgresql://USER@HOST/DB)``.
    """

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import re

        if isinstance(value, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
            return value
        file = value if isinstance(value, str) and value else "FILE"
        self.fail(
            f"{value!r} is not a database URL; a SQLite file is written sqlite:///{file} "
            "(PostgreSQL: postgresql://USER@HOST/DB)",
            param,
            ctx,
        )


DATABASE_URL = DatabaseUrl()


def custodian_trust_warnings(custodians: Sequence[PeerEndpoint], *, public: PublicEpoch | None = None) -> list[str]:
    """What a member node says at start about its custodians, before it dials any (empty: nothing).

    Chain custodians (``public`` is None): one custodian is one key holder (it and the coordinator
    could test guesses); custodians none of which is pinned to its own CA could all be run by
    whoever holds the alliance CA, under their names (``services.anchors``). A threshold epoch
    (``public``): a threshold of one is one key holder, and a dealt epoch was known whole to its
    dealer; impostors gain nothing there, since answers are checked against the epoch file.
    """
    warnings = []
    if public is not None:
        if public.threshold < 2:
            warnings.append(
                f"warning: key epoch {public.epoch} has a threshold of 1: any one of its custodians together with the "
                "coordinator could test guesses of low-entropy identifiers"
            )
        if public.origin == "dealer":
            warnings.append(
                f"warning: key epoch {public.epoch} was dealt by one dealer, who knew the whole key (for tests and "
                "demos only): an alliance generates its epochs with the custodians' key generation"
            )
        return warnings
    if len(custodians) < 2:
        warnings.append(
            "warning: one key custodian: that custodian together with the coordinator could test guesses of "
            "low-entropy identifiers; production alliances run two or more independent custodians"
        )
    if custodians and all(custodian.ca is None for custodian in custodians):
        names = ", ".join(custodian.name for custodian in custodians)
        warnings.append(
            f"warning: no custodian is pinned to its own CA ({names}: trusted on the alliance CA's word): whoever "
            "holds the alliance CA could issue certificates under their names, run them all itself and, holding "
            "every key share, test guesses of low-entropy identifiers; pin a custodian run by another institution "
            'to that institution\'s CA (ca = "FILE" in its custodian entry; docs/operations.md)'
        )
    return warnings


def member_trust_warnings(config: MemberConfig) -> list[str]:
    """``custodian_trust_warnings`` for a member node's configuration: its threshold epoch's
    (``epoch-file``) when it has one, its chain custodians' otherwise. Raises ``ConfigurationError``
    for an epoch file that cannot be read."""
    from alliance_psi.services.epoch_files import load_public_epoch

    public = load_public_epoch(config.epoch_file) if config.epoch_file is not None else None
    return custodian_trust_warnings(config.custodians, public=public)


_POSITIVE = click.FloatRange(min=0, min_open=True)
_AT_LEAST_ONE = click.IntRange(min=1)

# The ServerLimits a server command takes as options: default and help (docs/operations.md, "Limits").
_SERVER_LIMIT_OPTIONS: dict[str, tuple[int | float, str]] = {
    "max_calls": (defaults.MAX_CALLS, "Calls in progress in total."),
    "max_calls_per_peer": (defaults.MAX_CALLS_PER_PEER, "Calls in progress per peer (certificate identity)."),
    "max_streams_per_peer": (defaults.MAX_STREAMS_PER_PEER, "Streaming calls in progress per peer."),
    "max_open_calls": (
        defaults.MAX_OPEN_CALLS,
        f"Health and reflection calls in progress, apart from --max-calls ({defaults.OPEN_CALLS_PER_PEER} per peer).",
    ),
    "calls_per_second_per_peer": (
        defaults.CALLS_PER_SECOND_PER_PEER,
        "Calls a peer may start per second (bursts up to twice that).",
    ),
    "stream_idle_seconds": (
        defaults.STREAM_IDLE_SECONDS,
        "A call waiting this long on its peer (no request, or a response not read) is ended.",
    ),
    "shutdown_grace_seconds": (
        defaults.SHUTDOWN_GRACE_SECONDS,
        "On SIGTERM, running calls get this long; the process exits within twice this plus 1 s.",
    ),
    "crl_reload_seconds": (
        defaults.CRL_RELOAD_SECONDS,
        "How often the --crl file is checked for changes (SIGHUP reloads it at once).",
    ),
}


def server_limit_options(function: F) -> F:
    """The ``ServerLimits`` a server command takes (defaults and meaning in docs/operations.md)."""
    for name, (default, help_text) in reversed(_SERVER_LIMIT_OPTIONS.items()):
        function = click.option(
            "--" + name.replace("_", "-"),
            type=_AT_LEAST_ONE if isinstance(default, int) else _POSITIVE,
            default=default,
            show_default=True,
            help=help_text,
        )(function)
    return function


def server_limits(**options: Any) -> ServerLimits:
    """``ServerLimits`` from the options of ``server_limit_options`` (others are ignored).

    Raises:
        click.ClickException: the limits contradict each other (a per-peer limit above the total).
    """
    from alliance_psi.config import ServerLimits

    names = set(ServerLimits.__slots__)
    try:
        return ServerLimits(**{name: value for name, value in options.items() if name in names})
    except AlliancePsiError as exc:
        raise click.ClickException(str(exc)) from None


def monitoring_options(function: F) -> F:
    """``--metrics-listen``, ``--log-level`` and ``--log-format``: a server's ``MonitoringConfig``."""
    from alliance_psi.config import LOG_FORMATS, LOG_LEVELS

    for option in reversed(
        [
            click.option(
                "--metrics-listen",
                metavar="HOST:PORT",
                default=None,
                help="Serve Prometheus /metrics and the /healthz and /readyz probes on this address, plain HTTP "
                "without authentication (e.g. 127.0.0.1:9464; port 0: any). Default: off. docs/operations.md, Monitor.",
            ),
            click.option(
                "--log-level",
                type=click.Choice(LOG_LEVELS),
                default="info",
                show_default=True,
                help="Level of alliance-psi's own log records (other libraries: warnings and errors only).",
            ),
            click.option(
                "--log-format",
                type=click.Choice(LOG_FORMATS),
                default="text",
                show_default=True,
                help="Log records on stderr as text lines, or one JSON object per line.",
            ),
        ]
    ):
        function = option(function)
    return function


def monitoring_config(**options: Any) -> MonitoringConfig:
    """``MonitoringConfig`` from the options of ``monitoring_options`` (others are ignored).

    Raises:
        click.BadParameter: ``--metrics-listen`` is not HOST:PORT.
    """
    from alliance_psi.config import MonitoringConfig

    try:
        return MonitoringConfig(
            metrics_listen=options.get("metrics_listen"),
            log_level=options.get("log_level", "info"),
            log_format=options.get("log_format", "text"),
        )
    except AlliancePsiError as exc:
        raise click.BadParameter(str(exc), param_hint="'--metrics-listen'") from None


_SIGNAL_POLL_SECONDS = 0.2


def stop_signals(*, on_hangup: Callable[[], object] | None = None) -> Callable[[float | None], str]:
    """Take SIGTERM and SIGINT (Ctrl-C) now; return ``wait(exit_within)``, which blocks until one
    came (before the call too) and returns its name (``SIGTERM``). Install it before the server
    says it listens: a signal sent as soon as the port is announced must stop it cleanly, not kill
    it by the default action.

    ``on_hangup`` runs on SIGHUP (a server reloads its CRL). With ``exit_within``, the process
    exits with status 1 that many seconds after the signal if it has not exited by then, whatever
    holds it (a call stuck where cancelling cannot reach it): the shutdown is bounded.
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if on_hangup is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_hangup())

    def wait(exit_within: float | None = None) -> str:
        # Wake every 0.2 s rather than block: Linux may deliver the signal to another thread
        # (gRPC's, the ticker's), and CPython runs Python handlers only in the main thread, between
        # bytecodes; a main thread blocked in one long wait would never run them (seen under load:
        # SIGTERM ignored).
        while not stop.wait(_SIGNAL_POLL_SECONDS):
            pass
        if exit_within is not None:
            deadline = threading.Timer(exit_within, _exit_now, args=(exit_within,))
            deadline.daemon = True
            deadline.start()
        return received[0]

    return wait


def _exit_now(after: float) -> None:
    sys.stderr.write(f"error: still running {after:g} s after the stop signal; exiting without waiting further\n")
    sys.stderr.flush()
    os._exit(1)


@contextmanager
def reported() -> Iterator[None]:
    """Turn any alliance-psi error into a one-line CLI error (exit code 1) with its exact reason.

    A database error is described without its values (``alliance_psi._database_errors``):
    SQLAlchemy's own message and a PostgreSQL DETAIL line may quote the statement's values, which
    can be raw identifiers.
    """
    try:
        yield
    except AlliancePsiError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        from alliance_psi._database_errors import describe_database_error

        described = describe_database_error(exc)
        if described is None:
            raise
        raise click.ClickException(f"database error: {described}") from None
