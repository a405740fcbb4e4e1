"""The deny-list a gate holds offline: revoked passes and flagged declarations.

The aggregator publishes the whole list, retained, with a revision number. A
device keeps the highest revision it has seen and caches it on disk, so a gate
that boots with no network still stops the people it was told to stop.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from pydantic import ValidationError

from contract.messages import DenyList, DenyReason

log = logging.getLogger(__name__)


class DenyListStore:
    """Thread-safe current deny-list with an atomic on-disk cache."""

    def __init__(self, cache_path: Path | None) -> None:
        self._path = cache_path
        self._lock = threading.Lock()
        self._revision = -1
        self._reasons: dict[int, DenyReason] = {}
        if cache_path is not None and cache_path.exists():
            self._load(cache_path)

    def _load(self, path: Path) -> None:
        try:
            cached = DenyList.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            # A damaged cache must not stop the gate; the retained message refills it.
            log.error("deny-list cache %s unreadable, ignored: %s", path, exc)
            return
        self._set(cached)

    def _set(self, deny: DenyList) -> None:
        self._reasons = {entry.declaration_id: entry.reason for entry in deny.entries}
        self._revision = deny.revision

    @property
    def revision(self) -> int | None:
        """Revision held, or None before any list arrived."""
        return None if self._revision < 0 else self._revision

    def __len__(self) -> int:
        return len(self._reasons)

    def reason_for(self, declaration_id: int) -> DenyReason | None:
        """Why this declaration is denied (revoked, F0, ...), or None.

        Lock-free: ``apply`` swaps in a new dict, never mutates the one read here.
        """
        return self._reasons.get(declaration_id)

    def apply(self, deny: DenyList) -> bool:
        """Take ``deny`` if it is newer than what we hold; persist it. Returns True if taken."""
        with self._lock:
            if deny.revision <= self._revision:
                return False
            self._set(deny)
        if self._path is not None:
            self._persist(deny)
        log.info("deny-list revision %d: %d entries", deny.revision, len(deny.entries))
        return True

    def _persist(self, deny: DenyList) -> None:
        assert self._path is not None
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(deny.model_dump_json().encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except OSError as exc:
            # Still enforced from memory; only the reboot-offline case is degraded.
            log.error("cannot cache deny-list at %s: %s", self._path, exc)
