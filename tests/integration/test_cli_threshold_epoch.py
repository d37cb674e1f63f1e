"""``custodian deal`` (dealer mode) and ``custodian show-commitment``: the files they write and read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.crypto import oprf
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold import fold
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare

NAMES = ["custodian-1", "custodian-2", "custodian-3"]


def deal(tmp_path: Path, *extra: str) -> object:
    args = ["custodian", "deal", "--epoch", "2026q4", "--threshold", "2", "--out", str(tmp_path / "epoch")]
    for name in NAMES:
        args += ["--custodian", name]
    return CliRunner().invoke(main, [*args, *extra])


def test_deal_writes_private_shares_and_a_public_file(tmp_path: Path) -> None:
    result = deal(tmp_path)
    assert result.exit_code == 0, result.output
    assert "DEALER MODE, for tests and demos only" in result.output
    folder = tmp_path / "epoch"
    public = PublicEpoch.from_bytes((folder / "epoch.json").read_bytes())
    assert public.origin == "dealer" and public.threshold == 2 and [c.name for c in public.custodians] == NAMES
    assert f"fingerprint {public.fingerprint()}" in result.output
    shares = []
    for name in NAMES:
        path = folder / f"{name}.share"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        share = ThresholdShare.from_bytes(path.read_bytes())
        public.check_share(share, name)
        shares.append(share)
        assert share.scalar.hex() not in result.output
    assert stat.S_IMODE((folder / "epoch.json").stat().st_mode) == 0o644
    # Any two shares give the key whose public value is K.
    k = SUITE.scalar_add(shares[0].folded((1, 3)), shares[2].folded((1, 3)))
    assert SUITE.scalar_mult_base(k) == public.key
    assert fold(shares[1].scalar, 2, (2, 3)) == shares[1].folded((2, 3))
    assert oprf.evaluate(k, b"x") == oprf.evaluate(
        SUITE.scalar_add(shares[0].folded((1, 2)), shares[1].folded((1, 2))), b"x"
    )


def test_deal_refuses_to_overwrite(tmp_path: Path) -> None:
    assert deal(tmp_path).exit_code == 0
    before = (tmp_path / "epoch" / "epoch.json").read_bytes()
    again = deal(tmp_path)
    assert again.exit_code == 1 and "exist; pass --force to replace them" in again.output
    assert (tmp_path / "epoch" / "epoch.json").read_bytes() == before
    assert deal(tmp_path, "--force").exit_code == 0
    assert (tmp_path / "epoch" / "epoch.json").read_bytes() != before


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--threshold", "4"], "--threshold 4 is more than the 3 custodians named"),
        (["--custodian", "custodian-1"], "each --custodian must be named once"),
        (["--custodian", "Custodian_4"], "invalid custodian name 'Custodian_4'"),
    ],
)
def test_deal_refuses_bad_options(tmp_path: Path, args: list[str], reason: str) -> None:
    result = deal(tmp_path, *args)
    assert result.exit_code != 0
    assert reason in result.output
    assert not (tmp_path / "epoch").exists()


def test_show_commitment_checks_the_share_against_the_public_file(tmp_path: Path) -> None:
    assert deal(tmp_path).exit_code == 0
    folder = tmp_path / "epoch"
    share = ThresholdShare.from_bytes((folder / "custodian-2.share").read_bytes())
    args = ["custodian", "show-commitment", "--key-share", str(folder / "custodian-2.share")]
    result = CliRunner().invoke(main, [*args, "--epoch-file", str(folder / "epoch.json"), "--name", "custodian-2"])
    assert result.exit_code == 0, result.output
    assert f"commitment K_2 = {share.commitment().hex()}" in result.output
    assert "matches" in result.output and "origin dealer" in result.output
    assert share.scalar.hex() not in result.output
    wrong = CliRunner().invoke(main, [*args, "--epoch-file", str(folder / "epoch.json"), "--name", "custodian-3"])
    assert wrong.exit_code == 1 and "names 'custodian-2', not 'custodian-3'" in wrong.output


def test_show_commitment_names_a_share_that_does_not_match(tmp_path: Path) -> None:
    assert deal(tmp_path).exit_code == 0
    folder = tmp_path / "epoch"
    doc = json.loads((folder / "custodian-2.share").read_bytes())
    doc["share"] = SUITE.random_scalar().hex()
    (folder / "custodian-2.share").write_text(json.dumps(doc))
    result = CliRunner().invoke(
        main,
        [
            "custodian",
            "show-commitment",
            "--key-share",
            str(folder / "custodian-2.share"),
            "--epoch-file",
            str(folder / "epoch.json"),
        ],
    )
    assert result.exit_code == 1
    assert "does not match custodian 2 (custodian-2)'s commitment K_2" in result.output
    assert doc["share"] not in result.output


def test_show_commitment_refuses_a_share_open_to_others(tmp_path: Path) -> None:
    assert deal(tmp_path).exit_code == 0
    path = tmp_path / "epoch" / "custodian-1.share"
    path.chmod(0o644)
    result = CliRunner().invoke(main, ["custodian", "show-commitment", "--key-share", str(path)])
    assert result.exit_code == 1 and f"chmod 600 {path}" in result.output
