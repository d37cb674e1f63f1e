"""A threshold custodian as a real ``custodian serve`` process: it checks its share against the public
epoch file before serving, then answers λ_i·k_i·B for the subset a member names, with a proof on demand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from alliance_psi.cli._processes import ServerProcess, tls_args
from alliance_psi.cli.main import main
from alliance_psi.crypto import dleq
from alliance_psi.crypto.batch import blind_batch
from alliance_psi.crypto.suite import RISTRETTO255_SHA512 as SUITE
from alliance_psi.crypto.threshold import lagrange_coefficient
from alliance_psi.crypto.threshold_keys import PublicEpoch, ThresholdShare
from alliance_psi.errors import AlliancePsiError, InvalidRequest
from alliance_psi.services.clients import CustodianClient
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.processes import enrol

pytestmark = pytest.mark.timeout(120)
EPOCH = "2026q4"
G = SUITE.scalar_mult_base(SUITE.scalar_from_int(1))


def dealt(tmp_path: Path) -> Path:
    folder = tmp_path / "epoch"
    args = ["custodian", "deal", "--epoch", EPOCH, "--threshold", "2", "--out", str(folder)]
    for name in ("custodian-1", "custodian-2", "custodian-3"):
        args += ["--custodian", name]
    assert CliRunner().invoke(main, args).exit_code == 0
    return folder


def serve_args(tmp_path: Path, pki: AlliancePki, share: Path, *extra: str, name: str = "custodian-1") -> list[str]:
    database = f"sqlite:///{tmp_path / 'custodian.db'}"
    return [
        "custodian",
        "serve",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        *tls_args(pki.directory, name),
        "--key-share",
        str(share),
        "--database",
        database,
        *extra,
    ]


def test_serves_folded_answers_and_proofs(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    enrol("custodian", f"sqlite:///{tmp_path / 'custodian.db'}", pki, ["bank-a"])
    share = ThresholdShare.from_bytes((folder / "custodian-1.share").read_bytes())
    public = PublicEpoch.from_bytes((folder / "epoch.json").read_bytes())
    args = serve_args(
        tmp_path, pki, folder / "custodian-1.share", "--epoch-file", str(folder / "epoch.json"), "--quota", "1000"
    )
    server = ServerProcess(args)
    try:
        deadline = time.monotonic() + 30  # Lines after the port line arrive as the child writes them.
        while "DEALER MODE" not in "".join(server.lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        text = "".join(server.lines)
        assert "holds threshold share 1 of epoch 2026q4 (2 of 3)" in text
        assert f"fingerprint {public.fingerprint()}" in text
        assert "DEALER MODE" in text
        # Each custodian counts its own: 3 custodians of threshold 2, 1,000 each, bound 1,500.
        assert "quota 1,000 elements per member and epoch here" in text and "up to 1,500 elements" in text
        with CustodianClient(server.address, pki.material("bank-a"), name="custodian-1") as client:
            status = client.epoch()
            assert (status.index, status.threshold, status.custodian_count) == (1, 2, 3)
            assert status.commitment == public.by_name("custodian-1").commitment
            batch = blind_batch([b"phone\x00+8613915274680", b"qq\x0048213679"]).blinded_elements
            answer = client.evaluate_folded(EPOCH, batch, subset=(1, 3), prove=True)
            folded = share.folded((1, 3))
            assert answer.elements == [SUITE.scalar_mult(folded, b) for b in batch]
            scaled = SUITE.scalar_mult(lagrange_coefficient(1, (1, 3)), status.commitment)
            dleq.verify_proof(G, scaled, list(batch), answer.elements, answer.proof)
            assert client.evaluate_folded(EPOCH, batch, subset=(1, 2)).proof == b""
            with pytest.raises(InvalidRequest, match="does not name this custodian"):
                client.evaluate_folded(EPOCH, batch, subset=(2, 3))
            with pytest.raises(InvalidRequest, match="name the subset of custodians"):
                client.evaluate(EPOCH, batch)
    finally:
        server.stop()


def refused(tmp_path: Path, pki: AlliancePki, share: Path, *extra: str, name: str = "custodian-1") -> str:
    with pytest.raises(AlliancePsiError) as caught:
        ServerProcess(serve_args(tmp_path, pki, share, *extra, name=name), timeout=60).stop()
    return str(caught.value)


def test_a_corrupted_share_does_not_start(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    doc = json.loads((folder / "custodian-1.share").read_bytes())
    doc["share"] = SUITE.random_scalar().hex()
    (folder / "custodian-1.share").write_text(json.dumps(doc))
    message = refused(tmp_path, pki, folder / "custodian-1.share", "--epoch-file", str(folder / "epoch.json"))
    assert "does not match custodian 1 (custodian-1)'s commitment K_1 in the public epoch file" in message
    assert doc["share"] not in message
    assert not (tmp_path / "custodian.db").exists()  # Refused before any database is made.


def test_another_custodians_share_does_not_start(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    message = refused(tmp_path, pki, folder / "custodian-2.share", "--epoch-file", str(folder / "epoch.json"))
    assert (
        "the key share is custodian 2's, which the public epoch file names 'custodian-2', not 'custodian-1'" in message
    )


def test_a_threshold_share_needs_its_epoch_file(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    message = refused(tmp_path, pki, folder / "custodian-1.share")
    assert "is threshold share 1 of epoch '2026q4': give the public epoch file with --epoch-file" in message


def test_a_chain_share_takes_no_epoch_file(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    chain = tmp_path / "chain.share"
    assert CliRunner().invoke(main, ["custodian", "init-share", "--epoch", EPOCH, "--out", str(chain)]).exit_code == 0
    message = refused(tmp_path, pki, chain, "--epoch-file", str(folder / "epoch.json"))
    assert "is a chain key share (init-share); --epoch-file is for a threshold share" in message


def test_an_epoch_file_of_another_epoch_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    other = tmp_path / "other"
    args = ["custodian", "deal", "--epoch", "2027q1", "--threshold", "2", "--out", str(other)]
    for name in ("custodian-1", "custodian-2", "custodian-3"):
        args += ["--custodian", name]
    assert CliRunner().invoke(main, args).exit_code == 0
    message = refused(tmp_path, pki, folder / "custodian-1.share", "--epoch-file", str(other / "epoch.json"))
    assert "the key share's epoch is '2026q4'; the public epoch file says '2027q1'" in message


def test_an_altered_epoch_file_is_refused(tmp_path: Path, pki: AlliancePki) -> None:
    folder = dealt(tmp_path)
    doc = json.loads((folder / "epoch.json").read_bytes())
    doc["custodians"][2]["commitment"] = SUITE.scalar_mult_base(SUITE.random_scalar()).hex()
    (folder / "epoch.json").write_text(json.dumps(doc))
    message = refused(tmp_path, pki, folder / "custodian-1.share", "--epoch-file", str(folder / "epoch.json"))
    assert "custodian 3 (custodian-3): its commitment is not on the epoch's polynomial" in message
