"""The gates' deny-list: built from the registry, published retained when it changes.

What is on it: every unexpired declaration that was revoked, and the
unexpired, unrevoked declarations of citizens who are F0, F1 or deceased, so
a gate cut off from the aggregator still stops them.

Change detection: every few seconds a cheap fingerprint of the registry is
read (newest ``citizens.updated_at``, flagged citizens per status, revoked
declarations, flagged citizens' current declarations; each served by an
index). When it differs, or on :meth:`DenyListPublisher.publish_now`, the list
is rebuilt. It is also rebuilt every ``max_age_s`` so expired declarations
drop off. The flagged statuses are written into the SQL as literals, not bound
parameters: only then can SQLite (and a PostgreSQL generic plan) prove the
query matches the partial index ``ix_citizens_flagged``; with parameters each
poll scanned the whole citizens table (0.3 s at a million people).

Revisions come from the ``deny_list_revisions`` table: a new row (a higher
revision) whenever the list's content differs from the newest row, the
newest row's revision when it does not. So revisions increase across
restarts and across aggregator processes, and processes that build the same
list publish the same revision. The list is read in one transaction and the
revision assigned in another that starts with its write: on SQLite a
transaction that reads first cannot take the write lock once another
connection (the ingest) has committed, and failed with "database is locked"
at every poll while scans were flowing. Verdicts never use this list: they
read the registry for each batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, exists, func, literal, select

from aggregator.db.engine import write_transaction
from aggregator.db.schema import (
    DENIED_STATUSES,
    HealthStatus,
    citizens,
    declarations,
    deny_list_revisions,
)
from contract.messages import MAX_DENYLIST_BYTES, DenyEntry, DenyList, DenyReason, encode
from contract.topics import REVOCATIONS_TOPIC

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]
Fingerprint = tuple[object, ...]

_REASON: dict[str, DenyReason] = {
    HealthStatus.F0.value: DenyReason.F0,
    HealthStatus.F1.value: DenyReason.F1,
    HealthStatus.DECEASED.value: DenyReason.DECEASED,
}
# Rendered as literals (see the module docstring: the partial index needs them).
_FLAGGED = citizens.c.health_status.in_(
    bindparam("denied", [s.value for s in DENIED_STATUSES], expanding=True, literal_execute=True)
)


def registry_fingerprint(conn: Connection) -> Fingerprint:
    """A cheap summary of everything the deny-list depends on (changes when it may)."""
    newest_update = conn.execute(select(func.max(citizens.c.updated_at))).scalar_one()
    per_status = conn.execute(
        select(citizens.c.health_status, func.count())
        .where(_FLAGGED)
        .group_by(citizens.c.health_status)
        .order_by(citizens.c.health_status)
    ).all()
    revoked = conn.execute(
        select(func.count(), func.max(declarations.c.revoked_at)).where(
            declarations.c.revoked_at.is_not(None)
        )
    ).one()
    flagged_declarations = conn.execute(
        select(func.count(), func.max(declarations.c.id))
        .select_from(declarations)
        .join(citizens, declarations.c.citizen_id == citizens.c.id)
        .where(_FLAGGED)
    ).one()
    return (
        newest_update,
        tuple(tuple(r) for r in per_status),
        tuple(revoked),
        tuple(flagged_declarations),
    )


def build_entries(conn: Connection, *, now: datetime) -> list[DenyEntry]:
    """The deny-list's entries as of ``now``, by declaration id."""
    reasons: dict[int, DenyReason] = {}
    flagged = conn.execute(
        select(declarations.c.id, citizens.c.health_status)
        .join_from(declarations, citizens, declarations.c.citizen_id == citizens.c.id)
        .where(
            _FLAGGED,
            declarations.c.revoked_at.is_(None),
            declarations.c.expires_at > now,
        )
    )
    for declaration_id, status in flagged:
        reasons[declaration_id] = _REASON[status]
    revoked = conn.execute(
        select(declarations.c.id).where(
            declarations.c.revoked_at.is_not(None), declarations.c.expires_at > now
        )
    ).scalars()
    for declaration_id in revoked:
        reasons[declaration_id] = DenyReason.REVOKED
    return [DenyEntry.model_construct(declaration_id=i, reason=reasons[i]) for i in sorted(reasons)]


def entries_digest(entries: list[DenyEntry]) -> str:
    """SHA-256 over the entries (sorted by id), to tell whether a list changed."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(f"{entry.declaration_id}:{entry.reason.value};".encode())
    return h.hexdigest()


def assign_revision(conn: Connection, *, digest: str, entries: int, now: datetime) -> int:
    """The newest revision if it has this content, else a new, higher one.

    One statement that writes first (an INSERT that adds nothing when the
    newest revision already has this digest), so on SQLite the transaction
    holds the write lock before it reads anything.
    """
    table = deny_list_revisions.c
    newest = select(func.max(table.revision)).scalar_subquery()
    unchanged = exists().where(table.revision == newest, table.digest == digest)
    inserted = conn.execute(
        deny_list_revisions.insert()
        .from_select(
            ["digest", "entries", "created_at"],
            select(
                literal(digest, deny_list_revisions.c.digest.type),
                literal(entries, deny_list_revisions.c.entries.type),
                literal(now, deny_list_revisions.c.created_at.type),
            ).where(~unchanged),
        )
        .returning(table.revision)
    ).scalar_one_or_none()
    if inserted is not None:
        return int(inserted)
    return int(conn.execute(select(func.max(table.revision))).scalar_one())


@dataclass(frozen=True, slots=True)
class Published:
    """The last deny-list sent to the broker."""

    revision: int
    entries: int
    digest: str
    at: datetime


class DenyListPublisher:
    """Builds the deny-list when the registry changes and publishes it retained."""

    def __init__(
        self,
        engine: Engine,
        publish: Publish,
        *,
        max_age_s: float = 3600.0,
        on_published: Callable[[Published], None] | None = None,
    ) -> None:
        self.engine = engine
        self._publish = publish
        self.max_age_s = max_age_s
        self._on_published = on_published
        self._lock = threading.Lock()
        self._fingerprint: Fingerprint | None = None
        self._built_at = 0.0
        self._needs_publish = True
        self.last: Published | None = None

    def request_publish(self) -> None:
        """Have the next :meth:`tick` rebuild and publish (after a broker reconnect)."""
        self._needs_publish = True

    def publish_now(self) -> DenyList:
        """Rebuild from the registry and publish now; returns what was published.

        For in-process callers that just changed the registry (an F-status
        update, a revocation) and want gates told without waiting for the poll.
        """
        with self._lock:
            with self.engine.connect() as conn:
                fingerprint = registry_fingerprint(conn)
            return self._rebuild(fingerprint)

    def tick(self) -> DenyList | None:
        """Poll the registry; rebuild and publish if it changed. Returns the list if published."""
        with self._lock:
            with self.engine.connect() as conn:
                fingerprint = registry_fingerprint(conn)
            stale = time.monotonic() - self._built_at > self.max_age_s
            if fingerprint == self._fingerprint and not stale and not self._needs_publish:
                return None
            return self._rebuild(fingerprint)

    def _rebuild(self, fingerprint: Fingerprint) -> DenyList:
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            entries = build_entries(conn, now=now)
        digest = entries_digest(entries)
        with write_transaction(self.engine) as conn:
            revision = assign_revision(conn, digest=digest, entries=len(entries), now=now)
        deny = DenyList.model_construct(v=1, revision=revision, issued_at=now, entries=entries)
        payload = encode(deny)
        published = False
        if len(payload) > MAX_DENYLIST_BYTES:
            log.error(
                "deny-list revision %d is %d bytes, above the gates' cap of %d; not published",
                revision,
                len(payload),
                MAX_DENYLIST_BYTES,
            )
        else:
            published = self._publish(REVOCATIONS_TOPIC, payload)
        # Unreachable broker: try again at the next tick. Oversized: no use retrying.
        self._needs_publish = not published and len(payload) <= MAX_DENYLIST_BYTES
        self._fingerprint = fingerprint
        self._built_at = time.monotonic()
        if published:
            self.last = Published(revision, len(entries), digest, now)
            if self._on_published is not None:
                self._on_published(self.last)
            log.info("deny-list revision %d published: %d entries", revision, len(entries))
        return deny
