"""Streaming the member's OPRF work over every core, with memory that stays flat.

``ProcessMap`` runs module-level functions in a process pool (``forkserver`` where available, so
that a parent holding gRPC threads is never forked). ``tokenize`` streams identifiers through
``blind_batch`` (workers), the caller's ``evaluate`` (the custodian chain, called in order from
this thread) and ``finalize_and_derive_batch`` (workers), keeping at most ``window`` batches in
flight, so memory depends on the batch size and the core count, never on the input size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from itertools import islice
from typing import Any, TypeVar

from alliance_psi.crypto.batch import DerivedBatch, blind_batch, finalize_and_derive_batch
from alliance_psi.crypto.suite import RISTRETTO255_SHA512
from alliance_psi.defaults import BATCH_SIZE

__all__ = ["ProcessMap", "available_cores", "chunked", "tokenize", "usable_workers"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Evaluate = Callable[[Sequence[bytes]], Sequence[bytes]]


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def usable_workers(requested: int | None) -> int:
    """The worker processes to start for ``requested`` (None: one per available core).

    More than the available cores would only add processes that wait their turn (each holds
    batches in memory): the count is clamped to the cores, with a warning that names both.

    Raises:
        ValueError: ``requested`` is below 1.
    """
    cores = available_cores()
    if requested is None:
        return cores
    if requested < 1:
        raise ValueError(f"worker processes must be at least 1, got {requested}")
    if requested > cores:
        _log.warning(
            "%d worker processes asked for, but only %d cores are available: using %d", requested, cores, cores
        )
        return cores
    return requested


class ProcessMap:
    """A process pool for CPU-bound batch work; ``workers=1`` runs in this process instead.

    ``workers`` goes through ``usable_workers`` (None: one per core; more than the cores:
    clamped, with a warning; below 1: ``ValueError``).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = usable_workers(workers)
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker (or here, for one worker)."""
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller through the future
            future.set_exception(exc)
        return future

    def map(self, fn: Callable[[Any], T], items: Iterable[Any], *, window: int | None = None) -> Iterator[T]:
        """Ordered map with at most ``window`` items in flight (default: twice the workers)."""
        window = window or 2 * self.workers
        pending: deque[Future[T]] = deque()
        for item in items:
            pending.append(self.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Stop the workers; pending work is cancelled."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tokenize(
    inputs: Iterable[bytes],
    evaluate: Evaluate,
    *,
    pool: ProcessMap,
    batch_size: int = BATCH_SIZE,
    suite_id: str = RISTRETTO255_SHA512.identifier,
    window: int | None = None,
    evaluations_in_flight: int = 2,
    blind_key: bytes | None = None,
    blind_context: bytes = b"",
) -> Iterator[tuple[list[bytes], DerivedBatch]]:
    """Yield ``(batch_inputs, DerivedBatch)`` for ``inputs`` in order.

    Three stages overlap: ``blind_batch`` in the worker processes, ``evaluate`` (the custodian
    chain, at most ``evaluations_in_flight`` calls at once, from threads: it waits on the network)
    and ``finalize_and_derive_batch`` in the workers. At most ``window`` batches are in flight, so
    memory does not grow with the input. ``evaluate`` receives one batch of blinded elements and
    returns the evaluated elements in the same order. The first error of any stage propagates.
    Inputs within one batch must be distinct (see ``blind_batch``). With ``blind_key`` each
    batch's blind is derived from it, ``blind_context`` and the batch (``derive_batch_blind``), so
    the same inputs in the same batches give byte-identical requests; otherwise blinds are fresh.
    """
    window = window or 2 * pool.workers + evaluations_in_flight + 1
    batches = chunked(inputs, batch_size)
    # Each entry: [batch inputs, stage, future]; stages advance blind -> evaluate -> finalize.
    pending: deque[list[Any]] = deque()
    exhausted = False
    with ThreadPoolExecutor(max(1, evaluations_in_flight), thread_name_prefix="evaluate") as network:
        while True:
            while not exhausted and len(pending) < window:
                batch = next(batches, None)
                if batch is None:
                    exhausted = True
                else:
                    pending.append(
                        [
                            batch,
                            "blind",
                            pool.submit(
                                blind_batch, batch, blind_key=blind_key, context=blind_context, suite_id=suite_id
                            ),
                        ]
                    )
            if not pending:
                return
            for entry in pending:
                batch, stage, future = entry
                if not future.done():
                    continue
                if stage == "blind":
                    blinded = future.result()
                    entry[1:] = ["evaluate", network.submit(_evaluated, evaluate, blinded)]
                elif stage == "evaluate":
                    blind, evaluated = future.result()
                    entry[1:] = [
                        "finalize",
                        pool.submit(finalize_and_derive_batch, batch, blind, evaluated, suite_id=suite_id),
                    ]
            head = pending[0]
            if head[1] == "finalize" and head[2].done():
                pending.popleft()
                yield head[0], head[2].result()
                continue
            wait([entry[2] for entry in pending], return_when=FIRST_COMPLETED)


def _evaluated(evaluate: Evaluate, blinded: Any) -> tuple[bytes, Sequence[bytes]]:
    return blinded.blind, evaluate(blinded.blinded_elements)
