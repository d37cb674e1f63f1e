"""Key files as the node and servers read them: a clear error for a damaged one, never a traceback,
and a secret file that group or others may open is refused, with the ``chmod`` that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.services.pki import CA_CERT_FILE
from alliance_psi.storage import create_schema, make_engine

# A server that accepted its key would serve until stopped: fail instead of hanging.
pytestmark = pytest.mark.timeout(60)


def node_toml(tmp_path: Path, pki, coordinator_key: Path, **overrides: str) -> Path:  # type: ignore[no-untyped-def]
    values = {
        "database": f"sqlite:///{tmp_path / 'bank-a.db'}",
        "member-id": "bank-a",
        "ca": str(pki.directory / CA_CERT_FILE),
        "cert": str(pki.directory / "bank-a.pem"),
        "key": str(pki.directory / "bank-a.key"),
        "coordinator": "127.0.0.1:1",
        "coordinator-key": str(coordinator_key),
        "data-dir": str(tmp_path / "secrets"),
        **overrides,
    }
    engine = make_engine(values["database"])  # An imported node: only `node import` creates its database.
    create_schema(engine)
    engine.dispose()
    path = tmp_path / "node.toml"
    lines = ["[node]", 'custodian = ["custodian-1@127.0.0.1:2"]'] + [f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


_PUBLIC_PEM = SigningKey.generate().to_pem()


@pytest.mark.parametrize(
    "pem",
    [
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",  # Too short to be a key.
        b"-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",  # Truncated: no END line.
        _PUBLIC_PEM,  # The private key where the public one belongs.
    ],
    ids=["short", "not-base64", "truncated", "private-key"],
)
def test_join_with_a_damaged_coordinator_key_says_so(tmp_path: Path, pki, pem: bytes) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "signing.pub"
    key.write_bytes(pem)
    result = CliRunner().invoke(main, ["node", "--config", str(node_toml(tmp_path, pki, key)), "join", "r-1"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # No traceback.
    assert "Error: public key file is not a readable PEM public key" in result.output
    assert "alliance-psi coordinator keygen" in result.output


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def open_to_others(path: Path) -> Path:
    path.chmod(0o644)
    return path


def refusal(what: str, path: Path) -> str:
    return f"Error: {what} {path} is open to group or others (mode 0644) and holds a secret: run `chmod 600 {path}`"


def node_with_a_key_others_can_read(tmp_path: Path, pki) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A node.toml whose TLS key is a copy of bank-a's, mode 0644; and that key."""
    key = tmp_path / "bank-a.key"
    key.write_bytes((pki.directory / "bank-a.key").read_bytes())
    public = tmp_path / "signing.pub"
    public.write_text(SigningKey.generate().public_key.hex())
    return node_toml(tmp_path, pki, public, key=str(open_to_others(key))), key


def test_node_join_refuses_a_tls_key_others_can_read(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    config, key = node_with_a_key_others_can_read(tmp_path, pki)
    result = run("node", "--config", str(config), "join", "r-1")
    assert result.exit_code == 1 and refusal("TLS option 'key':", key) in result.output


def test_node_report_refuses_a_signing_tls_key_others_can_read(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    config, key = node_with_a_key_others_can_read(tmp_path, pki)
    out = tmp_path / "leads.json"
    result = run("node", "--config", str(config), "report", "r-1", "--format", "json", "-o", str(out))
    assert result.exit_code == 1 and refusal("--key", key) in result.output
    assert not out.exists()


def test_node_join_refuses_a_label_nonce_key_others_can_read(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    nonce_key = tmp_path / "secrets" / "label-nonce.key"
    nonce_key.parent.mkdir()
    nonce_key.write_bytes(bytes(32))
    nonce_key.chmod(0o600)
    public = tmp_path / "signing.pub"
    public.write_text(SigningKey.generate().public_key.hex())
    result = run("node", "--config", str(node_toml(tmp_path, pki, public)), "join", "r-1")
    assert result.exit_code == 1 and "label nonce key" not in result.output  # 0600: read (no coordinator)...
    open_to_others(nonce_key)
    result = run("node", "--config", str(node_toml(tmp_path, pki, public)), "join", "r-1")
    assert result.exit_code == 1 and refusal("label nonce key", nonce_key) in result.output  # ...0644 is not.


def server_tls(pki, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / f"{name}.pem"),
        "--key",
        str(pki.directory / f"{name}.key"),
    ]


def test_custodian_serve_refuses_a_key_share_others_can_read(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    share = tmp_path / "epoch.share"
    assert run("custodian", "init-share", "--epoch", "e1", "--out", str(share)).exit_code == 0
    database = f"sqlite:///{tmp_path / 'quota.db'}"
    args = ["custodian", "serve", "--name", "custodian-1", *server_tls(pki, "custodian-1")]
    result = run(*args, "--key-share", str(open_to_others(share)), "--database", database)
    assert result.exit_code == 1 and refusal("key share", share) in result.output


def test_coordinator_serve_refuses_a_signing_key_others_can_read(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    assert run("coordinator", "keygen", "--out", str(tmp_path / "keys")).exit_code == 0
    key = open_to_others(tmp_path / "keys" / "signing.key")
    database = f"sqlite:///{tmp_path / 'coordinator.db'}"
    result = run(
        "coordinator", "serve", *server_tls(pki, "coordinator"), "--signing-key", str(key), "--database", database
    )
    assert result.exit_code == 1 and refusal("signing key", key) in result.output


def test_pki_issue_refuses_a_ca_key_others_can_read(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    assert run("pki", "init-ca", "--out", str(ca_dir), "--name", "Rivers").exit_code == 0
    key = open_to_others(ca_dir / "ca.key")
    result = run(
        "pki", "issue", "--ca-dir", str(ca_dir), "--role", "member", "--name", "bank-z", "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 1 and refusal("CA key", key) in result.output
    assert not (tmp_path / "out").exists()  # Nothing half-written.
