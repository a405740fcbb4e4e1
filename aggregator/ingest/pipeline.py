"""One batch from raw messages to committed rows, without MQTT.

:meth:`IngestPipeline.prepare_one` does the work that needs no database
(parse, clock skew, token signature) for one message, as it arrives, so the
consumer can run it while the previous batch is in the database;
:meth:`IngestPipeline.look_up` checks a batch's devices and reads its
registry records in one short read transaction and decides the verdicts;
:meth:`IngestPipeline.write` writes the batch in one write transaction.
The consumer runs the two on threads of their own, so the next batch is
looked up while this one is written (the writes are the one serial step of
ingest). :meth:`IngestPipeline.store` does both in turn. Each can be called
again with the same batch after a database error.

A batch is looked up after all its scans arrived, so a registry change
committed before a scan arrived is seen by its verdict: a change applies to
the next passage.

A batch the database refuses for its data (an integrity or data error: a row
this code did not foresee) is split into single events, each in its own
transaction, and the one refused goes to the dead letters with the error:
one bad event never blocks the stream, and nothing is dropped unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from aggregator.db.engine import write_transaction
from aggregator.ingest.lookup import device_states, registry_records
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import (
    DeadLetter,
    DeadLetterReason,
    Inbound,
    check_device,
    clock_skew_s,
    dead_letter,
    parse_scan,
    skew_to_record,
)
from aggregator.ingest.verdicts import decide, is_authentic
from aggregator.ingest.writer import Accepted, WriteResult, write_batch
from contract.messages import ScanEvent
from contract.token import Reason, Verification

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A well-formed scan event, its token checked, awaiting the database."""

    item: Inbound
    event: ScanEvent
    verification: Verification
    judged_at: datetime
    clock_skew_s: float | None


@dataclass
class Prepared:
    """A batch after the work that needs no database."""

    parsed: list[Parsed] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class LookedUp:
    """A batch with its devices checked and its verdicts decided, ready to write."""

    prepared: Prepared
    accepted: list[Accepted]
    letters: list[DeadLetter]


@dataclass
class BatchOutcome:
    """What a batch did (``result`` holds the new passages and alerts)."""

    result: WriteResult
    letters: list[DeadLetter]


def _now() -> datetime:
    return datetime.now(UTC)


def assemble(items: Sequence[Parsed | DeadLetter]) -> Prepared:
    """A batch from messages prepared one by one (in their order of arrival)."""
    prepared = Prepared()
    for item in items:
        if isinstance(item, DeadLetter):
            prepared.letters.append(item)
        else:
            prepared.parsed.append(item)
    return prepared


class IngestPipeline:
    """Turns batches of scan messages into stored passages."""

    def __init__(
        self,
        engine: Engine,
        verifier: TokenVerifier,
        *,
        clock_skew_threshold_s: float = 30.0,
        clock: Callable[[], datetime] = _now,
        device_skew: Callable[[str], float | None] | None = None,
    ) -> None:
        self.engine = engine
        self.verifier = verifier
        self.clock_skew_threshold_s = clock_skew_threshold_s
        self._clock = clock
        # The device's skew as its live status messages show it (the fleet
        # state): unlike a scan, which may arrive late from an outbox, a
        # status is sent as it is made, so it reveals a clock running behind.
        self._device_skew = device_skew

    def prepare_one(
        self, item: Inbound, *, signed: tuple[str, Verification] | None = None
    ) -> Parsed | DeadLetter:
        """Parse one message, measure skew and check its token's signature (no database).

        ``signed`` is a signature check already made elsewhere with this
        verifier's keyring (:meth:`TokenVerifier.signature`) and the token it
        was made for; it is used only if that is the token this message
        carries, else the token is checked here.
        """
        event = parse_scan(item)
        if isinstance(event, DeadLetter):
            return event
        skew = skew_to_record(event.seen_at, item.received_at, self.clock_skew_threshold_s)
        # A clock running ahead would make valid passes look not yet valid
        # (and shift the rollups): judge such a scan at its arrival instead.
        judged_at = event.seen_at if skew is None else item.received_at
        if skew is None and self._device_skew is not None:
            known = self._device_skew(event.device_id)
            if known is not None and abs(known) > self.clock_skew_threshold_s:
                # Corrected to our clock (never later than it arrived).
                skew = known
                judged_at = min(event.seen_at - timedelta(seconds=known), item.received_at)
        at = int(judged_at.timestamp())
        if signed is not None and signed[0] == event.token:
            verification = self.verifier.judge(signed[1], at=at)
        else:
            verification = self.verifier.verify(event.token, at=at)
        if verification.reason is Reason.NOT_YET_VALID and judged_at < item.received_at:
            # A clock running behind cannot be told from a late delivery by the
            # scan's time alone, but a pass is never shown before it was issued:
            # if it is valid at arrival, the gate's clock was behind.
            arrival = self.verifier.judge(
                self.verifier.signature(event.token), at=int(item.received_at.timestamp())
            )
            if arrival.reason is not Reason.NOT_YET_VALID:
                skew = clock_skew_s(event.seen_at, item.received_at)
                judged_at, verification = item.received_at, arrival
        return Parsed(item, event, verification, judged_at, skew)

    def prepare(self, items: Sequence[Inbound]) -> Prepared:
        """Parse, measure skew and check token signatures (no database)."""
        return assemble([self.prepare_one(item) for item in items])

    def look_up(self, prepared: Prepared) -> LookedUp:
        """Check the batch's devices, read its registry records and decide its verdicts.

        One read transaction, on a connection of its own: it may run while
        another batch is being written.
        """
        letters = list(prepared.letters)
        # The reads go in a transaction apart from the writes so that the
        # write transaction starts with a write: on SQLite a transaction that
        # reads first cannot wait for the write lock (SQLITE_BUSY_SNAPSHOT)
        # and would fail whenever another writer committed in between.
        with self.engine.connect() as conn, conn.begin():
            known = device_states(conn, device_ids={p.event.device_id for p in prepared.parsed})
            valid: list[Parsed] = []
            for p in prepared.parsed:
                state = known.get(p.event.device_id)
                refused = check_device(p.item, p.event, state.checkpoint_id if state else None)
                if refused is None:
                    valid.append(p)
                else:
                    letters.append(refused)
            wanted = {
                p.verification.claims.declaration_id
                for p in valid
                if p.verification.claims is not None and is_authentic(p.verification)
            }
            records = registry_records(conn, declaration_ids=wanted)
        accepted = []
        for p in valid:
            claims = p.verification.claims
            declaration_id = claims.declaration_id if claims is not None else None
            record = records.get(declaration_id) if declaration_id is not None else None
            accepted.append(
                Accepted(
                    event=p.event,
                    received_at=p.item.received_at,
                    decision=decide(p.verification, record, p.judged_at),
                    declaration_id=declaration_id,
                    judged_at=p.judged_at,
                    clock_skew_s=p.clock_skew_s,
                )
            )
        return LookedUp(prepared, accepted, letters)

    def write(self, looked: LookedUp) -> BatchOutcome:
        """Commit the batch in one transaction (split up only if the data is refused).

        Raises the database's error for anything else (connection lost,
        locked, deadlock...): the caller retries the same batch.
        """
        try:
            with write_transaction(self.engine) as conn:
                result = write_batch(
                    conn, accepted=looked.accepted, letters=looked.letters, now=self._clock()
                )
            return BatchOutcome(result, looked.letters)
        # OverflowError: the sqlite3 driver refuses an integer beyond 64 bits
        # itself, before SQLAlchemy could wrap it as a DataError.
        except (IntegrityError, DataError, OverflowError) as exc:
            prepared = looked.prepared
            if len(prepared.parsed) + len(prepared.letters) <= 1:
                return self._store_refused(prepared, exc)
            log.warning(
                "batch refused by the database, storing event by event: %s",
                getattr(exc, "orig", exc),
            )
        merged = BatchOutcome(WriteResult(), [])
        singles = [Prepared(parsed=[p]) for p in prepared.parsed]
        singles += [Prepared(letters=[d]) for d in prepared.letters]
        for single in singles:
            outcome = self.store(single)
            merged.letters += outcome.letters
            r, o = merged.result, outcome.result
            r.stored += o.stored
            r.duplicates += o.duplicates
            r.alerts += o.alerts
            r.notifications += o.notifications
            r.dead_letters += o.dead_letters
            r.gaps_opened += o.gaps_opened
            r.seqs_filled += o.seqs_filled
        return merged

    def store(self, prepared: Prepared) -> BatchOutcome:
        """Look the batch up, then write it (:meth:`look_up`, :meth:`write`)."""
        return self.write(self.look_up(prepared))

    def _store_refused(
        self, prepared: Prepared, exc: IntegrityError | DataError | OverflowError
    ) -> BatchOutcome:
        items = [p.item for p in prepared.parsed] + [
            Inbound(d.topic, d.payload, d.received_at) for d in prepared.letters
        ]
        cause = getattr(exc, "orig", exc)
        detail = f"{type(cause).__name__}: {cause}"
        log.error("event refused by the database, kept as a dead letter: %s", detail)
        letters = [dead_letter(item, DeadLetterReason.STORE_REJECTED, detail) for item in items]
        return self.store(Prepared(letters=letters))
