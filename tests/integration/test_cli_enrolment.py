"""``custodian member`` and ``coordinator member|admin``: each server operator's enrolment list."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from alliance_psi.cli.main import main
from alliance_psi.protocol.model import Role
from alliance_psi.services import pki as pki_module
from alliance_psi.storage import create_schema, make_engine
from alliance_psi.storage.schema import audit_log
from tests.integration.services.conftest import AlliancePki


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def pin(pki: AlliancePki, name: str) -> str:
    return pki_module.spki_sha256(pki.issued[name].cert_pem).hex()


def audit_actions(database: str) -> list[tuple[str, str, dict[str, object]]]:
    engine = make_engine(database)
    create_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail).order_by(audit_log.c.seq))
        found = [(r.actor, r.action, json.loads(r.detail)) for r in rows]
    engine.dispose()
    return found


def test_custodian_member_add_list_remove(tmp_path: Path, pki: AlliancePki) -> None:
    db = f"sqlite:///{tmp_path / 'custodian.db'}"
    cert_a, cert_b = str(pki.directory / "bank-a.pem"), str(pki.directory / "bank-b.pem")
    added = run("custodian", "member", "add", "--cert", cert_a, "--database", db)
    assert added.exit_code == 0, added.output
    assert added.stdout == (
        "enrolled member bank-a at this custodian, default quota\n"
        f"key pin (SHA-256 of its public key): {pin(pki, 'bank-a')}\n"
    )
    quota = run("custodian", "member", "add", "--cert", cert_b, "--quota", "5000", "--database", db)
    assert quota.exit_code == 0 and quota.output.startswith("enrolled member bank-b at this custodian, quota 5,000\n")
    again = run("custodian", "member", "add", "--cert", cert_b, "--quota", "7000", "--database", db)
    assert again.exit_code == 0 and again.output.startswith("updated member bank-b at this custodian, quota 7,000\n")

    listed = run("custodian", "member", "list", "--database", db)
    assert listed.exit_code == 0, listed.output
    header, row_a, row_b = listed.output.splitlines()
    assert header.split("  ")[0:1] == ["name"] and "key pin (SHA-256 of the public key)" in header
    assert "quota" in header and header.split()[-1] == "added"
    assert row_a.split()[:4] == ["bank-a", pin(pki, "bank-a"), "default", "0"]
    assert row_b.split()[:4] == ["bank-b", pin(pki, "bank-b"), "7,000", "0"]

    removed = run("custodian", "member", "remove", "bank-a", "--database", db)
    assert removed.exit_code == 0 and removed.output == "removed member bank-a from this custodian\n"
    unknown = run("custodian", "member", "remove", "bank-a", "--database", db)
    assert unknown.exit_code == 1 and "member bank-a is not enrolled at this custodian" in unknown.output
    assert [line.split()[0] for line in run("custodian", "member", "list", "--database", db).output.splitlines()] == [
        "name",
        "bank-b",
    ]
    assert [(actor, action, d.get("name")) for actor, action, d in audit_actions(db)] == [
        ("operator", "enrolment.add", "bank-a"),
        ("operator", "enrolment.add", "bank-b"),
        ("operator", "enrolment.update", "bank-b"),
        ("operator", "enrolment.remove", "bank-a"),
    ]


def test_the_key_pin_is_what_openssl_prints_for_the_certificate(pki: AlliancePki) -> None:
    """The member reads its own pin with the README's openssl pipeline; the operator compares."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to check the README's pin command")
    cert = pki.directory / "bank-c.pem"
    command = f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der | sha256sum"
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == pin(pki, "bank-c")


def test_bad_enrolments_are_refused_with_the_reason_and_change_nothing(tmp_path: Path, pki: AlliancePki) -> None:
    db = f"sqlite:///{tmp_path / 'custodian.db'}"
    assert (
        run("custodian", "member", "add", "--cert", str(pki.directory / "bank-a.pem"), "--database", db).exit_code == 0
    )
    other_key = pki_module.issue(pki.ca, role=Role.MEMBER, name="bank-a")
    (tmp_path / "bank-a-new.pem").write_bytes(other_key.cert_pem)
    (tmp_path / "junk.pem").write_text("not a certificate")
    new_key_pin = pki_module.spki_sha256(other_key.cert_pem).hex()
    cases = [
        (
            ["--cert", str(tmp_path / "bank-a-new.pem")],
            f"member bank-a is enrolled with key {pin(pki, 'bank-a')}, not {new_key_pin}: remove it first",
        ),
        (
            ["--cert", str(pki.directory / "custodian-1.pem")],
            (
                f"--cert {pki.directory / 'custodian-1.pem'}: the certificate is for custodian custodian-1; "
                "only member certificates enrol here"
            ),
        ),
        (["--cert", str(tmp_path / "junk.pem")], f"--cert {tmp_path / 'junk.pem'}: not an alliance certificate"),
        (["--cert", str(tmp_path / "none.pem")], f"--cert {tmp_path / 'none.pem'}: No such file or directory"),
    ]
    for args, message in cases:
        result = run("custodian", "member", "add", *args, "--database", db)
        assert result.exit_code == 1 and message in result.output, result.output
    zero = run(
        "custodian", "member", "add", "--cert", str(pki.directory / "bank-b.pem"), "--quota", "0", "--database", db
    )
    assert zero.exit_code == 2 and "0 is not in the range x>=1" in zero.output
    rows = run("custodian", "member", "list", "--database", db).output.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["bank-a", pin(pki, "bank-a")]]


def test_coordinator_members_with_display_names_and_admins(tmp_path: Path, pki: AlliancePki) -> None:
    db = f"sqlite:///{tmp_path / 'coordinator.db'}"
    cert_a = str(pki.directory / "bank-a.pem")
    added = run("coordinator", "member", "add", "--cert", cert_a, "--display-name", "某某银行", "--database", db)
    assert added.exit_code == 0 and added.stdout.startswith(
        "enrolled member bank-a at this coordinator, shown as 某某银行\n"
    )
    bad_name = run("coordinator", "member", "add", "--cert", cert_a, "--display-name", "甲\x07", "--database", db)
    assert bad_name.exit_code == 1 and "must not contain control or format characters" in bad_name.output
    admin = run("coordinator", "admin", "add", "--cert", str(pki.directory / "admin.pem"), "--database", db)
    assert admin.exit_code == 0 and admin.output.startswith("enrolled admin admin at this coordinator\n")
    wrong = run("coordinator", "admin", "add", "--cert", cert_a, "--database", db)
    assert (
        wrong.exit_code == 1
        and "the certificate is for member bank-a; only admin certificates enrol here" in wrong.output
    )
    members = run("coordinator", "member", "list", "--database", db).output.splitlines()
    assert members[0].split()[-3:] == ["display", "name", "added"]
    assert members[1].split()[:3] == ["bank-a", pin(pki, "bank-a"), "某某银行"]
    admins = run("coordinator", "admin", "list", "--database", db).output.splitlines()
    assert [row.split()[:2] for row in admins[1:]] == [["admin", pin(pki, "admin")]]
    assert run("coordinator", "admin", "list", "--epoch", "x", "--database", db).exit_code == 2  # No usage here.


def test_a_server_with_nobody_enrolled_says_so_at_start(tmp_path: Path, pki: AlliancePki) -> None:
    from alliance_psi.cli._processes import ServerProcess, tls_args

    assert run("custodian", "init-share", "--epoch", "e1", "--out", str(tmp_path / "share")).exit_code == 0
    args = ["--key-share", str(tmp_path / "share"), "--database", f"sqlite:///{tmp_path / 'c.db'}"]
    with ServerProcess(
        [
            "custodian",
            "serve",
            "--name",
            "custodian-1",
            "--listen",
            "127.0.0.1:0",
            *tls_args(pki.directory, "custodian-1"),
            *args,
        ]
    ) as server:
        lines = "".join(server.lines)
    assert "custodian custodian-1: 0 member(s) enrolled" in lines
    assert (
        "warning: no member is enrolled, so every call is refused; enrol with "
        "`alliance-psi custodian member add --cert MEMBER.pem --database …` (no restart needed)"
    ) in lines


@pytest.mark.parametrize("server", ["custodian", "coordinator"])
def test_a_mistyped_database_is_refused_by_list_and_remove_and_named_by_add(
    tmp_path: Path, pki: AlliancePki, server: str
) -> None:
    # A typo in --database must not list an empty server nor enrol into a file no server reads unnoticed.
    real = tmp_path / "server.db"
    assert run(server, "member", "add", "--cert", str(pki.directory / "bank-a.pem"), "--database", f"sqlite:///{real}")
    typo = tmp_path / "sever.db"
    for args in (("list",), ("remove", "bank-a")):
        refused = run(server, "member", *args, "--database", f"sqlite:///{typo}")
        assert refused.exit_code != 0
        assert f"no database at {typo}: give --database as this {server}'s serve command does" in refused.output
        assert not typo.exists()  # Nothing was created.
    added = run(server, "member", "add", "--cert", str(pki.directory / "bank-b.pem"), "--database", f"sqlite:///{typo}")
    assert added.exit_code == 0, added.output
    assert f"note: created a new database at {typo}; if this {server} already runs" in added.output
    again = run(server, "member", "add", "--cert", str(pki.directory / "bank-b.pem"), "--database", f"sqlite:///{typo}")
    assert again.exit_code == 0 and "note: created" not in again.output  # Only when it was new.


@pytest.mark.parametrize("server", ["custodian", "coordinator"])
@pytest.mark.parametrize("command", [["add", "--cert", "bank-a.pem"], ["list"], ["remove", "bank-a"]])
def test_a_database_path_without_a_url_scheme_is_refused_naming_database(
    tmp_path: Path, pki: AlliancePki, server: str, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's walkthrough has a coordinator/ folder: a newcomer writes the path without sqlite:///.
    monkeypatch.chdir(pki.directory)
    refused = run(server, "member", *command, "--database", "coordinator/coordinator.db")
    assert refused.exit_code == 2
    assert (
        "Invalid value for '--database': 'coordinator/coordinator.db' is not a database URL; a SQLite file "
        "is written sqlite:///coordinator/coordinator.db (PostgreSQL: postgresql://USER@HOST/DB)"
    ) in refused.output
    assert "--cert" not in refused.output
    assert not (pki.directory / "coordinator").exists()
