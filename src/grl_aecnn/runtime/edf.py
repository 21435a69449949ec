"""The edge server's earliest-deadline-first queue with same-codec batching."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field


@dataclass(eq=False)
class Job:
    task_id: str
    key: tuple[str, int]  # (codec id, level): only jobs with the same key share a batch
    data: bytes
    deadline: float  # unix seconds; inf without a deadline
    arrived: float  # unix seconds, when the whole body had been read
    latest_start: float = float("inf")  # unix seconds: a batch started later cannot finish in time
    future: asyncio.Future | None = None
    timer: asyncio.TimerHandle | None = None
    state: str = "queued"  # queued -> running | expired
    seq: int = field(default=0)


class EdfQueue:
    """A heap ordered by (deadline, arrival order). Jobs leave either in a batch or by `expire`;
    both only mark them, and marked entries are dropped when they reach the top (lazy deletion
    keeps `expire`, called from per-job timers, O(1))."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._queued = 0

    def __len__(self) -> int:
        return self._queued

    def push(self, job: Job) -> None:
        job.seq = next(self._seq)
        job.state = "queued"
        heapq.heappush(self._heap, (job.deadline, job.seq, job))
        self._queued += 1

    def expire(self, job: Job) -> bool:
        """Take a still-queued job out (it can no longer meet its deadline); False if it already left."""
        if job.state != "queued":
            return False
        job.state = "expired"
        job.data = b""  # its entry may sit in the heap until it reaches the top: keep it small
        self._queued -= 1
        return True

    def head(self) -> Job | None:
        while self._heap and self._heap[0][2].state != "queued":
            heapq.heappop(self._heap)
        return self._heap[0][2] if self._heap else None

    def pop_batch(self, max_batch: int) -> list[Job]:
        """The earliest-deadline job and up to max_batch - 1 more of the same key, in deadline order.
        Jobs of other keys keep their places: batching never reorders them among themselves."""
        first = self.head()
        if first is None:
            return []
        batch = [job for _, _, job in sorted(self._heap) if job.state == "queued" and job.key == first.key][:max_batch]
        for job in batch:
            job.state = "running"
        self._queued -= len(batch)
        if len(self._heap) > 2 * self._queued + 64:  # mostly departed entries: drop them in one pass
            self._heap = [entry for entry in self._heap if entry[2].state == "queued"]
            heapq.heapify(self._heap)
        return batch
