"""The hand-offs between the ingest threads: the inbox and the forming batch.

:class:`Inbox`
    paho's network thread puts each message here and goes back to the
    socket; the prepare thread takes what has arrived, many at a time (one
    lock round per chunk, not one per message). Bounded: a full inbox blocks
    the network thread (back-pressure), it never drops.

:class:`FormingBatch`
    The prepare thread appends messages once parsed and verified; the store
    thread takes the next batch when one of these holds:

    - it holds ``batch_size`` messages;
    - the prepare thread has caught up (everything received so far is in the
      batch): under light traffic a scan waits for no one, which keeps the
      scan-to-verdict latency to the work itself;
    - its first message has waited ``batch_ms``.

    While the store thread has a batch in the database, the next one keeps
    growing, so batches are as large as the load makes them: one transaction
    per scan when scans are rare, up to ``batch_size`` per transaction under
    a backlog. It holds at most ``capacity`` messages (then the prepare
    thread waits): the broker may send more than our Receive Maximum
    (mosquitto 2.0 does once acknowledgements flow), and verified messages
    are better left in the inbox than piled up here.

Both keep arrival order, which is the order the messages are acknowledged in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded FIFO taken from in chunks."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive: {capacity}")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item``; blocks while the inbox is full (drops it once closed)."""
        with self._lock:
            while len(self._items) >= self._capacity and not self._closed:
                self._not_full.wait()
            if self._closed:
                return
            self._items.append(item)
            self._not_empty.notify()

    def close(self) -> None:
        """Take nothing more: a producer waiting for room returns at once.

        For shutdown: what arrives then is never acknowledged, so the broker
        keeps it for our next session.
        """
        with self._lock:
            self._closed = True
            self._not_full.notify_all()

    def take(self, limit: int, timeout: float) -> list[T]:
        """Up to ``limit`` items, oldest first; waits up to ``timeout`` s for the first."""
        with self._lock:
            if not self._items and not self._not_empty.wait_for(lambda: self._items, timeout):
                return []
            items = self._items
            n = min(limit, len(items))
            taken = [items.popleft() for _ in range(n)]
            self._not_full.notify_all()
            return taken


class FormingBatch(Generic[T]):
    """The batch the prepare thread fills and the store thread takes."""

    def __init__(
        self,
        batch_size: int,
        batch_s: float,
        *,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1 or batch_s <= 0:
            raise ValueError("batch_size and batch_s must be positive")
        self.batch_size = batch_size
        self.batch_s = batch_s
        self.capacity = max(batch_size, capacity if capacity is not None else 2 * batch_size)
        self._clock = clock
        self._items: deque[T] = deque()
        self._since: deque[float] = deque()  # when each item joined (for the age rule)
        self._caught_up = True
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T], *, caught_up: bool) -> None:
        """Append prepared items (waits while the batch is at capacity); ``caught_up`` when
        nothing else is waiting to be prepared."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                self._cond.wait()
            now = self._clock()
            for item in items:
                self._items.append(item)
                self._since.append(now)
            self._caught_up = caught_up
            self._cond.notify()

    def caught_up(self) -> None:
        """The prepare thread found nothing more to prepare."""
        with self._cond:
            if not self._caught_up:
                self._caught_up = True
                self._cond.notify()

    def close(self) -> None:
        """No more items will come: :meth:`take` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _ready_in(self) -> float | None:
        """0 when a batch can be taken now, else how long until its age says so (None: empty)."""
        if not self._items:
            return None
        if len(self._items) >= self.batch_size or self._caught_up or self._closed:
            return 0.0
        return max(0.0, self._since[0] + self.batch_s - self._clock())

    def take(self, timeout: float) -> list[T] | None:
        """The next batch (oldest first, at most ``batch_size``); [] if none within
        ``timeout`` s; None once closed and empty."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                wait = self._ready_in()
                if wait == 0.0:
                    n = min(self.batch_size, len(self._items))
                    for _ in range(n):
                        self._since.popleft()
                    taken = [self._items.popleft() for _ in range(n)]
                    self._cond.notify_all()  # room for the prepare thread
                    return taken
                if wait is None and self._closed:
                    return None
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining if wait is None else min(wait, remaining))
