"""Group commit: concurrent writers share one transaction, run in one hop to a DB thread.

Written by hand because neither SQLAlchemy nor the drivers batch independent transactions. A
worker takes hundreds of status checks a second, each ending in a small write (the row and its
event). Through the async engine such a write cost ~1 ms of CPU on SQLite, fifty times what
SQLite itself spends on it (measured: every statement, BEGIN and COMMIT is a hop to the
driver's thread and back through greenlets), and writers took SQLite's one write lock in turn.
Here the writes queue up while a transaction is in flight (no timer: a lone write goes at
once), and the next transaction takes them all, as plain synchronous SQLAlchemy Core in one
dedicated thread. Each caller returns success only after its write is committed.

Failures: a write that breaks the shared transaction (a constraint, a value the driver cannot
take) fails alone and the others are tried again one by one, since nothing was committed. When
BEGIN, COMMIT or the connection fails, nobody can tell whether the batch committed, so every
write in it fails with that error and none is run again (a retry could append an event twice);
the worker treats that like any database error, and the leases expire. A caller cancelled
while its batch is in flight gets CancelledError although its write may still commit; the
lease token keeps that harmless (the worker's next write of the row is refused or is newer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from reelwatch import exceptions

T = TypeVar("T")
Work = Callable[[Connection], Any]
Outcome = tuple[Any, BaseException | None]


class _WriteFailed(Exception):
    """A write raised inside the shared transaction, before COMMIT (so nothing committed)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


# Writes that raise one of these wrote nothing (they check before they change anything), so
# the rest of the transaction goes on without them.
_HARMLESS = (exceptions.LeaseLost,)


class GroupCommit:
    def __init__(
        self,
        begin: Callable[[], AbstractContextManager[Connection]],
        *,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._begin = begin
        self._committed = committed
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        # One thread: the transactions run one after another anyway, and the connection
        # stays with the thread that uses it.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-write")

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in the next shared transaction; its result once that has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="store-group-commit")
        return await future

    async def close(self) -> None:
        """Let queued writes finish, then stop the thread."""
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._thread.shutdown(wait=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[Work, asyncio.Future[Any]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                works = [work for work, _ in batch]
                try:
                    outcomes = await loop.run_in_executor(self._thread, self._together, works)
                except _WriteFailed as failed:
                    # One write broke the transaction; it rolled back with nothing committed,
                    # so the others are tried again on their own and only that one fails.
                    outcomes = []
                    for index, work in enumerate(works):
                        if index == failed.index:
                            outcomes.append((None, failed.error))
                        else:
                            outcomes.append(
                                await loop.run_in_executor(self._thread, self._alone, work)
                            )
                except Exception as exc:
                    # BEGIN, COMMIT or the connection failed: the batch may or may not have
                    # committed, so each write fails with the error and none runs again.
                    outcomes = [(None, exc)] * len(works)
                self._committed()
                for (_, future), (result, error) in zip(batch, outcomes, strict=True):
                    _settle(future, result, error)
                batch = []
        except BaseException:
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []
            raise

    def _together(self, works: list[Work]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._begin() as conn:
            for index, work in enumerate(works):
                try:
                    outcomes.append((work(conn), None))
                except _HARMLESS as exc:
                    outcomes.append((None, exc))
                except Exception as exc:
                    raise _WriteFailed(index, exc) from exc
        return outcomes

    def _alone(self, work: Work) -> Outcome:
        try:
            with self._begin() as conn:
                return work(conn), None
        except Exception as exc:
            return None, exc


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write stands (or not) all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
