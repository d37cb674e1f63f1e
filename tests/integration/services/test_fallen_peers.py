"""A stream open before its member was removed from the enrolment list, or its certificate revoked,
is not served a moment longer: its next message is refused, and a stream waiting on its peer is
ended. Real ``custodian serve`` processes, the operator's own commands (``custodian member
remove``, ``pki revoke`` and SIGHUP), and EvaluateStream over real mTLS.

Before: admission ran once per call, so an EvaluateStream opened before the removal or the
revocation kept evaluating batches (and spending the member's quota) until its connection aged
out, an hour and ten minutes later.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from alliance_psi.cli.main import main
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.protocol.messages import pb_custodian
from alliance_psi.protocol.model import Role
from alliance_psi.services.tls import secure_channel
from tests.integration.services.conftest import AlliancePki
from tests.integration.services.harness import EPOCH, custodian
from tests.integration.services.processes import ENROLLED, custodian_process

pytestmark = pytest.mark.timeout(300)

EVALUATE_STREAM = "/alliance_psi.v1.OprfEvaluator/EvaluateStream"
_END = object()


class Stream:
    """One EvaluateStream of ``member``, fed a batch at a time."""

    def __init__(self, address: str, pki: AlliancePki, member: str) -> None:
        self.channel = secure_channel(address, pki.material(member), server=custodian())
        self.requests: queue.Queue[object] = queue.Queue()
        call = self.channel.stream_stream(
            EVALUATE_STREAM,
            request_serializer=pb_custodian.EvaluateRequest.SerializeToString,
            response_deserializer=pb_custodian.EvaluateResponse.FromString,
        )
        self.call = call(self._requests(), timeout=240)
        self.batches = 0

    def _requests(self) -> Iterator[pb_custodian.EvaluateRequest]:
        while (request := self.requests.get()) is not _END:
            yield request  # type: ignore[misc]

    def evaluate(self, size: int = 16) -> pb_custodian.EvaluateResponse:
        """Send one batch of fresh elements; return its evaluation (raises the call's error)."""
        self.batches += 1
        elements = [RISTRETTO255_SHA512.hash_to_group(os.urandom(16)) for _ in range(size)]
        self.requests.put(pb_custodian.EvaluateRequest(key_epoch=EPOCH, elements=elements, batch_id=self.batches))
        response: pb_custodian.EvaluateResponse = next(self.call)
        return response

    def ended(self) -> grpc.RpcError:
        """Wait (a bound for a busy machine, not a timing claim) until the server ends the call."""
        deadline = time.monotonic() + 60
        while self.call.code() is None:
            assert time.monotonic() < deadline, "the stream was not ended"
            time.sleep(0.1)
        return self.call  # type: ignore[return-value]

    def close(self) -> None:
        self.requests.put(_END)
        self.channel.close()


def refused_next(stream: Stream) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        stream.evaluate()
    return refused.value


def run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def used(address: str, pki: AlliancePki, member: str) -> int:
    """The member's quota usage, asked with the certificate of ``member``."""
    with secure_channel(address, pki.material(member), server=custodian()) as channel:
        get_epoch = channel.unary_unary(
            "/alliance_psi.v1.OprfEvaluator/GetEpoch",
            request_serializer=pb_custodian.GetEpochRequest.SerializeToString,
            response_deserializer=pb_custodian.EpochInfo.FromString,
        )
        info: pb_custodian.EpochInfo = get_epoch(pb_custodian.GetEpochRequest(), timeout=30)
        return info.used


def test_member_remove_ends_the_member_s_open_streams(tmp_path: Path, pki: AlliancePki) -> None:
    leaver = "stream-leaver"
    pki.issue(Role.MEMBER, leaver)
    with custodian_process(tmp_path, pki, enrolled=(*ENROLLED, leaver)) as server:
        sending, waiting = Stream(server.address, pki, leaver), Stream(server.address, pki, leaver)
        other = Stream(server.address, pki, "bank-a")
        try:
            assert len(sending.evaluate().elements) == 16
            assert len(waiting.evaluate().elements) == 16
            spent = used(server.address, pki, "bank-a")
            run("custodian", "member", "remove", leaver, "--database", f"sqlite:///{tmp_path / 'custodian.db'}")
            # The stream waiting on its member is ended by the server (not at its 60 s idle limit).
            ended = waiting.ended()
            assert ended.code() is grpc.StatusCode.PERMISSION_DENIED
            assert ended.details() == f"member {leaver} is not enrolled at this custodian"
            # The stream that sends again is refused at its next batch, before any evaluation.
            refused = refused_next(sending)
            assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
            assert refused.details() == f"member {leaver} is not enrolled at this custodian"
            # Another member's open stream goes on.
            assert len(other.evaluate().elements) == 16
            assert used(server.address, pki, "bank-a") == spent + 16
        finally:
            for stream in (sending, waiting, other):
                stream.close()


def test_a_revoked_certificate_s_open_streams_end_on_sighup(tmp_path: Path, pki: AlliancePki) -> None:
    thief, already = "stream-thief", "stream-revoked-before"
    pki.issue(Role.MEMBER, thief)
    pki.issue(Role.MEMBER, already)
    crl = tmp_path / "crl.pem"
    revoke = ("pki", "revoke", "--ca-dir", str(pki.directory), "--crl", str(crl))
    run(*revoke, str(pki.directory / f"{already}.pem"))
    with custodian_process(
        tmp_path, pki, "--crl", str(crl), "--crl-reload-seconds", "3600", enrolled=(*ENROLLED, thief)
    ) as server:
        sending, waiting = Stream(server.address, pki, thief), Stream(server.address, pki, thief)
        try:
            assert len(sending.evaluate().elements) == 16
            assert len(waiting.evaluate().elements) == 16
            run(*revoke, str(pki.directory / f"{thief}.pem"))
            server.proc.send_signal(signal.SIGHUP)
            ended = waiting.ended()
            assert (ended.code(), ended.details()) == (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
            refused = refused_next(sending)
            assert (refused.code(), refused.details()) == (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
            assert server.proc.poll() is None
        finally:
            sending.close()
            waiting.close()
