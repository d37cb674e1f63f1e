"""Oversized and overfull requests cost a server nothing: refused on their raw bytes, before any
repeated field becomes millions of objects.

Before: a 32 MB chunk of empty items (2 bytes each on the wire) took a coordinator's peak memory
to 2.2 GB before its count was checked; the custodian materialised any batch likewise.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest

from alliance_psi.crypto.derive import MATCH_TOKEN_BYTES
from alliance_psi.crypto.labels import SEALED_LABEL_BYTES
from alliance_psi.protocol.coordinator import Chunk
from alliance_psi.protocol.messages import CHUNK_REQUEST, EVALUATE_REQUEST, pb_coordinator, pb_custodian
from alliance_psi.protocol.model import Identity
from alliance_psi.protocol.submission import MAX_CHUNK_ITEMS, chunk_digest
from alliance_psi.services.clients import CoordinatorClient
from alliance_psi.services.tls import MAX_REQUEST_BYTES, secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import COORDINATOR, EPOCH, custodian, running_alliance
from tests.integration.services.processes import coordinator_process, custodian_process, status_kib

pytestmark = pytest.mark.timeout(300)

MIB = 1024
EMPTY_ITEM = b"\x1a\x00"  # SubmissionChunk field 3 (items), an empty SubmittedToken.
EMPTY_ELEMENT = b"\x12\x00"  # EvaluateRequest field 2 (elements), an empty element.


def send_raw(address: str, pki: AlliancePki, method: str, data: bytes, *, server: Identity) -> grpc.RpcError:
    """Send ``data`` as the one request of a call to ``method``; return how the server refused it."""
    options = [("grpc.max_send_message_length", 1 << 30)]  # Past the client's own limit, as an attacker would.
    with secure_channel(address, pki.material("bank-a"), server=server, options=options) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            if method.endswith("UploadChunks"):
                channel.stream_unary(method)(iter([data]), timeout=120)
            else:
                channel.unary_unary(method)(data, timeout=120)
    return refused.value


def test_a_huge_or_overfull_chunk_leaves_the_coordinator_small(tmp_path: Path, pki: AlliancePki) -> None:
    with coordinator_process(tmp_path, pki) as server:
        peak_before = status_kib(server.proc.pid, "VmHWM")
        round_id = pb_coordinator.SubmissionChunk(round_id="r-1").SerializeToString()
        data = round_id + EMPTY_ITEM * (16 << 20)  # 32 MB.
        huge = send_raw(server.address, pki, "/alliance_psi.v1.Coordinator/UploadChunks", data, server=COORDINATOR)
        # Just under the size limit, but a million empty items: refused by their count, undecoded.
        overfull = round_id + EMPTY_ITEM * ((CHUNK_REQUEST.max_bytes - len(round_id)) // 2)
        refused = send_raw(
            server.address, pki, "/alliance_psi.v1.Coordinator/UploadChunks", overfull, server=COORDINATOR
        )
        growth = status_kib(server.proc.pid, "VmHWM") - peak_before
        print(f"coordinator peak memory grew {growth} KiB")
        assert growth < 64 * MIB
        assert huge.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"larger than max ({len(data)} vs. {MAX_REQUEST_BYTES})" in huge.details()
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.details() == "UploadChunks: a request of more than 8197 fields is over the limit"


def test_an_overfull_batch_leaves_the_custodian_small(tmp_path: Path, pki: AlliancePki) -> None:
    with custodian_process(tmp_path, pki) as server:
        peak_before = status_kib(server.proc.pid, "VmHWM")
        epoch = pb_custodian.EvaluateRequest(key_epoch=EPOCH).SerializeToString()
        overfull = epoch + EMPTY_ELEMENT * ((CHUNK_REQUEST.max_bytes - len(epoch)) // 2)  # Under the channel limit.
        refused = send_raw(server.address, pki, "/alliance_psi.v1.OprfEvaluator/Evaluate", overfull, server=custodian())
        # Within the byte limit, one element more than a batch may hold.
        over_count = epoch + EMPTY_ELEMENT * (EVALUATE_REQUEST.max_fields or 0)
        refused_count = send_raw(
            server.address, pki, "/alliance_psi.v1.OprfEvaluator/Evaluate", over_count, server=custodian()
        )
        growth = status_kib(server.proc.pid, "VmHWM") - peak_before
        print(f"custodian peak memory grew {growth} KiB")
        assert growth < 16 * MIB
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.details() == (
            f"Evaluate: a request of {len(overfull)} bytes is over the limit of {EVALUATE_REQUEST.max_bytes}"
        )
        assert refused_count.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused_count.details() == "Evaluate: a request of more than 8196 fields is over the limit"


def test_the_largest_legal_chunk_still_goes_through(tmp_path: Path, pki: AlliancePki) -> None:
    with running_alliance(tmp_path, pki, custodians=1) as alliance:
        round_ = alliance.admin().create_round(alliance.spec(2))
        items = tuple(
            (secrets.token_bytes(MATCH_TOKEN_BYTES), secrets.token_bytes(SEALED_LABEL_BYTES))
            for _ in range(MAX_CHUNK_ITEMS)
        )
        chunk = Chunk(round_.round_id, 0, items, chunk_digest(items))
        client = CoordinatorClient(alliance.coordinator_address, pki.material("bank-a"))
        assert client.upload_chunks([chunk]) == (1, 0)
        assert client.submission_status(round_.round_id, "bank-a").item_count == MAX_CHUNK_ITEMS
