"""Investigation queries: who passed a place, one citizen's route, an F0's likely contacts.

Every query here returns personal data (names, dates of birth, phones,
residences): the routes that call them record the read in the audit log in
the same transaction. Each one is an index range on ``passages``:

- a place in a time window: ``(checkpoint_id, seen_at)``, keyset-paged by
  ``(seen_at, event_id)`` so page 100 costs what page 1 does;
- a citizen's route: ``(citizen_id, seen_at)``;
- contacts: the F0's passages by ``(citizen_id, seen_at)``, then for each one
  the same checkpoint's ``(checkpoint_id, seen_at)`` range of ±N minutes.

A checkpoint is a city gate or a registered venue: both are rows of
``checkpoints``, so "checkpoint or venue" is one parameter. ``checkpoint_ids``
(None: every checkpoint) confines a query to an officer's scope.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Select, and_, insert, or_, select
from sqlalchemy.sql import ColumnElement

from aggregator.auth.audit import record_action
from aggregator.auth.model import Officer
from aggregator.db.registry import (
    Citizen,
    get_citizen_by_identity,
    search_citizens,
    set_health_status,
)
from aggregator.db.schema import (
    CheckpointKind,
    HealthStatus,
    NotificationKind,
    checkpoints,
    citizens,
    passages,
    ward_notifications,
    wards,
)
from contract.messages import Color, Direction

MAX_PAGE = 5_000
MAX_WINDOW = timedelta(days=31)
MAX_CONTACT_WINDOW_MINUTES = 240
# An F0 with more passages than this in the window is traced on the latest ones;
# the answer says so (``truncated``) rather than silently running for minutes.
MAX_SOURCE_PASSAGES = 500

# Statuses a contact keeps: F1 never replaces a confirmed case, a contact already
# marked, or a death.
KEEP_STATUS_ON_F1 = frozenset({HealthStatus.F0, HealthStatus.F1, HealthStatus.DECEASED})

_permanent = wards.alias("permanent_ward")
_temporary = wards.alias("temporary_ward")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PersonRow(_Record):
    """A citizen as an investigator reads them (ward codes resolved to names)."""

    citizen_id: int
    identity_no: str
    full_name: str
    date_of_birth: date
    phone: str | None
    health_status: HealthStatus
    permanent_ward: str | None
    temporary_ward: str | None


class PlaceHit(_Record):
    """One passage through the place, with the person when the registry knows them."""

    event_id: UUID
    seen_at: datetime
    direction: Direction
    verdict: Color
    reason: str
    citizen_id: int | None
    identity_no: str | None
    full_name: str | None
    date_of_birth: date | None
    phone: str | None
    health_status: HealthStatus | None
    permanent_ward: str | None
    temporary_ward: str | None


class PlaceCursor(_Record):
    """Where the next page starts (after this passage)."""

    seen_at: datetime
    event_id: UUID


class PlacePage(_Record):
    """A page of passages, oldest first; ``next_after`` None when it is the last."""

    checkpoint_id: str
    since: datetime
    until: datetime
    hits: list[PlaceHit]
    next_after: PlaceCursor | None


class RouteStop(_Record):
    """One passage on a citizen's route."""

    event_id: UUID
    seen_at: datetime
    checkpoint_id: str
    checkpoint_name: str
    checkpoint_kind: CheckpointKind
    ward_name: str
    direction: Direction
    verdict: Color
    reason: str


class Route(_Record):
    """A citizen's passages in a window, oldest first."""

    person: PersonRow
    stops: list[RouteStop]
    truncated: bool


class SharedPassage(_Record):
    """A contact's passage near one of the F0's: where, when, and how far apart."""

    checkpoint_id: str
    source_seen_at: datetime
    seen_at: datetime
    gap_s: float


class Contact(_Record):
    """A likely contact of the F0, with the evidence for it."""

    person: PersonRow
    shared_passages: int
    closest_gap_s: float
    mean_gap_s: float
    places: list[str]
    evidence: list[SharedPassage]


class Contacts(_Record):
    """Likely contacts, most likely first (most shared passages, then closest in time)."""

    source: PersonRow
    window_minutes: int
    source_passages: int
    truncated: bool
    contacts: list[Contact]


class F1Marked(_Record):
    """What :func:`mark_contacts_f1` did for one citizen."""

    citizen_id: int
    previous: HealthStatus
    changed: bool
    notified_ward: int | None


class TraceInputError(ValueError):
    """A query's parameters make no sense (window reversed or too long, bad limit)."""


def check_window(since: datetime, until: datetime, *, longest: timedelta = MAX_WINDOW) -> None:
    """Refuse a window that is reversed, empty, naive or longer than ``longest``."""
    if since.tzinfo is None or until.tzinfo is None:
        raise TraceInputError("naive datetime refused: give the window a time zone")
    if until <= since:
        raise TraceInputError(
            "Thời điểm kết thúc phải sau thời điểm bắt đầu / the end must be after the start"
        )
    if until - since > longest:
        raise TraceInputError(
            f"Khoảng thời gian tối đa {longest.days} ngày / the window is at most "
            f"{longest.days} days"
        )


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise TraceInputError(f"limit must be between 1 and {MAX_PAGE}: {limit}")


_PERSON_COLUMNS = (
    citizens.c.identity_no,
    citizens.c.full_name,
    citizens.c.date_of_birth,
    citizens.c.phone,
    citizens.c.health_status,
    _permanent.c.name.label("permanent_ward"),
    _temporary.c.name.label("temporary_ward"),
)


def _with_person(query: Select[Any], citizen_id: ColumnElement[Any]) -> Select[Any]:
    return (
        query.outerjoin(citizens, citizens.c.id == citizen_id)
        .outerjoin(_permanent, _permanent.c.code == citizens.c.permanent_ward_code)
        .outerjoin(_temporary, _temporary.c.code == citizens.c.temporary_ward_code)
    )


def _scoped(checkpoint_ids: Collection[str] | None) -> list[ColumnElement[bool]]:
    if checkpoint_ids is None:
        return []
    return [passages.c.checkpoint_id.in_(sorted(checkpoint_ids))]


# --- (a) everyone who passed a place --------------------------------------------------


def place_query(
    *,
    checkpoint_id: str,
    since: datetime,
    until: datetime,
    limit: int,
    after: PlaceCursor | None = None,
) -> Select[Any]:
    """The statement behind :func:`place_passages` (``limit`` rows; the benchmark compiles it)."""
    where: list[ColumnElement[bool]] = [
        passages.c.checkpoint_id == checkpoint_id,
        passages.c.seen_at >= since,
        passages.c.seen_at < until,
    ]
    if after is not None:
        where.append(
            or_(
                passages.c.seen_at > after.seen_at,
                and_(passages.c.seen_at == after.seen_at, passages.c.event_id > after.event_id),
            )
        )
    query = _with_person(
        select(
            passages.c.event_id,
            passages.c.seen_at,
            passages.c.direction,
            passages.c.verdict,
            passages.c.reason,
            passages.c.citizen_id,
            *_PERSON_COLUMNS,
        ).select_from(passages),
        passages.c.citizen_id,
    )
    query = query.where(*where).order_by(passages.c.seen_at, passages.c.event_id).limit(limit)
    return query


def place_passages(
    conn: Connection,
    *,
    checkpoint_id: str,
    since: datetime,
    until: datetime,
    limit: int = 500,
    after: PlaceCursor | None = None,
) -> PlacePage:
    """Everyone who passed ``checkpoint_id`` in ``[since, until)``, oldest first, a page at a time.

    Passages whose code the registry does not know (forged, foreign) are kept
    with empty personal fields: an investigator must see that someone passed.
    """
    check_window(since, until)
    _check_limit(limit)
    query = place_query(
        checkpoint_id=checkpoint_id, since=since, until=until, limit=limit + 1, after=after
    )
    rows = [PlaceHit.model_validate(dict(r)) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    hits = rows[:limit]
    cursor = PlaceCursor(seen_at=hits[-1].seen_at, event_id=hits[-1].event_id) if more else None
    return PlacePage(
        checkpoint_id=checkpoint_id, since=since, until=until, hits=hits, next_after=cursor
    )


# --- (b) one citizen's route -----------------------------------------------------------


def person(conn: Connection, *, citizen_id: int) -> PersonRow | None:
    """The citizen with ward names resolved, or None."""
    return _people(conn, [citizen_id]).get(citizen_id)


def _people(conn: Connection, ids: Collection[int]) -> dict[int, PersonRow]:
    if not ids:
        return {}
    query = (
        select(citizens.c.id.label("citizen_id"), *_PERSON_COLUMNS)
        .select_from(citizens)
        .outerjoin(_permanent, _permanent.c.code == citizens.c.permanent_ward_code)
        .outerjoin(_temporary, _temporary.c.code == citizens.c.temporary_ward_code)
        .where(citizens.c.id.in_(sorted(set(ids))))
    )
    return {
        r["citizen_id"]: PersonRow.model_validate(dict(r)) for r in conn.execute(query).mappings()
    }


def find_citizens(
    conn: Connection,
    *,
    query: str,
    limit: int = 20,
    scope: ColumnElement[bool] | None = None,
) -> list[Citizen]:
    """Citizens an investigator means by ``query``: a 12-digit identity number, or a name prefix.

    The name search ignores diacritics and case ("nguyen van an" finds
    "Nguyễn Văn An"); see :func:`aggregator.db.registry.search_citizens`.
    ``scope`` (:meth:`~aggregator.auth.model.Officer.citizen_filter`) hides
    everyone outside the officer's scope, as if they did not exist.
    """
    digits = "".join(ch for ch in query if not ch.isspace() and ch != ".")
    if len(digits) == 12 and digits.isascii() and digits.isdigit():
        found = get_citizen_by_identity(conn, identity_no=digits)
        if found is None or not visible_citizens(conn, [found.id], scope=scope):
            return []
        return [found]
    return search_citizens(conn, name_query=query, limit=limit, where=scope)


def visible_citizens(
    conn: Connection, citizen_ids: Collection[int], *, scope: ColumnElement[bool] | None
) -> set[int]:
    """Those of ``citizen_ids`` that exist and that ``scope`` admits (None: every one)."""
    ids = list(dict.fromkeys(citizen_ids))
    if not ids:
        return set()
    query = select(citizens.c.id).where(citizens.c.id.in_(ids))
    if scope is not None:
        query = query.where(scope)
    return set(conn.execute(query).scalars())


def citizen_route(
    conn: Connection,
    *,
    citizen_id: int,
    since: datetime,
    until: datetime,
    limit: int = 1_000,
    checkpoint_ids: Collection[str] | None = None,
) -> Route | None:
    """The citizen's passages through checkpoints and venues in ``[since, until)``, oldest first.

    None when no such citizen exists. ``truncated`` says more passages exist
    past ``limit``.
    """
    check_window(since, until)
    _check_limit(limit)
    who = person(conn, citizen_id=citizen_id)
    if who is None:
        return None
    query = (
        select(
            passages.c.event_id,
            passages.c.seen_at,
            passages.c.checkpoint_id,
            checkpoints.c.name.label("checkpoint_name"),
            checkpoints.c.kind.label("checkpoint_kind"),
            wards.c.name.label("ward_name"),
            passages.c.direction,
            passages.c.verdict,
            passages.c.reason,
        )
        .join(checkpoints, checkpoints.c.id == passages.c.checkpoint_id)
        .join(wards, wards.c.code == checkpoints.c.ward_code)
        .where(
            passages.c.citizen_id == citizen_id,
            passages.c.seen_at >= since,
            passages.c.seen_at < until,
            *_scoped(checkpoint_ids),
        )
        .order_by(passages.c.seen_at, passages.c.event_id)
        .limit(limit + 1)
    )
    stops = [RouteStop.model_validate(dict(r)) for r in conn.execute(query).mappings()]
    return Route(person=who, stops=stops[:limit], truncated=len(stops) > limit)


# --- (c) likely contacts of an F0 --------------------------------------------------------


@dataclass
class _Tally:
    evidence: list[SharedPassage] = field(default_factory=list)
    sources: set[UUID] = field(default_factory=set)


def likely_contacts(
    conn: Connection,
    *,
    citizen_id: int,
    since: datetime,
    until: datetime,
    window_minutes: int = 15,
    limit: int = 200,
    checkpoint_ids: Collection[str] | None = None,
) -> Contacts | None:
    """People at the same checkpoints/venues within ±``window_minutes`` of the F0's passages.

    Ranked by how many of the F0's passages they shared (at most one count per
    F0 passage), then by the closest gap in time, then by the mean gap. The
    F0 and passages of unknown people are left out. None for an unknown citizen.
    """
    check_window(since, until)
    _check_limit(limit)
    if not 1 <= window_minutes <= MAX_CONTACT_WINDOW_MINUTES:
        raise TraceInputError(
            f"window_minutes must be between 1 and {MAX_CONTACT_WINDOW_MINUTES}: {window_minutes}"
        )
    source = person(conn, citizen_id=citizen_id)
    if source is None:
        return None
    own = conn.execute(
        select(passages.c.event_id, passages.c.checkpoint_id, passages.c.seen_at)
        .where(
            passages.c.citizen_id == citizen_id,
            passages.c.seen_at >= since,
            passages.c.seen_at < until,
            *_scoped(checkpoint_ids),
        )
        .order_by(passages.c.seen_at.desc())
        .limit(MAX_SOURCE_PASSAGES + 1)
    ).all()
    truncated = len(own) > MAX_SOURCE_PASSAGES
    own = own[:MAX_SOURCE_PASSAGES]
    window = timedelta(minutes=window_minutes)
    tallies: dict[int, _Tally] = {}
    for event_id, checkpoint_id, seen_at in own:
        near = conn.execute(
            select(passages.c.citizen_id, passages.c.seen_at).where(
                passages.c.checkpoint_id == checkpoint_id,
                passages.c.seen_at >= seen_at - window,
                passages.c.seen_at <= seen_at + window,
                passages.c.citizen_id.is_not(None),
                passages.c.citizen_id != citizen_id,
            )
        )
        for other, other_seen in near:
            tally = tallies.setdefault(int(other), _Tally())
            tally.evidence.append(
                SharedPassage(
                    checkpoint_id=checkpoint_id,
                    source_seen_at=seen_at,
                    seen_at=other_seen,
                    gap_s=abs((other_seen - seen_at).total_seconds()),
                )
            )
            tally.sources.add(event_id)
    ranked = sorted(tallies.items(), key=lambda item: _rank(item[1]))[:limit]
    people = _people(conn, [cid for cid, _ in ranked])
    contacts = [_contact(people[cid], tally) for cid, tally in ranked if cid in people]
    return Contacts(
        source=source,
        window_minutes=window_minutes,
        source_passages=len(own),
        truncated=truncated,
        contacts=contacts,
    )


def _closest_per_source(tally: _Tally) -> list[SharedPassage]:
    best: dict[tuple[str, datetime], SharedPassage] = {}
    for shared in tally.evidence:
        key = (shared.checkpoint_id, shared.source_seen_at)
        if key not in best or shared.gap_s < best[key].gap_s:
            best[key] = shared
    return sorted(best.values(), key=lambda s: s.source_seen_at)


def _rank(tally: _Tally) -> tuple[int, float, float]:
    closest = _closest_per_source(tally)
    gaps = [s.gap_s for s in closest]
    return (-len(tally.sources), min(gaps), sum(gaps) / len(gaps))


def _contact(who: PersonRow, tally: _Tally) -> Contact:
    closest = _closest_per_source(tally)
    gaps = [s.gap_s for s in closest]
    return Contact(
        person=who,
        shared_passages=len(tally.sources),
        closest_gap_s=min(gaps),
        mean_gap_s=sum(gaps) / len(gaps),
        places=sorted({s.checkpoint_id for s in closest}),
        evidence=closest,
    )


# --- marking contacts F1 -------------------------------------------------------------------


def mark_contacts_f1(
    conn: Connection,
    *,
    citizen_ids: Sequence[int],
    officer: Officer,
    at: datetime,
    source_citizen_id: int | None = None,
    ip: str | None = None,
) -> list[F1Marked]:
    """Set each citizen to F1 and tell their ward, in the caller's transaction.

    The ward told is the ward of temporary residence, else of permanent
    residence (a ``status_change`` notification). A citizen already F0, F1 or
    deceased keeps that status and no notification is made. Each change is
    recorded in the audit log. Raises
    :class:`~aggregator.db.registry.CitizenNotFoundError` for an unknown id
    (the whole transaction is then rolled back by the caller). After the
    commit the caller publishes the gates' deny-list
    (``service.denylist.publish_now()``) so the new F1s are stopped at once.
    """
    results: list[F1Marked] = []
    for citizen_id in dict.fromkeys(citizen_ids):
        current = conn.execute(
            select(citizens.c.health_status).where(citizens.c.id == citizen_id)
        ).scalar_one_or_none()
        if current is not None and HealthStatus(current) in KEEP_STATUS_ON_F1:
            results.append(
                F1Marked(
                    citizen_id=citizen_id,
                    previous=HealthStatus(current),
                    changed=False,
                    notified_ward=None,
                )
            )
            continue
        change = set_health_status(conn, citizen_id=citizen_id, status=HealthStatus.F1, at=at)
        ward = change.citizen.temporary_ward_code or change.citizen.permanent_ward_code
        conn.execute(
            insert(ward_notifications).values(
                ward_code=ward,
                kind=NotificationKind.STATUS_CHANGE.value,
                citizen_id=citizen_id,
                payload={
                    "status": HealthStatus.F1.value,
                    "previous": change.previous.value,
                    "reason": "contact_of_f0",
                    "source_citizen_id": source_citizen_id,
                    "officer_id": officer.id,
                },
                created_at=at,
            )
        )
        record_action(
            conn,
            officer=officer,
            action="citizen.status.f1",
            subject=f"citizen:{citizen_id}",
            detail={
                "previous": change.previous.value,
                "source_citizen_id": source_citizen_id,
                "notified_ward": ward,
            },
            ip=ip,
        )
        results.append(
            F1Marked(
                citizen_id=citizen_id, previous=change.previous, changed=True, notified_ward=ward
            )
        )
    return results
