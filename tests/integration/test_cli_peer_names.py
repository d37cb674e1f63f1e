"""How a member node names its servers: ``NAME@HOST:PORT`` or a TOML table, and bad forms refused.

The name is the one in the server's certificate; the node accepts no other server at that address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.cli.node import database_option, member_config, network_options
from alliance_psi.config import PeerEndpoint
from alliance_psi.services.pki import CA_CERT_FILE
from tests.integration.services.harness import running_alliance

pytestmark = pytest.mark.timeout(120)


@click.command()
@database_option
@network_options
def show(database: str, **options: Any) -> None:
    """Print the servers a node's options name."""
    config = member_config(database, **options)
    click.echo(repr((config.coordinator, config.custodians)))


def node_options(pki: Any, member: str = "bank-a") -> dict[str, str]:
    return {
        "member-id": member,
        "ca": str(pki.directory / CA_CERT_FILE),
        "cert": str(pki.directory / f"{member}.pem"),
        "key": str(pki.directory / f"{member}.key"),
        "coordinator-key": str(pki.directory / "signing.pub"),
        "data-dir": str(pki.directory / f"{member}-secrets"),
    }


def args(pki: Any) -> list[str]:
    """The command-line options of ``node_options``, and an in-memory database."""
    return ["--database", "sqlite://", *(f"--{option}={value}" for option, value in node_options(pki).items())]


def hint(option: str) -> str:
    """How click names an option that also reads an environment variable."""
    return f"'{option}' (env var: 'ALLIANCE_PSI_NODE_{option.removeprefix('--').upper()}')"


def test_named_addresses_options_and_environment(pki: Any) -> None:
    runner = CliRunner()
    given = runner.invoke(
        show,
        [
            *args(pki),
            *("--coordinator", "coord.example:7100"),
            *("--custodian", "custodian-1@127.0.0.1:7101", "--custodian", "custodian-2@[::1]:7102"),
        ],
    )
    assert given.exit_code == 0, given.output
    assert (
        given.output
        == repr(
            (
                PeerEndpoint(name="coordinator", address="coord.example:7100"),
                (PeerEndpoint("custodian-1", "127.0.0.1:7101"), PeerEndpoint("custodian-2", "[::1]:7102")),
            )
        )
        + "\n"
    )
    env = {
        "ALLIANCE_PSI_NODE_COORDINATOR": "coord-b@10.0.0.1:7100",
        "ALLIANCE_PSI_NODE_CUSTODIAN": "custodian-1@10.0.0.2:7101 custodian-2@10.0.0.3:7101",
    }
    from_env = runner.invoke(show, args(pki), env=env)
    assert from_env.exit_code == 0, from_env.output
    assert (
        from_env.output
        == repr(
            (
                PeerEndpoint("coord-b", "10.0.0.1:7100"),
                (PeerEndpoint("custodian-1", "10.0.0.2:7101"), PeerEndpoint("custodian-2", "10.0.0.3:7101")),
            )
        )
        + "\n"
    )


def test_toml_tables_name_servers_too(pki: Any) -> None:
    defaults = {
        "coordinator": {"name": "coordinator", "address": "127.0.0.1:7100"},
        "custodians": [{"name": "custodian-1", "address": "127.0.0.1:7101"}, "custodian-2@127.0.0.1:7102"],
    }
    result = CliRunner().invoke(show, args(pki), default_map=defaults)
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == repr(
            (
                PeerEndpoint("coordinator", "127.0.0.1:7100"),
                (PeerEndpoint("custodian-1", "127.0.0.1:7101"), PeerEndpoint("custodian-2", "127.0.0.1:7102")),
            )
        )
        + "\n"
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--custodian",
            "127.0.0.1:7101",
            (
                "custodian '127.0.0.1:7101' has no name: write NAME@HOST:PORT with the name in the custodian's "
                "certificate, e.g. custodian-1@127.0.0.1:7101 (the node accepts only that custodian)"
            ),
        ),
        ("--custodian", "custodian-1@127.0.0.1", "custodian 'custodian-1@127.0.0.1': '127.0.0.1' is not HOST:PORT"),
        ("--custodian", "custodian-1@:7101", "custodian 'custodian-1@:7101': ':7101' is not HOST:PORT"),
        ("--coordinator", "coord@host:70000", "coordinator 'coord@host:70000': 'host:70000' is not HOST:PORT"),
        (
            "--custodian",
            "Custodian_1@127.0.0.1:7101",
            (
                "custodian 'Custodian_1@127.0.0.1:7101': invalid custodian name 'Custodian_1': a server's name is also "
                "its TLS name, so it must match [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? (lowercase letters, digits and '-', "
                "not first or last, at most 63)"
            ),
        ),
    ],
    ids=["old-form", "no-port", "no-host", "bad-port", "bad-name"],
)
def test_bad_server_names_and_addresses_are_refused(pki: Any, option: str, value: str, message: str) -> None:
    good = {"--coordinator": "127.0.0.1:7100", "--custodian": "custodian-1@127.0.0.1:7101"}
    good[option] = value
    result = CliRunner().invoke(show, [*args(pki), *(part for pair in good.items() for part in pair)])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: Invalid value for {hint(option)}: {message}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"name": "custodian-1"},
            "custodian {'name': 'custodian-1'}: a table needs exactly the text keys name, address and optionally ca",
        ),
        (42, "custodian 42: expected NAME@HOST:PORT or a table with name, address and optionally ca"),
    ],
)
def test_bad_toml_values_are_refused(pki: Any, value: object, message: str) -> None:
    defaults = {"coordinator": "127.0.0.1:7100", "custodians": [value]}
    result = CliRunner().invoke(show, args(pki), default_map=defaults)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: Invalid value for {hint('--custodian')}: {message}"


def test_a_node_refuses_a_custodian_at_another_custodians_address(tmp_path: Path, pki: Any) -> None:
    with running_alliance(tmp_path, pki, custodians=2) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        first, second = alliance.custodian_addresses
        key = tmp_path / "signing.pub"
        key.write_text(alliance.signing_key.public_key.hex() + "\n")
        options = {**node_options(pki), "coordinator-key": str(key), "data-dir": str(tmp_path / "secrets")}
        lines = [
            "[node]",
            f'database = "sqlite:///{tmp_path / "bank-a.db"}"',
            *(f'{k} = "{v}"' for k, v in options.items()),
            f'coordinator = {{ name = "coordinator", address = "{alliance.coordinator_address}" }}',
            "[[node.custodian]]",
            'name = "custodian-1"',
            f'address = "{second}"',
            "[[node.custodian]]",
            'name = "custodian-2"',
            f'address = "{first}"',
        ]
        (tmp_path / "node.toml").write_text("\n".join(lines) + "\n")
        result = CliRunner().invoke(main, ["node", "--config", str(tmp_path / "node.toml"), "join", round_id])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: cannot trust custodian custodian-1 at {second}: it is custodian custodian-2, not custodian "
        "custodian-1: check the address configured for custodian custodian-1 (NAME@HOST:PORT)"
    )
