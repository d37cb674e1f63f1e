"""``report verify --online`` with a threshold node: the leads' tokens re-derived through two of three
custodians, checked against the epoch file, and a token attached to another identifier caught."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from alliance_psi.cli import node_report  # noqa: F401 - attaches `node report`.
from alliance_psi.cli.node import node_group
from alliance_psi.cli.reports import report_group
from alliance_psi.reports import ReportSigner, sign_document
from alliance_psi.services.custodian import SqlQuotaLedger
from alliance_psi.storage import make_engine
from tests.integration.services.harness import EPOCH, Planted, custodian_name, running_alliance

RUNNER = CliRunner(env={"COLUMNS": "200"})


@pytest.mark.timeout(300)
def test_online_verification_through_threshold_custodians(tmp_path: Path, pki: Any) -> None:
    planted = Planted.make()
    bank_a, bank_b = pki.tls_config("bank-a"), pki.tls_config("bank-b")
    with running_alliance(tmp_path, pki, planted=planted, custodians=3, threshold=2) as alliance:
        round_id = alliance.admin().create_round(alliance.spec(2)).round_id
        with ThreadPoolExecutor(3) as pool:
            for joined in [
                pool.submit(alliance.node(m).join, round_id, wait=60) for m in ("bank-a", "bank-b", "bank-c")
            ]:
                joined.result()
        key_file = tmp_path / "signing.pub"
        key_file.write_text(alliance.signing_key.public_key.hex())
        honest = tmp_path / "honest.json"
        written = RUNNER.invoke(
            node_group,
            ["report", round_id, "--format", "json", "-o", str(honest), "--database", f"sqlite:///{tmp_path / 'bank-a.db'}",
             "--member-id", "bank-a", "--coordinator-key", str(key_file), "--cert", str(bank_a.cert), "--key", str(bank_a.key)],
        )  # fmt: skip
        assert written.exit_code == 0, written.output
        custodians = ", ".join(f'"{custodian_name(i)}@{a}"' for i, a in enumerate(alliance.custodian_addresses))
        node_toml = tmp_path / "bank-b.toml"
        node_toml.write_text(
            f'[node]\ncert = "{bank_b.cert}"\nkey = "{bank_b.key}"\ncustodian = [{custodians}]\n'
            f'epoch-file = "{alliance.epoch_file}"\nverify = "proof"\n'
        )

        def verify(path: Path, *extra: str) -> Any:
            args = ["verify", str(path), "--ca", str(bank_a.ca_cert), "--coordinator-key", str(key_file), *extra]
            return RUNNER.invoke(report_group, args)

        ledgers = [
            SqlQuotaLedger(make_engine(f"sqlite:///{tmp_path / f'{custodian_name(i)}.db'}"), custodian_name(i))
            for i in range(3)
        ]
        before = [ledger.used(EPOCH, "bank-b") for ledger in ledgers]
        checked = verify(honest, "--online", "--config", str(node_toml))
        assert checked.exit_code == 0, checked.output
        leads = json.loads(honest.read_bytes())["leads"]
        assert checked.output.endswith(
            "online: every lead's identifier derives its match token in the signed result (re-derived through 2 at "
            f"a time of 3 custodians as member bank-b, using {len(leads)} evaluations of its quota at each)\n"
        )
        assert "was dealt by one dealer" in checked.output  # The epoch's origin, said as a node says it.
        # Two custodians evaluated (proof mode asks no third for a sample).
        assert sorted(ledger.used(EPOCH, "bank-b") - used for ledger, used in zip(ledgers, before, strict=True)) == [
            0,
            len(leads),
            len(leads),
        ]

        doc = json.loads(honest.read_bytes())
        del doc["member_signature"]
        doc["leads"][0]["value"] = sorted(planted.holdings["bank-a"] - {lead["value"] for lead in leads})[0]
        signer = ReportSigner.load(bank_a.cert.read_bytes(), bank_a.key.read_bytes(), member_id="bank-a")
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(sign_document(doc, signer, signed_at=datetime.now(UTC)), ensure_ascii=False))
        caught = verify(forged, "--online", "--config", str(node_toml))
        assert caught.exit_code == 1
        assert caught.output.endswith(
            "Error: lead 1 (phone): its value derives another match token than the one in the signed result "
            "(the token belongs to another identifier)\n"
        )
        for ledger in ledgers:
            ledger.engine.dispose()
