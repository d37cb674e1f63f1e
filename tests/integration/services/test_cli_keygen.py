"""``alliance-psi custodian keygen`` as real processes, one per custodian, over mTLS on loopback.

The shares they write are checked with the threshold evaluation (``crypto.threshold``: each
custodian folds its Lagrange coefficient into its share, the member adds the answers), against
the key ``K`` of the public epoch file they write; a cheating custodian runs in this process.
"""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from alliance_psi.cli._processes import cli_command, tls_args
from alliance_psi.cli.main import main
from alliance_psi.config import PeerEndpoint
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.crypto.threshold import combine, fold
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare
from alliance_psi.protocol.ceremony import CeremonyPlan
from alliance_psi.protocol.model import Role
from alliance_psi.services.pki import spki_der
from alliance_psi.storage import AuditLog, make_engine
from alliance_psi.storage.schema import enrolments

from .conftest import AlliancePki
from .test_key_ceremony import BadDealer, Custodian, free_ports

NAMES = ("keygen-1", "keygen-2", "keygen-3")


@pytest.fixture(scope="module")
def custodians(pki: AlliancePki) -> tuple[str, ...]:
    for name in NAMES:
        pki.issue(Role.CUSTODIAN, name)
    return NAMES


def database(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name / 'custodian.db'}"


def enrol_peers(pki: AlliancePki, tmp_path: Path, name: str, names: tuple[str, ...]) -> None:
    (tmp_path / name).mkdir(exist_ok=True)
    for other in names:
        if other != name:
            cert = str(pki.directory / f"{other}.pem")
            added = CliRunner().invoke(
                main, ["custodian", "peer", "add", "--cert", cert, "--database", database(tmp_path, name)]
            )
            assert added.exit_code == 0, added.output
            assert f"enrolled custodian {other} at this custodian" in added.output


def keygen(
    pki: AlliancePki, tmp_path: Path, name: str, ports: dict[str, int], epoch: str, *extra: str
) -> subprocess.Popen[str]:
    peers = [f"--peer={n}@127.0.0.1:{p}" for n, p in ports.items() if n != name]
    args = [
        "custodian", "keygen", "--name", name, "--epoch", epoch, "--threshold", "2", *peers,
        "--listen", f"127.0.0.1:{ports[name]}", *tls_args(pki.directory, name),
        "--database", database(tmp_path, name), "--out", str(tmp_path / name / epoch),
        "--timeout", "90", "--round-timeout", "30", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def keygen_args(pki: AlliancePki, tmp_path: Path, out: Path) -> list[str]:
    """keygen-1's command line, with peers where nothing listens (a ceremony would time out)."""
    return [
        "custodian", "keygen", "--name", "keygen-1", "--epoch", "e", "--threshold", "2",
        "--peer", "keygen-2@127.0.0.1:1", "--peer", "keygen-3@127.0.0.1:2", "--listen", "127.0.0.1:0",
        *tls_args(pki.directory, "keygen-1"), "--database", database(tmp_path, "keygen-1"),
        "--out", str(out), "--timeout", "5",
    ]  # fmt: skip


def check_threshold_evaluation(shares: list[ThresholdShare], public: PublicEpoch) -> None:
    """Every τ-subset, folding and combining as custodians and members do, evaluates under the key K."""
    suite = RISTRETTO255_SHA512
    r = suite.random_scalar()
    blinded = suite.scalar_mult_base(r)  # B = r·G, so k·B = r·K whatever k is.
    expected = suite.scalar_mult(r, public.key)
    for subset in itertools.combinations(shares, public.threshold):
        indices = [s.index for s in subset]
        answers = [[suite.scalar_mult(fold(s.scalar, s.index, indices), blinded)] for s in subset]
        assert combine(answers) == [expected]


def test_three_keygen_processes_write_shares_that_evaluate_the_published_key(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    for name in custodians:
        enrol_peers(pki, tmp_path, name, custodians)
    ports = dict(zip(custodians, free_ports(3), strict=True))
    procs = {name: keygen(pki, tmp_path, name, ports, "2027q1") for name in custodians}
    outputs = {name: p.communicate(timeout=180) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name]
    epoch_files = {(tmp_path / n / "2027q1" / "epoch.json").read_bytes() for n in custodians}
    assert len(epoch_files) == 1
    public = PublicEpoch.from_bytes(epoch_files.pop())
    assert public.origin == "dkg" and public.threshold == 2 and [c.name for c in public.custodians] == list(custodians)
    shares = []
    for name in custodians:
        path = tmp_path / name / "2027q1" / f"{name}.share"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        share = ThresholdShare.from_bytes(path.read_bytes())
        assert public.by_name(name).index == share.index and share.commitment() == public.by_name(name).commitment
        shares.append(share)
        out = outputs[name][0]
        assert "generated key epoch 2027q1: 2 of 3 custodians" in out
        assert f"fingerprint {public.fingerprint()}" in out
        assert "disqualified" not in out
    check_threshold_evaluation(shares, public)
    # The same epoch again without --force: refused, nothing overwritten, no ceremony run.
    again = keygen(pki, tmp_path, "keygen-1", ports, "2027q1")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 1 and "exist; pass --force to replace them" in err


def test_a_cheating_custodian_is_named_by_the_keygen_processes_which_finish(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    for name in ("keygen-1", "keygen-3"):
        enrol_peers(pki, tmp_path, name, custodians)
    ports = dict(zip(custodians, free_ports(3), strict=True))
    procs = {name: keygen(pki, tmp_path, name, ports, "2027q2") for name in ("keygen-1", "keygen-3")}
    plan = CeremonyPlan.create("2027q2", 2, custodians)
    cheater = Custodian(pki, "keygen-2", plan, tmp_path, BadDealer)
    from alliance_psi.services.key_ceremony import CeremonyTimes, run_ceremony

    done = threading.Thread(
        target=lambda: run_ceremony(
            cheater.role,
            listen=f"127.0.0.1:{ports['keygen-2']}",
            tls=cheater.tls,
            peers=[PeerEndpoint(n, f"127.0.0.1:{ports[n]}") for n in ("keygen-1", "keygen-3")],
            checks=[cheater.check],
            times=CeremonyTimes(total_seconds=90, round_seconds=30),
        )
    )
    done.start()
    outputs = {name: p.communicate(timeout=180) for name, p in procs.items()}
    done.join(timeout=120)
    shares = []
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name]
        assert (
            "disqualified keygen-2: its shares to keygen-1, keygen-3 failed its commitments (2 complaints, more than "
            "τ−1 = 1)" in outputs[name][0]
        )
        shares.append(ThresholdShare.from_bytes((tmp_path / name / "2027q2" / f"{name}.share").read_bytes()))
    public = PublicEpoch.from_bytes((tmp_path / "keygen-1" / "2027q2" / "epoch.json").read_bytes())
    assert (tmp_path / "keygen-3" / "2027q2" / "epoch.json").read_bytes() == public.to_bytes()
    check_threshold_evaluation(shares, public)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threshold", "4"], "the threshold must be 1 to 3 (the custodians), not 4"),
        (["--peer", "keygen-1@127.0.0.1:1"], "each --peer must name another custodian, once"),
        (
            ["--peer", "nobody@127.0.0.1:1"],
            "nobody not enrolled here: enrol each with `alliance-psi custodian peer add",
        ),
        (["--peer", "keygen-2"], "has no name: write NAME@HOST:PORT"),
        (["--attempt", "0"], "'--attempt': 0 is not in the range 1<=x<=1000000"),
    ],
)
def test_bad_input_is_refused_before_any_ceremony(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path, extra: list[str], message: str
) -> None:
    enrol_peers(pki, tmp_path, "keygen-1", custodians)
    result = CliRunner().invoke(main, [*keygen_args(pki, tmp_path, tmp_path / "out"), *extra])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_peer_enrolled_by_pin_only_is_enrolled_again_before_any_ceremony(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    # An enrolment made before the public key was kept: shares cannot be sealed to a pin.
    enrol_peers(pki, tmp_path, "keygen-1", custodians)
    engine = make_engine(database(tmp_path, "keygen-1"))
    with engine.begin() as conn:
        conn.execute(update(enrolments).where(enrolments.c.name == "keygen-3").values(public_key=None))
    result = CliRunner().invoke(main, keygen_args(pki, tmp_path, tmp_path / "out"))
    assert result.exit_code == 1
    assert (
        "keygen-3 enrolled here by key pin only (before shares were sealed to the enrolled key): enrol the same "
        "certificate again with `alliance-psi custodian peer add --cert CUSTODIAN.pem" in result.output
    )
    assert "key ceremony" not in result.output
    # Enrolling the same certificate again keeps its public key; the ceremony then starts (and, with
    # nobody at the peers' addresses, times out).
    cert = str(pki.directory / "keygen-3.pem")
    again = CliRunner().invoke(
        main, ["custodian", "peer", "add", "--cert", cert, "--database", database(tmp_path, "keygen-1")]
    )
    assert again.exit_code == 0 and "updated custodian keygen-3 at this custodian" in again.output
    with engine.connect() as conn:
        kept = conn.execute(select(enrolments.c.public_key).where(enrolments.c.name == "keygen-3")).scalar_one()
    assert kept == spki_der(pki.issued["keygen-3"].cert_pem)
    result = CliRunner().invoke(main, keygen_args(pki, tmp_path, tmp_path / "out"))
    assert "key ceremony: epoch e, threshold 2 of 3" in result.output


def test_a_custodian_never_deals_twice_in_one_attempt(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    # A run whose peers never came (it times out after dealing): its round-1 message may be in a
    # peer's hands, to be replayed in a second run of the same session.
    enrol_peers(pki, tmp_path, "keygen-1", custodians)
    first = CliRunner().invoke(main, keygen_args(pki, tmp_path, tmp_path / "out"))
    assert first.exit_code == 1 and "key ceremony: epoch e, threshold 2 of 3" in first.output
    again = CliRunner().invoke(main, keygen_args(pki, tmp_path, tmp_path / "out"))
    assert again.exit_code == 1
    assert (
        "custodian keygen-1 already took part in this ceremony (epoch e, threshold 2 of 3: keygen-1, " in again.output
    )
    assert "Run every custodian with --attempt 2" in again.output
    assert "key ceremony:" not in again.output  # Refused before its server started or it dealt.
    second = CliRunner().invoke(main, [*keygen_args(pki, tmp_path, tmp_path / "out"), "--attempt", "2"])
    assert "key ceremony: epoch e (attempt 2), threshold 2 of 3" in second.output
    engine = make_engine(database(tmp_path, "keygen-1"))
    with engine.connect() as conn:
        claims = AuditLog(conn).of_action("key-ceremony.dealt")
    assert [(c.detail["key_epoch"], c.detail["attempt"]) for c in claims] == [("e", 1), ("e", 2)]
    assert claims[0].detail["session"] != claims[1].detail["session"]


def test_an_existing_share_is_never_replaced_without_force(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    enrol_peers(pki, tmp_path, "keygen-1", custodians)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keygen-1.share").write_bytes(b"the share of an epoch in use")
    result = CliRunner().invoke(main, keygen_args(pki, tmp_path, out))
    assert result.exit_code == 1
    assert f"{out / 'keygen-1.share'} exist; pass --force to replace them" in result.output
    assert "key ceremony" not in result.output  # Refused before any ceremony.
    assert (out / "keygen-1.share").read_bytes() == b"the share of an epoch in use"
    assert sorted(p.name for p in out.iterdir()) == ["keygen-1.share"]


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_ceremony(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    enrol_peers(pki, tmp_path, "keygen-1", custodians)
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "2027q1"
    result = CliRunner().invoke(main, keygen_args(pki, tmp_path, out))
    assert result.exit_code == 1
    assert f"--out {out}: {tmp_path / 'a-file'} is not a folder" in result.output
    assert "key ceremony" not in result.output
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_custodians_started_with_other_thresholds_say_so_and_write_nothing(
    pki: AlliancePki, custodians: tuple[str, ...], tmp_path: Path
) -> None:
    for name in ("keygen-1", "keygen-2"):
        enrol_peers(pki, tmp_path, name, custodians)
    ports = dict(zip(custodians, free_ports(3), strict=True))
    # Both stop as soon as one's message reaches the other, long before their 600 s timeout.
    one = keygen(pki, tmp_path, "keygen-1", ports, "2027q3", "--timeout", "600")
    two = keygen(pki, tmp_path, "keygen-2", ports, "2027q3", "--threshold", "3", "--timeout", "600")
    _, err_one = one.communicate(timeout=120)
    _, err_two = two.communicate(timeout=120)
    assert one.returncode == 1 and two.returncode == 1
    # Whichever is refused first names the plan of the other; one that received the other's
    # message first says so, naming it.
    for err, peer, plan in ((err_one, "keygen-2", "threshold 3 of 3"), (err_two, "keygen-1", "threshold 2 of 3")):
        assert (
            f"our message was refused by custodian {peer} at 127.0.0.1:{ports[peer]}: runs another ceremony "
            f"(epoch 2027q3, {plan}: keygen-1, keygen-2, keygen-3)"
            in err
            or f"{peer} sent a message of another ceremony than this one" in err
        ), err
    assert not (tmp_path / "keygen-1" / "2027q3").exists() and not (tmp_path / "keygen-2" / "2027q3").exists()
