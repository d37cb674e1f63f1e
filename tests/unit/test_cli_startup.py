"""The command line imports only what the command it runs needs (``alliance_psi.cli._lazy``).

Every ``alliance-psi node join`` pays for the imports of its process, so building and parsing
``node join`` must not load the blacklist importer's libraries (openpyxl, the identifier
normalizers), the report renderers, SQLAlchemy or the servers' code. These are behaviour checks
on ``sys.modules`` in a fresh interpreter, not timings.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from alliance_psi.cli._options import reported
from alliance_psi.cli.main import main

# What `node join` must not import before it runs: (prefixes of) module names.
NOT_FOR_JOIN = [
    "openpyxl",
    "phonenumbers",
    "opencc",
    "email_validator",
    "idna",  # The importer and its normalizers.
    "alliance_psi.identifiers.registry",
    "alliance_psi.identifiers.importer",
    "alliance_psi.reports",
    "jinja2",  # The report renderers.
    "sqlalchemy",
    "alliance_psi.storage",  # Loaded by the member node itself, once join runs.
    "grpc",
    "cryptography",
    "alliance_psi.services",
    "alliance_psi.protocol",
    "alliance_psi.crypto",
    "rich",  # Only for join's progress bar and summary.
    "alliance_psi.cli.node_import",
    "alliance_psi.cli.node_report",
    "alliance_psi.cli.reports",
    "alliance_psi.cli.pki",
    "alliance_psi.cli.custodian",
    "alliance_psi.cli.demo",
]


def _loaded_after(code: str) -> list[str]:
    """The ``NOT_FOR_JOIN`` modules loaded in a fresh interpreter after running ``code``."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"banned = {NOT_FOR_JOIN!r}\n"
        "print(json.dumps(sorted({b for b in banned for m in sys.modules if m == b or m.startswith(b + '.')})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_entry_point_loads_no_command_module() -> None:
    assert _loaded_after("import alliance_psi.cli.main") == []


def test_building_node_join_loads_only_what_join_needs() -> None:
    code = (
        "import click\n"
        "import alliance_psi.cli.main as cli\n"
        "ctx = click.Context(cli.main)\n"
        "node = cli.main.get_command(ctx, 'node')\n"
        "join = node.get_command(click.Context(node, parent=ctx), 'join')\n"
        "assert join is not None and join.name == 'join'\n"
    )
    assert _loaded_after(code) == []


def test_node_join_help_loads_only_what_join_needs() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "import alliance_psi.cli.main as cli\n"
        "result = CliRunner().invoke(cli.main, ['node', 'join', '--help'])\n"
        "assert result.exit_code == 0 and 'ROUND_ID' in result.output, result.output\n"
    )
    assert _loaded_after(code) == []


def test_every_command_module_attaches_what_its_group_declares() -> None:
    # A command attached with @group.command in another module must also be declared in the
    # group's lazy_commands, or it would be missing from --help until that module was imported.
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import click\n"
        "import alliance_psi.cli\n"
        "from alliance_psi.cli._lazy import LazyGroup\n"
        "from alliance_psi.cli.coordinator import coordinator_group\n"
        "from alliance_psi.cli.main import main\n"
        "from alliance_psi.cli.node import node_group\n"
        "groups = {'main': main, 'node': node_group, 'coordinator': coordinator_group}\n"
        "own = {name: set(group.commands) for name, group in groups.items()}\n"
        "for module in pkgutil.walk_packages(alliance_psi.cli.__path__, 'alliance_psi.cli.'):\n"
        "    importlib.import_module(module.name)\n"
        "modules = [m for n, m in list(sys.modules.items()) if n.startswith('alliance_psi.cli.')]\n"
        "found = {id(v) for m in modules for v in vars(m).values() if isinstance(v, LazyGroup)}\n"
        "assert found == {id(group) for group in groups.values()}, 'a LazyGroup this test does not know'\n"
        "for group in groups.values():  # Top-level groups are attached only by loading them.\n"
        "    for name in group.lazy_commands:\n"
        "        group.get_command(click.Context(group), name)\n"
        "print(json.dumps({name: {\n"
        "    'registered': sorted(group.commands),\n"
        "    'declared': sorted(own[name] | set(group.lazy_commands)),\n"
        "    'mismatched': sorted(n for n in group.lazy_commands if group.load(n) is not group.commands.get(n)),\n"
        "} for name, group in groups.items()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for name, view in json.loads(done.stdout).items():
        assert view["registered"] == view["declared"], name
        assert view["mismatched"] == [], name


def _command_paths(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths = [path]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, (*path, name)
        paths += _command_paths(command, (*path, name)) if isinstance(command, click.Group) else [(*path, name)]
    return paths


@pytest.mark.parametrize("path", _command_paths(main), ids=lambda path: " ".join(path) or "alliance-psi")
def test_every_help_text_works(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_node_help_lists_every_node_command() -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["node", "--help"])
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:\n", 1)[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert listed == [
        "alerts",
        "checkpoints-check",
        "checkpoints-export",
        "delta",
        "fetch",
        "follow",
        "import",
        "join",
        "purge-expired",
        "report",
        "results",
        "run",
        "status",
        "withdraw",
    ]


def test_reported_turns_a_database_error_into_its_first_line() -> None:
    from sqlalchemy.exc import OperationalError

    with pytest.raises(click.ClickException) as info, reported():
        raise OperationalError(
            "INSERT ...", {"value": "13915274680"}, Exception("disk I/O error\nDETAIL: (13915274680)")
        )
    assert info.value.message == "database error: disk I/O error"


def test_reported_lets_other_errors_through() -> None:
    with pytest.raises(ValueError, match="^not a database error$"), reported():
        raise ValueError("not a database error")
