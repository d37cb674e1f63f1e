"""Streaming the member's OPRF work over every core, with memory that stays flat.

``ProcessMap`` runs module-level functions in a process pool (``forkserver`` where available, so
that a parent holding gRPC threads is never forked). ``tokenize`` streams identifiers through
``blind_batch`` (workers), the caller's ``evaluate`` (the custodian chain, called in order from
this thread) and ``finalize_and_derive_batch`` (workers), keeping at most ``window`` batches in
flight, so memory depends on the batch size and the core count, never on the input size.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any, TypeVar

from alliance_psi.crypto.batch import DerivedBatch, blind_batch, finalize_and_derive_batch
from alliance_psi.crypto.suite import RISTRETTO255_SHA512

__all__ = ["DEFAULT_BATCH_SIZE", "ProcessMap", "chunked", "tokenize"]

T = TypeVar("T")
DEFAULT_BATCH_SIZE = 1024
Evaluate = Callable[[Sequence[bytes]], Sequence[bytes]]


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class ProcessMap:
    """A process pool for CPU-bound batch work; ``workers=1`` runs in this process instead."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
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
    batch_size: int = DEFAULT_BATCH_SIZE,
    suite_id: str = RISTRETTO255_SHA512.identifier,
    window: int | None = None,
) -> Iterator[tuple[list[bytes], DerivedBatch]]:
    """Yield ``(batch_inputs, DerivedBatch)`` for ``inputs`` in order.

    ``evaluate`` receives one batch of blinded elements and must return the evaluated elements
    in the same order (the custodian chain). Errors from any stage propagate to the caller.
    Inputs within one batch must be distinct (see ``blind_batch``).
    """
    window = window or 2 * pool.workers + 1
    batches = chunked(inputs, batch_size)
    blinding: deque[tuple[list[bytes], Future[Any]]] = deque()
    finalizing: deque[tuple[list[bytes], Future[DerivedBatch]]] = deque()
    exhausted = False
    while True:
        while not exhausted and len(blinding) + len(finalizing) < window:
            batch = next(batches, None)
            if batch is None:
                exhausted = True
            else:
                blinding.append((batch, pool.submit(blind_batch, batch, suite_id=suite_id)))
        if finalizing and (finalizing[0][1].done() or not blinding):
            batch, done = finalizing.popleft()
            yield batch, done.result()
        elif blinding:
            batch, blinded_future = blinding.popleft()
            blinded = blinded_future.result()
            evaluated = evaluate(blinded.blinded_elements)
            finalizing.append(
                (batch, pool.submit(finalize_and_derive_batch, batch, blinded.blind, evaluated, suite_id=suite_id))
            )
        else:
            return
