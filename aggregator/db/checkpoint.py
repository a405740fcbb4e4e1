"""SQLite WAL checkpoints on a thread of their own, off the ingest's commit path.

By default SQLite checkpoints inside whichever commit pushes the WAL past
1,000 pages: that commit copies the WAL into the database file and waits for
its fsync. Under ingest load that is one commit in a few, all on the single
thread that stores batches, and it measured at a quarter of that thread's
time. :class:`WalCheckpointer` turns the automatic checkpoint off for the
engine's connections and runs ``PRAGMA wal_checkpoint(PASSIVE)`` every
``interval_s`` on its own connection: a passive checkpoint never blocks
writers or readers, and the sqlite3 driver releases the GIL while it runs.

If the WAL has grown beyond ``truncate_above_bytes`` (a reader held an old
snapshot for long, so passive checkpoints could not finish), a ``TRUNCATE``
checkpoint is tried, which waits at most the busy timeout for readers and
writers, then gives the space back. If the thread stops, the automatic
checkpoints come back for connections made after (``stop`` restores them).

PostgreSQL and in-memory SQLite need none of this: :meth:`start` does nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from aggregator.db.engine import is_memory

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.5
DEFAULT_TRUNCATE_ABOVE = 256 * 2**20


class WalCheckpointer:
    """Runs the WAL checkpoints of one SQLite engine on a background thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        truncate_above_bytes: int = DEFAULT_TRUNCATE_ABOVE,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive: {interval_s}")
        self.engine = engine
        self.interval_s = interval_s
        self.truncate_above_bytes = truncate_above_bytes
        self.checkpoints = 0
        self.truncations = 0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        url = engine.url
        on_file = engine.dialect.name == "sqlite" and not is_memory(url)
        self._wal = Path(f"{url.database}-wal") if on_file else None

    @property
    def active(self) -> bool:
        """True while the thread runs the checkpoints."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Turn automatic checkpoints off and start the thread (SQLite files only)."""
        if self._wal is None or self._thread is not None:
            return
        event.listen(self.engine, "connect", _no_autocheckpoint)
        # Connections made before (migrations, the readiness probe) would keep
        # checkpointing in their commits: let the pool make new ones.
        self.engine.dispose()
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint; connections made after checkpoint again."""
        if self._thread is None:
            return
        self._halt.set()
        self._thread.join(timeout=30)
        self._thread = None
        event.remove(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()

    def _run(self) -> None:
        raw = None
        try:
            while True:
                halting = self._halt.wait(self.interval_s)
                try:
                    if raw is None:
                        raw = self.engine.raw_connection()
                    self.checkpoint(raw.driver_connection)
                # The thread must outlive a locked or vanished file: the next tick tries again.
                except Exception as exc:  # noqa: BLE001
                    log.warning("WAL checkpoint failed, retrying: %s", exc)
                    if raw is not None:
                        raw.invalidate()
                        raw = None
                if halting:
                    return
        finally:
            if raw is not None:
                raw.close()

    def checkpoint(self, dbapi_connection: Any) -> None:
        """One passive checkpoint, or a truncating one when the WAL has grown too large."""
        mode = "PASSIVE"
        try:
            if self._wal is not None and self._wal.stat().st_size > self.truncate_above_bytes:
                mode = "TRUNCATE"
        except FileNotFoundError:
            pass
        dbapi_connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        self.checkpoints += 1
        if mode == "TRUNCATE":
            self.truncations += 1


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
