"""A DNS server on 127.0.0.1 that answers one name with several A records, as a Kubernetes
headless Service's name resolves to every ready pod: for the tests of one name, many replicas.

gRPC's DNS resolver asks it when the target names it as the authority
(``dns://127.0.0.1:PORT/NAME:PORT``), so no hosts file is touched. Every other question gets an
empty answer (no AAAA record: the replicas listen on IPv4 loopback addresses only).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

__all__ = ["serving_a_records"]


@contextmanager
def serving_a_records(name: str, addresses: Sequence[str]) -> Iterator[int]:
    """Answer ``name``'s A question with ``addresses`` on 127.0.0.1 over UDP until the block ends;
    yields the server's port."""
    wanted = dns.name.from_text(name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            if question.name == wanted and question.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(wanted, 1, "IN", "A", *addresses))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=answer, name="dns", daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()
