"""``coordinator scope create/list/show/close``: the operator's continuous scopes, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from tests.integration.services.conftest import AlliancePki


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def admin_tls(pki: AlliancePki) -> list[str]:
    return [
        "--ca",
        str(pki.directory / "ca.pem"),
        "--cert",
        str(pki.directory / "admin.pem"),
        "--key",
        str(pki.directory / "admin.key"),
    ]


BAD_OPTIONS = [
    ("--threshold", "1", "1 is not in the range x>=2"),
    ("--epoch", "2026 Q1", "'2026 Q1': a key epoch is 1-64 letters, digits, '.', '_' or '-'"),
    ("--types", "phone,fax", "unknown types ['fax']; known: phone,"),
    ("--types", ",", "unknown types (none given)"),
    ("--min-interval", "5x", "'5x' is not a duration: give seconds (90) or a number with s, m, h or d (15m)"),
    ("--min-interval", "-5", "'-5' is not a duration"),
    ("--min-interval", "8d", "8d is longer than 7 days, the longest interval"),
    ("--label-cap", "0", "0 is not in the range 1<=x<=800"),
    ("--label-cap", "801", "801 is not in the range 1<=x<=800"),
    ("--label-cap", "many", "'many' is not a valid integer"),
]
# A batch round has no alert interval: ``--min-interval`` is tried on scopes only; a scope seals
# its labels with each delta: ``--label-window`` is tried on rounds only.
BAD_OPTION_CASES = [
    (group, *case)
    for group in ("scope", "round")
    for case in BAD_OPTIONS
    if not (group == "round" and case[0] == "--min-interval")
] + [
    ("round", "--label-window", "9", "9 is not from 10 seconds to 7 days"),
    ("round", "--label-window", "8d", "8d is not from 10 seconds to 7 days"),
    ("round", "--label-window", "5x", "'5x' is not a duration: give seconds (90) or a number with s, m, h or d"),
]


@pytest.mark.parametrize(("group", "option", "value", "message"), BAD_OPTION_CASES)
def test_bad_input_is_refused_before_any_connection(
    group: str, option: str, value: str, message: str, pki: AlliancePki
) -> None:
    args = {"--name": "watch", "--epoch": "epoch-test", option: value}
    flat = [part for pair in args.items() for part in pair]
    result = run("coordinator", group, "create", "--coordinator", "127.0.0.1:1", *admin_tls(pki), *flat)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert f"Invalid value for '{option}'" in result.output


# Options that each pass alone but not together: refused by the command, naming both, before any connection.
CONFLICTING_OPTIONS = {
    "invitees below the threshold": (
        ["--threshold", "3", "--invite", "bank-a,bank-b,bank-a"],
        (
            "Error: --invite names 2 members, fewer than --threshold 3: a lead needs that many holders, so invite "
            "at least as many members or lower --threshold"
        ),
    ),
    "label cap without shared labels": (
        ["--no-share-labels", "--label-cap", "4"],
        "Error: --label-cap caps the labels co-holders share: with --no-share-labels there are none",
    ),
    "label cap below threshold - 1": (
        ["--threshold", "4", "--label-cap", "2"],
        (
            "Error: --label-cap 2 is below --threshold 4 − 1: a lead needs 3 co-holders' labels to be backed, so "
            "raise --label-cap or lower --threshold"
        ),
    ),
}


ROUND_CONFLICTS = {
    "labels at match without shared labels": (
        ["--no-share-labels", "--labels-at-match"],
        (
            "Error: --labels-at-match asks the holders of matched tokens for their labels: with --no-share-labels "
            "there are none to ask for"
        ),
    ),
    "a label window without labels at match": (
        ["--label-window", "60"],
        "Error: --label-window is how long a round with --labels-at-match waits for labels",
    ),
}


@pytest.mark.parametrize(
    ("group", "case"),
    [(group, case) for group in ("scope", "round") for case in CONFLICTING_OPTIONS]
    + [("round", case) for case in ROUND_CONFLICTS],
)
def test_options_that_conflict_are_refused_naming_both(group: str, case: str, pki: AlliancePki) -> None:
    options, message = {**CONFLICTING_OPTIONS, **ROUND_CONFLICTS}[case]
    flat = ["--name", "watch", "--epoch", "epoch-test", *options]
    result = run("coordinator", group, "create", "--coordinator", "127.0.0.1:1", *admin_tls(pki), *flat)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "invited:" not in result.output


def test_operator_scope_commands(tmp_path: Path, pki: AlliancePki) -> None:
    from tests.integration.services.harness import running_alliance

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        target = ["--coordinator", alliance.coordinator_address, *admin_tls(pki)]
        created = run(
            "coordinator", "scope", "create", *target, "--name", "Mule accounts", "--epoch", "epoch-test",
            "--threshold", "3", "--invite", "bank-a,bank-b,bank-c", "--types", "phone,bank_card",
            "--min-interval", "15m", "--id", "mules",
        )  # fmt: skip
        assert created.exit_code == 0 and created.output == "mules\n", created.output
        other = ["--name", "Open", "--epoch", "epoch-test", "--id", "open-watch", "--no-share-labels"]
        assert run("coordinator", "scope", "create", *target, *other).exit_code == 0
        assert run("coordinator", "round", "create", *target, "--name", "Batch", "--epoch", "epoch-test").exit_code == 0
        listed = run("coordinator", "scope", "list", *target)
        lines = listed.output.splitlines()
        assert listed.exit_code == 0 and len(lines) == 3, listed.output  # The batch round is not a scope.
        assert lines[0].split() == ["scope", "state", "t", "epoch", "types", "labels", "committed", "alerts", "name"]
        assert lines[1].split() == ["mules", "open", "3", "epoch-test", "phone,bank_card", "shared", "0", "of", "3", "invited", "every", "15", "min", "Mule", "accounts"]  # fmt: skip
        assert lines[2].split()[:9] == ["open-watch", "open", "2", "epoch-test", "phone,id_card,bank_card,uscc", "not", "shared", "0", "at"]  # fmt: skip
        rounds = run("coordinator", "round", "list", *target)
        assert "mules" not in rounds.output and "Batch" in rounds.output
        shown = run("coordinator", "scope", "show", "mules", *target)
        facts = dict(line.split(None, 1) for line in shown.output.replace("key epoch", "key-epoch").splitlines())
        assert shown.exit_code == 0 and facts["scope"] == "mules" and facts["state"] == "open"
        assert facts["alerts"] == "every 15 min (after creation)" and facts["threshold"] == "3 members"
        assert (
            facts["types"] == "phone, bank_card"
            and facts["labels"] == "shared with co-holders, at most 8 labels per lead"
        )
        assert "deadline" not in facts
        missing = run("coordinator", "scope", "show", "no-such", *target)
        assert missing.exit_code == 1 and "no round no-such" in missing.output
        batch_id = rounds.output.splitlines()[1].split()[0]
        not_a_scope = run("coordinator", "scope", "close", batch_id, *target)
        assert not_a_scope.exit_code == 1 and "is a batch round, not a continuous scope" in not_a_scope.output
        closed = run("coordinator", "scope", "close", "mules", *target, "--reason", "case closed")
        assert closed.exit_code == 0 and closed.output == "scope mules is closed; final results issued (matched)\n"
        again = run("coordinator", "scope", "close", "mules", *target)
        assert again.exit_code == 1 and "round mules is already matched" in again.output


def test_a_round_with_labels_at_match_says_so_until_its_labels_are_in(tmp_path: Path, pki: AlliancePki) -> None:
    from tests.integration.services.harness import running_alliance

    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        target = ["--coordinator", alliance.coordinator_address, *admin_tls(pki)]
        args = ["--name", "Mules", "--epoch", "epoch-test", "--id", "late", "--labels-at-match", "--label-window", "2m"]
        created = run("coordinator", "round", "create", *target, *args)
        assert created.exit_code == 0 and created.output == "late\n", created.output
        assert run("coordinator", "round", "list", *target).output.splitlines()[1].split()[5:7] == ["at", "match"]
        shown = run("coordinator", "round", "show", "late", *target)
        facts = dict(line.split(None, 1) for line in shown.output.replace("key epoch", "key-epoch").splitlines())
        assert facts["labels"] == "shared with co-holders, at most 8 labels per lead, sealed at match, 120 s to answer"
        # Closed with nobody committed: nothing matched, so no label is asked for and the round is matched.
        closed = run("coordinator", "round", "close", "late", *target)
        assert closed.exit_code == 0, closed.output
        shown = run("coordinator", "round", "show", "late", *target)
        facts = dict(line.split(None, 1) for line in shown.output.replace("key epoch", "key-epoch").splitlines())
        assert facts["state"].startswith("matched") and "due" in facts["labels"]
        # A round both invited members committed to, one of them has not answered yet.
        args = ["--name", "Owed", "--epoch", "epoch-test", "--id", "owed", "--labels-at-match", "--invite"]
        assert run("coordinator", "round", "create", *target, *args, "bank-a,bank-b").exit_code == 0
        alliance.node("bank-a").join("owed", wait=0)
        alliance.node("bank-b").join("owed", wait=0)  # Closes the round and answers for bank-b.
        shown = run("coordinator", "round", "show", "owed", *target)
        facts = dict(line.split("  ", 1) for line in shown.output.splitlines())
        assert facts["labels awaited"].strip() == "bank-a (11 labels)", shown.output
        assert "waiting for the matched tokens' labels" in facts["state"]
