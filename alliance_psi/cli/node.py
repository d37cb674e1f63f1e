"""``alliance-psi node``: the member node (compliance team's side).

Every option can come from a TOML file (``--config node.toml``, a ``[node]`` table whose keys are
the option names and nothing else; see ``alliance_psi.config.read_node_file``), from an
``ALLIANCE_PSI_NODE_<OPTION>`` environment variable, or from the command line; later ones win. ``--config`` goes before or after
the command's name (``node --config node.toml import FILE`` or ``node import FILE --config
node.toml``); relative paths in the file are relative to the file's folder. Only ``node import``
(and ``node run --create-database``, a container's first start) creates the node's database; every
other command refuses a missing one (``open_node_database``).

Commands live in ``node_*`` modules and attach themselves to ``node_group``, which imports a module
only when one of its commands is used (``_COMMANDS``): ``node join`` starts without the importer's
normalizers or the renderers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from alliance_psi.cli._lazy import LazyGroup
from alliance_psi.cli._options import DATABASE_URL, PeerAddress
from alliance_psi.defaults import COORDINATOR_NAME
from alliance_psi.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alliance_psi.config import MemberConfig, NotifyConfig

__all__ = [
    "database_option",
    "member_config",
    "network_options",
    "node_command_text",
    "node_group",
    "notify_config",
    "notify_options",
    "open_node_database",
]

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(dir_okay=False, path_type=Path)
_ENV = "ALLIANCE_PSI_NODE_"
_TOML_ALIASES = {"ca": "ca_cert", "custodian": "custodians"}
# ctx.meta key: the --config path as the user typed it, for the commands a node command suggests.
_GIVEN_CONFIG = "alliance_psi.node.config"
# Each command's module, imported when the command is used; the modules attach their commands.
_COMMANDS = {
    "import": "alliance_psi.cli.node_import:import_file",
    "withdraw": "alliance_psi.cli.node_import:withdraw",
    "purge-expired": "alliance_psi.cli.node_import:purge_expired",
    "status": "alliance_psi.cli.node_import:status",
    "join": "alliance_psi.cli.node_round:join",
    "delta": "alliance_psi.cli.node_round:delta",
    "run": "alliance_psi.cli.node_run:run",
    "fetch": "alliance_psi.cli.node_round:fetch",
    "report": "alliance_psi.cli.node_report:report_command",
    "results": "alliance_psi.cli.node_report:results_command",
    "checkpoints-export": "alliance_psi.cli.node_log:checkpoints_export",
    "checkpoints-check": "alliance_psi.cli.node_log:checkpoints_check",
    "alerts": "alliance_psi.cli.node_alerts:alerts_command",
    "follow": "alliance_psi.cli.node_alerts:follow_command",
}


def _node_defaults(path: Path) -> dict[str, Any]:
    """Option defaults from node.toml: parameter names as keys, relative paths resolved."""
    from alliance_psi.config import read_node_file

    try:
        values = {key.replace("-", "_"): value for key, value in read_node_file(path).items()}
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    # TOML keys are the option names; two options keep a different name in Python.
    for option, parameter in _TOML_ALIASES.items():
        if option in values:
            values[parameter] = values.pop(option)
    return values


def _config_after_command(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    # Eager, so the file's values are defaults before any other option of the command is read;
    # a file given here wins over one given before the command's name.
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **_node_defaults(value)}
        ctx.meta[_GIVEN_CONFIG] = value
    return value


class _NodeCommand(click.Command):
    """A node command: it also takes ``--config`` after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(
                ["--config"],
                type=_FILE,
                default=None,
                is_eager=True,
                expose_value=False,
                callback=_config_after_command,
                help="TOML file with a [node] table of option values (also accepted before the command's name).",
            )
        )


class _NodeGroup(LazyGroup):
    command_class = _NodeCommand


@click.group("node", cls=_NodeGroup, lazy_commands=_COMMANDS)
@click.option(
    "--config",
    type=_FILE,
    default=None,
    envvar=_ENV + "CONFIG",
    help="TOML file with a [node] table of option values (overridden by env vars and options).",
)
@click.pass_context
def node_group(ctx: click.Context, config: Path | None) -> None:
    """Run a member node: import blacklists, join rounds, read results and write reports."""
    if config is not None:
        ctx.default_map = dict.fromkeys(node_group.list_commands(ctx), _node_defaults(config))
        if ctx.get_parameter_source("config") is click.core.ParameterSource.COMMANDLINE:
            ctx.meta[_GIVEN_CONFIG] = config  # From the environment, it applies to the suggestion too.


def node_command_text(*words: str) -> str:
    """The command line of a node command this one suggests, runnable as printed.

    ``node_command_text("report", "2026-11", "--format", "html", "-o", "FILE")`` is
    ``alliance-psi node report 2026-11 --config bank-a/node.toml --format html -o FILE`` when the
    running command was given ``--config bank-a/node.toml``: without it the suggestion would fail
    with a missing option. The path is the one the user typed (the suggestion runs from the same
    folder) and every word is quoted for a POSIX shell. Outside a node command, no ``--config``.
    """
    import shlex

    ctx = click.get_current_context(silent=True)
    config = ctx.meta.get(_GIVEN_CONFIG) if ctx is not None else None
    leading = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    given = ("--config", str(config)) if config is not None else ()
    return shlex.join(("alliance-psi", "node", *words[:leading], *given, *words[leading:]))


def _option(name: str, *decls: str, **kwargs: Any) -> Callable[[F], F]:
    """An option that also reads ``ALLIANCE_PSI_NODE_<NAME>`` (and the TOML file, via the group)."""
    env = _ENV + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, *decls, envvar=env, show_envvar=True, **kwargs)


def database_option(function: F) -> F:
    """``--database``: the node's own database, where raw identifiers stay."""
    return _option(
        "--database", type=DATABASE_URL, required=True, help="This node's database URL, e.g. sqlite:///node/bank-a.db."
    )(function)


def network_options(function: F) -> F:
    """Everything a command that talks to the alliance needs."""
    options = [
        _option("--member-id", required=True, help="This member's id (the name in its certificate)."),
        _option("--ca", "ca_cert", type=_FILE, required=True, help="The alliance CA certificate."),
        _option("--cert", type=_FILE, required=True, help="This node's certificate."),
        _option("--key", type=_FILE, required=True, help="This node's private key."),
        _option(
            "--coordinator",
            type=PeerAddress("coordinator", default_name=COORDINATOR_NAME),
            required=True,
            help="The coordinator, [NAME@]HOST:PORT; NAME (default: coordinator) is the name in its certificate.",
        ),
        _option(
            "--custodian",
            "custodians",
            type=PeerAddress("custodian"),
            multiple=True,
            required=True,
            help="A custodian, NAME@HOST:PORT with the name in its certificate (its replicas' addresses after "
            "+: NAME@HOST:PORT+HOST:PORT, called round-robin), then ,ca=FILE if it is pinned to its own CA (one "
            "run by another institution than the operator); repeat, in chain order without --epoch-file, in "
            "order of preference with it (env: space-separated).",
        ),
        _option(
            "--epoch-file",
            type=_FILE,
            default=None,
            help="The public epoch file of a threshold epoch (K and each custodian's K_i): the node then asks any "
            "threshold of the listed custodians at once and checks their answers. Without it, the custodians "
            "form a chain.",
        ),
        _option(
            "--verify",
            type=click.Choice(["sample", "proof"]),
            default="sample",
            show_default=True,
            help="With --epoch-file, how custodians' answers are checked: a proven random sample sent to one "
            "further custodian, or a proof from every custodian for every batch (docs/design.md).",
        ),
        _option(
            "--coordinator-key", type=_FILE, required=True, help="The coordinator's public signing key (signing.pub)."
        ),
        _option(
            "--data-dir",
            type=click.Path(file_okay=False, path_type=Path),
            required=True,
            help="Directory for this node's own secrets.",
        ),
        _option(
            "--display-name",
            default=None,
            help="Set to be named to co-holders of your labels (the name they see is the one the coordinator "
            "enrolled you with); see --share-name.",
        ),
        _option(
            "--share-name/--no-share-name",
            default=None,
            help="Be named to co-holders of your labels, attested by the coordinator (default: only with "
            "--display-name).",
        ),
        _option(
            "--workers", type=click.IntRange(min=1), default=None, help="Crypto worker processes (default: all cores)."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def member_config(database: str, **options: Any) -> MemberConfig:
    """A ``MemberConfig`` from the parsed ``database_option`` and ``network_options`` values."""
    from alliance_psi.config import MemberConfig, TlsConfig

    return MemberConfig(
        member_id=options["member_id"],
        database=database,
        tls=TlsConfig(ca_cert=options["ca_cert"], cert=options["cert"], key=options["key"]),
        coordinator=options["coordinator"],
        custodians=tuple(options["custodians"]),  # PeerEndpoints, parsed by PeerAddress.
        coordinator_public_key=options["coordinator_key"],
        data_dir=options["data_dir"],
        display_name=options.get("display_name"),
        share_name=options.get("share_name"),
        workers=options.get("workers"),
        epoch_file=options.get("epoch_file"),
        verify=options.get("verify") or "sample",
    )


def notify_options(function: F) -> F:
    """How a node that follows alerts notifies (``config.NotifyConfig``): webhook, alert log, console."""
    options = [
        _option(
            "--webhook-url",
            default=None,
            help="POST each alert here, signed as Standard Webhooks say (https://, or http:// to this machine).",
        ),
        _option(
            "--webhook-secret-file",
            type=_FILE,
            default=None,
            help="The webhook's secret, whsec_ and base64 of 24 to 64 random bytes, in a mode 0600 file.",
        ),
        _option(
            "--alert-log",
            type=_FILE,
            default=None,
            help="Append each alert as one JSON line to this file (mode 0600).",
        ),
        _option(
            "--console-alerts/--no-console-alerts",
            default=True,
            help="Print one line per alert (identifiers masked).",
        ),
        _option(
            "--include-identifiers/--no-include-identifiers",
            default=False,
            help="Put the full identifier in the webhook's and the log's notices (default: masked to its last "
            "four characters). Only for a receiver this member controls.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def notify_config(**options: Any) -> NotifyConfig:
    """A ``NotifyConfig`` from the parsed ``notify_options`` values.

    Raises:
        click.UsageError: a webhook URL without a secret file, or a secret file without a URL.
        ConfigurationError: a bad webhook URL (``WebhookConfig``).
    """
    from alliance_psi.config import NotifyConfig, WebhookConfig

    url, secret = options.get("webhook_url"), options.get("webhook_secret_file")
    if (url is None) != (secret is None):
        given, missing = (
            ("--webhook-url", "--webhook-secret-file") if secret is None else ("--webhook-secret-file", "--webhook-url")
        )
        raise click.UsageError(f"{given} needs {missing} (the webhook's URL and its secret go together)")
    webhook = WebhookConfig(url=url, secret_file=secret) if url is not None and secret is not None else None
    return NotifyConfig(
        webhook=webhook,
        alert_log=options.get("alert_log"),
        console=bool(options.get("console_alerts", True)),
        include_identifiers=bool(options.get("include_identifiers", False)),
    )


@contextmanager
def open_node_database(database: str, *, create: bool = False, read_only: bool = False) -> Iterator[Engine]:
    """An engine on the node's database; only with ``create`` (``node import``) may it be new.

    A database that exists gets any table a newer version added. ``read_only`` lets SQLite read
    without taking the write lock.

    Raises:
        ConfigurationError: without ``create``, the database does not exist or holds no node
            tables; the message says where it looked and that ``node import`` creates it.
    """
    from sqlalchemy import inspect

    from alliance_psi.config import sqlite_file
    from alliance_psi.storage import create_schema, make_node_engine

    missing = f"`{node_command_text('import', 'FILE')}` creates it (no other node command does)"
    file = sqlite_file(database)
    if not create and file is not None and not file.exists():
        raise ConfigurationError(f"no node database at {file.resolve()}: {missing}")
    engine = make_node_engine(database)
    try:
        if not create and not inspect(engine).has_table("identifiers"):
            shown = engine.url.render_as_string(hide_password=True)
            raise ConfigurationError(f"{shown} holds no node database: {missing}")
        create_schema(engine)
        yield engine.execution_options(sqlite_begin="DEFERRED") if read_only else engine
    finally:
        engine.dispose()
