"""The servers' Prometheus metrics move with a real round: real ``serve`` processes on loopback
over mutual TLS, scraped on their plain metrics ports before, during and after the round."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, MEMBERS, round_spec
from tests.integration.services.monitored import QUOTA, Samples, handled, monitored_alliance, scrape, value

pytestmark = pytest.mark.timeout(300)


def eventually(port: int, condition: Callable[[Samples], bool], what: str, timeout: float = 60) -> Samples:
    """Scrape until ``condition`` holds (the database figures are read at most once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.2)


def test_a_round_moves_the_coordinators_and_the_custodians_metrics(tmp_path: Path, pki: AlliancePki) -> None:
    with monitored_alliance(tmp_path, pki) as alliance:
        coordinator, custodian = alliance.coordinator.metrics_port, alliance.custodian.metrics_port
        assert coordinator is not None and custodian is not None
        holdings = alliance.planted.holdings
        before = scrape(coordinator)
        assert value(before, "alliance_psi_rounds", state="open") == 0
        assert value(before, "alliance_psi_tokens_submitted_total", kind="item") == 0
        assert value(before, "alliance_psi_database_up") == 1
        quota_before = scrape(custodian)
        for member in MEMBERS:  # Every enrolled member has its series from the start.
            assert value(quota_before, "alliance_psi_quota_used", key_epoch="epoch-test", member=member) == 0
            assert value(quota_before, "alliance_psi_quota_limit", key_epoch="epoch-test", member=member) == QUOTA

        round_id = alliance.admin().create_round(round_spec(2)).round_id
        eventually(coordinator, lambda s: value(s, "alliance_psi_rounds", state="open") == 1, "the round open")

        # bank-a joins first; the round stays open until the others commit.
        first: dict[str, object] = {}
        joining = threading.Thread(target=lambda: first.update(alliance.join(["bank-a"], round_id)))
        joining.start()
        during = eventually(coordinator, lambda s: handled(s, "CommitSubmission") == 1, "bank-a's commit")
        assert value(during, "alliance_psi_tokens_submitted_total", kind="item") == len(holdings["bank-a"])
        assert value(during, "alliance_psi_rounds", state="open") == 1
        assert value(during, "alliance_psi_rounds", state="matched") == 0
        quota_during = scrape(custodian)
        used = value(quota_during, "alliance_psi_quota_used", key_epoch="epoch-test", member="bank-a")
        assert used == len(holdings["bank-a"])
        assert value(quota_during, "alliance_psi_quota_used", key_epoch="epoch-test", member="bank-b") == 0

        others = alliance.join(["bank-b", "bank-c"], round_id)
        joining.join(timeout=120)
        assert set(first) == {"bank-a"} and set(others) == {"bank-b", "bank-c"}

        after = eventually(coordinator, lambda s: value(s, "alliance_psi_rounds", state="matched") == 1, "a match")
        assert value(after, "alliance_psi_rounds", state="open") == 0
        assert value(after, "alliance_psi_tokens_submitted_total", kind="item") == sum(map(len, holdings.values()))
        shared = {v for m in MEMBERS for v in holdings[m] if sum(v in held for held in holdings.values()) >= 2}
        assert value(after, "alliance_psi_tokens_matched_total") == len(shared)
        assert handled(after, "CreateRound") == 1 and handled(after, "CommitSubmission") == 3
        uploads = handled(after, "UploadChunks")
        assert uploads >= 3
        seconds = {k: v for k, v in after.items() if k[0] == "grpc_server_handling_seconds_count"}
        upload_seconds = [v for (_, labels), v in seconds.items() if ("grpc_method", "UploadChunks") in labels]
        assert upload_seconds == [uploads]
        assert ("grpc_type", "client_stream") in next(
            labels
            for (name, labels) in after
            if name == "grpc_server_handled_total" and ("grpc_method", "UploadChunks") in labels
        )

        def all_used(samples: Samples) -> bool:
            return all(
                value(samples, "alliance_psi_quota_used", key_epoch="epoch-test", member=member)
                == len(holdings[member])
                for member in MEMBERS
            )

        quota_after = eventually(custodian, all_used, "every member's quota used")  # Read at most once a second.
        assert handled(quota_after, "EvaluateStream") + handled(quota_after, "Evaluate") >= 3


def test_refused_calls_are_counted_by_code_and_unknown_methods_not_at_all(tmp_path: Path, pki: AlliancePki) -> None:
    with monitored_alliance(tmp_path, pki) as alliance:
        port = alliance.coordinator.metrics_port
        assert port is not None
        with secure_channel(alliance.coordinator.address, pki.material("bank-a"), server=COORDINATOR) as channel:
            create = channel.unary_unary("/alliance_psi.v1.Coordinator/CreateRound")
            with pytest.raises(grpc.RpcError) as refused:
                create(b"", timeout=30)  # A member may not create rounds.
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            for made_up in ("NoSuchMethod", "x" * 40):
                unknown = channel.unary_unary(f"/alliance_psi.v1.Coordinator/{made_up}")
                with pytest.raises(grpc.RpcError) as unimplemented:
                    unknown(b"", timeout=30)
                assert unimplemented.value.code() is grpc.StatusCode.UNIMPLEMENTED
            bogus = channel.unary_unary("/made.up.Service/Method")
            with pytest.raises(grpc.RpcError):
                bogus(b"", timeout=30)
        samples = scrape(port)
        assert handled(samples, "CreateRound", "PERMISSION_DENIED") == 1
        assert handled(samples, "CreateRound") == 0
        methods = {dict(labels).get("grpc_method") for name, labels in samples if name.startswith("grpc_server_")}
        services = {dict(labels).get("grpc_service") for name, labels in samples if name.startswith("grpc_server_")}
        # Only what the server serves becomes a label value: a caller cannot grow the label set.
        assert methods == {"CreateRound"} and services == {"alliance_psi.v1.Coordinator"}
