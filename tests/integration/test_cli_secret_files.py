"""Key files as the node and servers read them: a clear error for a damaged one, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.crypto.signing import SigningKey
from alliance_psi.services.pki import CA_CERT_FILE
from alliance_psi.storage import create_schema, make_engine


def node_toml(tmp_path: Path, pki, coordinator_key: Path) -> Path:  # type: ignore[no-untyped-def]
    values = {
        "database": f"sqlite:///{tmp_path / 'bank-a.db'}",
        "member-id": "bank-a",
        "ca": str(pki.directory / CA_CERT_FILE),
        "cert": str(pki.directory / "bank-a.pem"),
        "key": str(pki.directory / "bank-a.key"),
        "coordinator": "127.0.0.1:1",
        "coordinator-key": str(coordinator_key),
        "data-dir": str(tmp_path / "secrets"),
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
