"""``alliance-psi node join`` and ``node fetch`` against real servers, with a TOML configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.services.pki import CA_CERT_FILE
from alliance_psi.storage import MemberRepository
from tests.helpers.printed import quoted_commands, run_as_printed
from tests.integration.services.harness import custodian_name, running_alliance

pytestmark = pytest.mark.timeout(180)


def write_toml(path: Path, pki, alliance, member: str, **overrides: str) -> Path:  # type: ignore[no-untyped-def]
    key = path.parent / "signing.pub"
    key.write_text(alliance.signing_key.public_key.hex() + "\n")
    values = {
        "database": f"sqlite:///{alliance.tmp / f'{member}.db'}",
        "member-id": member,
        "ca": str(pki.directory / CA_CERT_FILE),
        "cert": str(pki.directory / f"{member}.pem"),
        "key": str(pki.directory / f"{member}.key"),
        "coordinator": alliance.coordinator_address,
        "coordinator-key": str(key),
        "data-dir": str(path.parent / f"{member}-secrets"),
        **overrides,
    }
    custodians = ", ".join(f'"{custodian_name(i)}@{a}"' for i, a in enumerate(alliance.custodian_addresses))
    lines = ["[node]", f"custodian = [{custodians}]"] + [f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_join_runs_the_round_and_fetch_keeps_the_result(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        config_b = write_toml(tmp_path / "b.toml", pki, alliance, "bank-b")
        runner = CliRunner()
        # bank-b submits but does not wait; bank-a's commit closes the round; bank-b fetches later.
        first = runner.invoke(main, ["node", "join", round_id, "--config", str(config_b), "--wait", "0"])
        assert first.exit_code == 0, first.output
        assert "round joined; items committed" in first.output and "Error" not in first.output
        # Every command the node suggests carries the --config it was run with.
        assert first.output.endswith(
            f"the result is not ready yet: round {round_id} is matched once it closes; fetch the result with "
            f"`alliance-psi node fetch {round_id} --config {config_b} --wait SECONDS`\n"
        )
        config_a = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a")
        with alliance.member_engines["bank-a"].begin() as conn:  # Types the round does not match.
            MemberRepository(conn).upsert_identifiers(
                {"type": type_, "canonical": value, "category": "other", "severity": ""}
                for type_, value in (("email", "a@example.com"), ("qq", "10001"), ("qq", "10002"))
            )
        joined = runner.invoke(main, ["node", "--config", str(config_a), "join", round_id, "--wait", "30"])
        assert joined.exit_code == 0, joined.output
        assert "round joined; result verified" in joined.output and "held by 2 members" in joined.output
        assert "3 identifiers left out by the round's types (email: 1, qq: 2)\n" in joined.output
        assert "left out" not in first.output
        assert joined.output.endswith(
            f"write the investigator report with: alliance-psi node report {round_id} --config {config_a} "
            "--format html -o FILE\n"
        )
        # bank-b runs the fetch it was told to, as printed, then the report fetch suggests.
        (fetch,) = quoted_commands(first.output)
        fetched = run_as_printed(fetch, SECONDS="30")
        assert fetched.exit_code == 0, fetched.output
        assert fetched.output.startswith(f"result for round {round_id} verified and kept: ")
        (report,) = quoted_commands(fetched.output)
        written = run_as_printed(report, FILE=str(tmp_path / "bank-b.html"))
        assert written.exit_code == 0, written.output
        assert written.output.startswith(f"wrote {tmp_path / 'bank-b.html'} (html, mode 0600): ")
        # Joined again, the round says it was committed and its result kept before: nothing sent.
        again = runner.invoke(main, ["node", "--config", str(config_a), "join", round_id, "--wait", "30"])
        assert again.exit_code == 0, again.output
        assert "already committed; result already kept" in again.output
        assert (
            f"this member committed to round {round_id} before: nothing was sent now; its kept result was "
            "fetched again and is the same\n"
        ) in again.output
        assert "items this member committed earlier" in again.output
        for sending in ("round joined", "sent this round", "new tokens computed", "changes only"):
            assert sending not in again.output


def test_join_refuses_a_member_id_that_is_not_the_certificate(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a", **{"member-id": "bank-b"})
        result = CliRunner().invoke(main, ["node", "--config", str(config), "join", "r-1"])
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == (
            f"Error: TLS option 'cert': {pki.directory / 'bank-a.pem'} is the certificate of member bank-a; "
            "this command needs the certificate of member bank-b"
        )


def test_join_reports_unknown_rounds_and_unreachable_peers(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a")
        unknown = CliRunner().invoke(main, ["node", "--config", str(config), "join", "no-such-round"])
        assert unknown.exit_code == 1 and "no-such-round" in unknown.output
        down = write_toml(tmp_path / "down.toml", pki, alliance, "bank-a", coordinator="127.0.0.1:1")
    result = CliRunner().invoke(main, ["node", "--config", str(down), "join", "r-1", "--wait", "0"])
    assert result.exit_code == 1 and "coordinator at 127.0.0.1:1 is unreachable" in result.output


def test_join_names_a_custodian_given_as_the_coordinator(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    # A newcomer's slip: the coordinator's address is a custodian's port. The node says which
    # party answers there and what to fix, not gRPC's "Hostname Verification Check failed".
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        (custodian,) = alliance.custodian_addresses
        config = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a", coordinator=custodian)
        result = CliRunner().invoke(main, ["node", "--config", str(config), "join", "r-1", "--wait", "0"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: cannot trust the coordinator at {custodian}: it is custodian custodian-1, not the coordinator: "
        "check the address configured for the coordinator (NAME@HOST:PORT)"
    )


def test_join_needs_its_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["node", "join", "r-1"], env={"ALLIANCE_PSI_NODE_DATABASE": "sqlite://"})
    assert result.exit_code == 2 and "Missing option '--member-id'" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    result = CliRunner().invoke(main, ["node", "--config", str(bad), "join", "r-1"])
    assert result.exit_code == 2 and "is not valid TOML" in result.output


def test_join_with_another_coordinator_key_says_which_signature_and_which_key(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from alliance_psi.crypto.signing import SigningKey

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2, invited=("bank-a", "bank-b"))).round_id
        other = SigningKey.generate()
        (tmp_path / "other.pub").write_text(other.public_key.hex() + "\n")
        config = write_toml(
            tmp_path / "a.toml", pki, alliance, "bank-a", **{"coordinator-key": str(tmp_path / "other.pub")}
        )
        result = CliRunner().invoke(main, ["node", "--config", str(config), "join", round_id, "--wait", "0"])
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == (
            "Error: the coordinator's signature over its audit-log checkpoint: signature does not verify against key "
            f"{other.key_id}; the checkpoint names key {alliance.signing_key.key_id}"
        )


def test_a_round_sealing_labels_at_match_says_what_the_node_must_do_and_what_it_sent(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    with running_alliance(tmp_path, pki) as alliance:
        spec = alliance.spec(2, invited=("bank-a", "bank-b"), labels_at_match=True, label_window_seconds=120)
        round_id = alliance.admin().create_round(spec).round_id
        config_b = write_toml(tmp_path / "b.toml", pki, alliance, "bank-b")
        runner = CliRunner()
        first = runner.invoke(main, ["node", "join", round_id, "--config", str(config_b), "--wait", "0"])
        assert first.exit_code == 0, first.output
        assert (
            f"round {round_id} seals labels at match: once it closes, this node must answer for its matched tokens "
            "within the round's window (120 s)"
        ) in " ".join(first.output.split())
        config_a = write_toml(tmp_path / "a.toml", pki, alliance, "bank-a")
        with ThreadPoolExecutor(1) as pool:  # bank-b's node waits for its result, answering meanwhile.
            waiting = pool.submit(alliance.node("bank-b").fetch_result, round_id, wait=60)
            joined = runner.invoke(main, ["node", "--config", str(config_a), "join", round_id, "--wait", "60"])
            waiting.result()
        assert joined.exit_code == 0, joined.output
        assert "round joined; result verified" in joined.output
        (row,) = [line for line in joined.output.splitlines() if "labels sealed at match and sent" in line]
        assert row.split("│")[2].strip() == "11", row  # What bank-a and bank-b both hold.
        fetched = runner.invoke(main, ["node", "fetch", round_id, "--config", str(config_b)])
        assert fetched.exit_code == 0, fetched.output
        assert f"round {round_id} sealed labels at match: this node sent 11 labels" in fetched.output
