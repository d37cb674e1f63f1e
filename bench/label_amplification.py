"""What colluding holders make the coordinator store: result bytes per uploaded byte, by label cap.

Usage:
    .venv/bin/python bench/label_amplification.py                       # 8 and 16 members x 2,000 tokens
    .venv/bin/python bench/label_amplification.py --members 8 --tokens 2000 --caps 800,8,1

``--members`` members agree to hold the same ``--tokens`` random tokens (random tokens match only
each other: no custodian is needed), each with a random sealed-label-sized label, and upload
them as the coordinator receives them (``SubmissionChunk`` requests in chunks of the member
node's default size, each taken as the server takes it: wire check, decoding, staging), commit,
and the operator closes the round, which matches it and writes every member's result. For each
label cap of ``--caps`` (800 carries every co-holder's label at these sizes: the coordinator
before caps) a fresh SQLite coordinator; printed: the bytes uploaded (the requests), the bytes of
result leaves written (``result_pages``), their ratio, the labels per leaf and the CPU seconds of
the matching step (this process). Bytes, not times, are the figure here: they do not depend on
the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from alliance_psi.crypto.labels import SEALED_LABEL_BYTES  # noqa: E402
from alliance_psi.crypto.signing import SigningKey  # noqa: E402
from alliance_psi.defaults import CHUNK_SIZE  # noqa: E402
from alliance_psi.protocol import messages  # noqa: E402
from alliance_psi.protocol._pb import coordinator_pb2 as pb  # noqa: E402
from alliance_psi.protocol.coordinator import Commit, CoordinatorRole, RoundSpec  # noqa: E402
from alliance_psi.protocol.model import NO_DEADLINE, Identity, Role  # noqa: E402
from alliance_psi.protocol.result_codec import decode_leaf  # noqa: E402
from alliance_psi.protocol.submission import SetDigest, SubmissionDigest, label_digest  # noqa: E402
from alliance_psi.protocol.wire import check_wire  # noqa: E402
from alliance_psi.services.coordinator import sql_unit_of_work  # noqa: E402
from alliance_psi.storage import create_schema, make_engine  # noqa: E402
from alliance_psi.storage.schema import result_pages  # noqa: E402

OPERATOR = Identity("operator", Role.ADMIN)


def upload(role: CoordinatorRole, round_id: str, member: str, tokens: list[bytes]) -> int:
    """``member``'s whole set of ``tokens``, each with a fresh random label, uploaded and committed;
    returns the bytes of its requests."""
    caller = Identity(member, Role.MEMBER)
    items = sorted((token, os.urandom(SEALED_LABEL_BYTES)) for token in tokens)
    digest, whole, sent = SubmissionDigest(), SetDigest(), 0
    for index, start in enumerate(range(0, len(items), CHUNK_SIZE)):
        part = items[start : start + CHUNK_SIZE]
        request = pb.SubmissionChunk(
            round_id=round_id,
            chunk_index=index,
            chunk_digest=digest.update(part),
            items=[pb.SubmittedToken(match_token=t, sealed_label=label) for t, label in part],
        ).SerializeToString()
        sent += len(request)
        check_wire(request, messages.CHUNK_REQUEST, what="UploadChunks")
        role.upload_chunk(caller, messages.chunk_from_pb(pb.SubmissionChunk.FromString(request)))
        for token, label in part:
            whole.add(token, label_digest(label))
    role.commit(caller, Commit(round_id, digest.count, digest.digest(), digest.count, whole.digest(), True))
    return sent


def measure(members: int, tokens: int, cap: int) -> dict[str, float]:
    """One round of ``members`` colluders holding the same ``tokens`` tokens, at label cap ``cap``."""
    names = [f"m{i:03d}" for i in range(members)]
    shared = [os.urandom(16) for _ in range(tokens)]
    with tempfile.TemporaryDirectory(prefix="label-amplification-") as folder:
        engine = make_engine(f"sqlite:///{folder}/coordinator.db")
        create_schema(engine)
        role = CoordinatorRole(sql_unit_of_work(engine), SigningKey.generate(), known_types=["phone"])
        # One member more is invited than submits: the round stays open until the operator closes it.
        spec = RoundSpec("bench", 2, "bench", NO_DEADLINE, ("phone",), (*names, "absent"), True, label_cap=cap)
        round_id = role.create_round(OPERATOR, spec).round_id
        sent = sum(upload(role, round_id, name, shared) for name in names)
        began = time.process_time()
        role.close_round(OPERATOR, round_id, "bench")
        matching = time.process_time() - began
        with engine.connect() as conn:
            written = conn.execute(
                select(func.sum(func.length(result_pages.c.leaves))).where(result_pages.c.round_id == round_id)
            ).scalar_one()
            page = conn.execute(select(result_pages.c.leaves).where(result_pages.c.round_id == round_id)).first()
        engine.dispose()
    assert page is not None
    first = decode_leaf(page[0][4 : 4 + int.from_bytes(page[0][:4], "big")])
    return {"sent": sent, "written": written, "labels": len(first.peer_labels), "matching": matching}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="8,16", help="Comma-separated colluder counts (default: 8,16).")
    parser.add_argument("--tokens", type=int, default=2000, help="Tokens every colluder holds (default: 2,000).")
    parser.add_argument("--caps", default="800,8,1", help="Label caps to measure (default: 800,8,1).")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.tokens:,} shared tokens per member")
    print(
        f"{'members':>7} {'cap':>4} {'uploaded':>12} {'results':>13} {'ratio':>6} {'labels/leaf':>11} {'match CPU':>9}"
    )
    for members in (int(m) for m in args.members.split(",")):
        for cap in (int(c) for c in args.caps.split(",")):
            got = measure(members, args.tokens, cap)
            print(
                f"{members:>7} {cap:>4} {got['sent']:>12,} {got['written']:>13,} {got['written'] / got['sent']:>5.1f}× "
                f"{got['labels']:>11} {got['matching']:>8.2f}s"
            )


if __name__ == "__main__":
    main()
