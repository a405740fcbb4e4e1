"""Venues: premises registered as check-in points, and visitors checked in at them.

A venue (a supermarket, a hospital, a bus station, a public service centre...)
is a row of ``checkpoints`` of kind ``venue`` plus a ``venues`` row with what
its manager registered (category, address, contact) and the id of one
*virtual device*. The venue's check-in page (a phone or a webcam at the
door) scans visitors' pass codes as that device: :func:`check_in` builds the
same :class:`~contract.messages.ScanEvent` a gate publishes and runs it
through the real ingest pipeline
(:meth:`~aggregator.ingest.pipeline.IngestPipeline.prepare_one`, then
:meth:`~aggregator.ingest.pipeline.IngestPipeline.store`), so a venue's
passages, verdicts, alerts, ward notifications, minute rollups and
per-device sequence numbers are exactly a checkpoint's, and tracing finds
visitors at a venue like travellers at a gate.

The virtual device never connects to the broker: its password hash is a
marker no password matches and it has no mosquitto hash, so the broker's
password file never lists it. Its sequence numbers are drawn from
``devices.last_seq`` with one atomic ``UPDATE ... RETURNING`` per check-in,
so two check-ins at the same venue never share a number, whichever web
process handles them; a number drawn for a check-in whose request then fails
is simply never used (the device did not lose an event: none existed).

Check-in is idempotent: the page sends a UUIDv7 it made for the scan and
re-sends it on a retry; an event id already stored answers with the stored
verdict (``duplicate``), and the same pass checked in at the same venue
again within :data:`REPEAT_WINDOW_S` answers with that check-in (``repeat``),
as a gate's dedupe counts one car once.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Self, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Select

from aggregator.auth.audit import LOCAL_TZ, record_action
from aggregator.auth.model import Officer
from aggregator.auth.problems import Problem, ProblemError, custom_error
from aggregator.db.declarations import initials
from aggregator.db.engine import in_transaction
from aggregator.db.places import CheckpointPlace, checkpoint_places
from aggregator.db.schema import (
    CheckpointKind,
    DeviceDirection,
    Role,
    ScopeKind,
    VenueCategory,
    checkpoints,
    citizens,
    devices,
    officer_scopes,
    officers,
    passages,
    venues,
    wards,
)
from aggregator.db.wards import get_ward
from aggregator.ingest.pipeline import IngestPipeline, assemble
from aggregator.ingest.validate import Inbound
from aggregator.ingest.verdicts import is_authentic
from aggregator.ingest.writer import RaisedAlert
from contract.ids import new_event_id
from contract.messages import Color, Direction, ScanEvent, VerdictCode, encode
from contract.text import fold
from contract.token import MAX_TOKEN_CHARS, PREFIX
from contract.topics import scan_topic

log = logging.getLogger(__name__)

REPEAT_WINDOW_S = 30.0
"""The same pass at the same venue within this many seconds is one check-in (a gate's dedupe)."""

NO_BROKER_LOGIN = "!venue-web"
"""The virtual device's password hash: not an argon2 hash, so no password ever matches."""

DEVICE_SUFFIX = "-web"
MAX_SLUG = 40
MAX_PASSAGES = 500
STORE_ATTEMPTS = 4

# Vietnamese numbers: 0 + 9 digits (mobile) or 0 + 10 digits (landline with area
# code), or the same after +84; spaces, dots and dashes as people type them.
_PHONE = re.compile(r"^(?:\+84|0)\d{9,10}$")
_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")
_SLUG_GAP = re.compile(r"[^a-z0-9]+")
# The fewest characters (after trimming) of a registered text, and the error key when
# fewer: anything shorter is a slip of the keyboard, not a name or an address.
_SHORTEST: dict[str, tuple[int, str]] = {
    "name": (2, "venue.error.name"),
    "address": (5, "venue.error.address"),
    "contact_name": (2, "venue.error.contact_name"),
}

T = TypeVar("T")


# --- coordinates (shared with the admin API's checkpoint body) ---------------------------


def _latitude(value: float) -> float:
    # NaN and infinities parse as floats but are no place on Earth.
    if not (math.isfinite(value) and -90 <= value <= 90):
        raise custom_error("error.lat")
    return value


def _longitude(value: float) -> float:
    if not (math.isfinite(value) and -180 <= value <= 180):
        raise custom_error("error.lon")
    return value


Latitude = Annotated[float, AfterValidator(_latitude)]
"""A latitude in degrees (error key ``error.lat`` outside -90..90 or not finite)."""
Longitude = Annotated[float, AfterValidator(_longitude)]
"""A longitude in degrees (error key ``error.lon`` outside -180..180 or not finite)."""


def check_coordinate_pair(lat: float | None, lon: float | None) -> None:
    """Refuse a latitude without a longitude or the reverse (``error.coordinates_pair``)."""
    if (lat is None) != (lon is None):
        raise custom_error("error.coordinates_pair")


# --- what a manager registers -----------------------------------------------------------


class VenueDetails(BaseModel):
    """What a venue manager registers (the API body and the form, validated alike).

    Validation errors carry :mod:`aggregator.web.i18n` keys, so the form shows
    them in the officer's language and the JSON API in both.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: str = Field(max_length=200)
    category: VenueCategory
    address: str = Field(max_length=300)
    ward_code: int = Field(ge=1, le=2**31 - 1)
    lat: Latitude | None = None
    lon: Longitude | None = None
    contact_name: str = Field(max_length=120)
    contact_phone: str = Field(max_length=32)

    @field_validator(*_SHORTEST)
    @classmethod
    def _long_enough(cls, value: str, info: ValidationInfo) -> str:
        least, key = _SHORTEST[str(info.field_name)]
        if len(value) < least:
            raise custom_error(key)
        return value

    @field_validator("contact_phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        digits = _PHONE_SEPARATORS.sub("", value)
        if not _PHONE.match(digits):
            raise custom_error("venue.error.phone")
        return digits

    @model_validator(mode="after")
    def _pair(self) -> Self:
        check_coordinate_pair(self.lat, self.lon)
        return self


class Venue(BaseModel):
    """A registered venue: its checkpoint, what its manager registered, its scanning device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    category: VenueCategory
    address: str
    ward_code: int
    ward_name: str
    province_code: int
    province_name: str
    lat: float | None
    lon: float | None
    contact_name: str
    contact_phone: str
    device_id: str
    active: bool
    registered_by: int | None
    created_at: datetime

    @property
    def ward_label(self) -> str:
        """``"Phường Hoàn Kiếm, Thành phố Hà Nội"``."""
        return f"{self.ward_name}, {self.province_name}"


_ward = wards.alias("venue_ward")
# An alias: a scope's own subquery on ``wards`` (a province scope) must not be
# correlated with the ward joined here.
_VENUE_QUERY: Select[tuple[object, ...]] = (
    select(
        checkpoints.c.id,
        checkpoints.c.name,
        venues.c.category,
        venues.c.address,
        checkpoints.c.ward_code,
        _ward.c.name.label("ward_name"),
        _ward.c.province_code,
        _ward.c.province_name,
        checkpoints.c.lat,
        checkpoints.c.lon,
        venues.c.contact_name,
        venues.c.contact_phone,
        venues.c.device_id,
        checkpoints.c.active,
        venues.c.registered_by,
        venues.c.created_at,
    )
    .select_from(venues)
    .join(checkpoints, checkpoints.c.id == venues.c.checkpoint_id)
    .join(_ward, _ward.c.code == checkpoints.c.ward_code)
)


def get_venue(conn: Connection, *, venue_id: str) -> Venue | None:
    """The venue with this (checkpoint) id, or None."""
    row = conn.execute(_VENUE_QUERY.where(checkpoints.c.id == venue_id)).mappings().first()
    return None if row is None else Venue.model_validate(dict(row))


def list_venues(conn: Connection, *, scope: ColumnElement[bool] | None = None) -> list[Venue]:
    """Registered venues (only those ``scope``, a condition on ``checkpoints``, admits), by name."""
    query = _VENUE_QUERY.order_by(checkpoints.c.active.desc(), checkpoints.c.name, checkpoints.c.id)
    if scope is not None:
        query = query.where(scope)
    return [Venue.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def unregistered_venue_places(
    conn: Connection, *, scope: ColumnElement[bool] | None = None
) -> list[CheckpointPlace]:
    """Checkpoints of kind venue with no registration yet (made on the admin pages or by the
    demo), within ``scope``: their managers complete them with :func:`register_venue`."""
    condition = and_(
        checkpoints.c.kind == CheckpointKind.VENUE.value,
        ~exists().where(venues.c.checkpoint_id == checkpoints.c.id),
    )
    if scope is not None:
        condition = and_(condition, scope)
    return list(checkpoint_places(conn, scope=condition).values())


def venue_id_for(name: str) -> str:
    """A new venue id from its name: ``"Siêu thị Co.opmart"`` -> ``"sieu-thi-co-opmart-3fa9c1"``.

    Ids appear in MQTT topics and URLs: lowercase ASCII, digits and dashes; the
    random suffix keeps two "Chợ Bến Thành" apart.
    """
    slug = _SLUG_GAP.sub("-", fold(name)).strip("-")[:MAX_SLUG].strip("-") or "venue"
    return f"{slug}-{secrets.token_hex(3)}"


def _problems_of(conn: Connection, details: VenueDetails) -> list[Problem]:
    if get_ward(conn, code=details.ward_code) is None:
        return [Problem("ward_code", "error.unknown_ward", {"code": details.ward_code})]
    return []


def _adoptable(conn: Connection, checkpoint_id: str) -> list[Problem]:
    row = conn.execute(select(checkpoints.c.kind).where(checkpoints.c.id == checkpoint_id)).first()
    if row is None or row.kind != CheckpointKind.VENUE.value:
        return [Problem("checkpoint_id", "venue.error.not_a_venue", {"id": checkpoint_id})]
    taken = conn.execute(
        select(exists().where(venues.c.checkpoint_id == checkpoint_id))
    ).scalar_one()
    if taken:
        return [Problem("checkpoint_id", "venue.error.already_registered", {"id": checkpoint_id})]
    return []


def _free_id(conn: Connection, name: str) -> str:
    for _ in range(8):
        candidate = venue_id_for(name)
        taken = conn.execute(
            select(
                exists().where(checkpoints.c.id == candidate)
                | exists().where(devices.c.id == candidate + DEVICE_SUFFIX)
            )
        ).scalar_one()
        if not taken:
            return candidate
    raise RuntimeError("no free venue id after 8 draws")  # 24 random bits: never in practice


def grant_venue_scope(conn: Connection, *, officer_id: int, venue_id: str) -> bool:
    """Give the account a checkpoint scope on the venue; False when it already had it."""
    held = conn.execute(
        select(
            exists().where(
                officer_scopes.c.officer_id == officer_id,
                officer_scopes.c.scope_kind == ScopeKind.CHECKPOINT.value,
                officer_scopes.c.scope_value == venue_id,
            )
        )
    ).scalar_one()
    if held:
        return False
    conn.execute(
        insert(officer_scopes).values(
            officer_id=officer_id, scope_kind=ScopeKind.CHECKPOINT.value, scope_value=venue_id
        )
    )
    return True


def find_manager(conn: Connection, *, username: str) -> int | None:
    """The id of the active venue manager account ``username``, or None."""
    found = conn.execute(
        select(officers.c.id).where(
            officers.c.username == username.strip().lower(),
            officers.c.role == Role.VENUE_MANAGER.value,
            officers.c.active.is_(True),
        )
    ).scalar_one_or_none()
    return None if found is None else int(found)


def register_venue(
    conn: Connection,
    *,
    details: VenueDetails,
    officer: Officer,
    manager_id: int | None = None,
    checkpoint_id: str | None = None,
    ip: str | None = None,
) -> Venue:
    """Register a venue: its checkpoint (kind venue), its virtual device and its details.

    ``checkpoint_id`` completes an existing venue checkpoint that has no
    registration yet (its name, ward and coordinates are replaced by
    ``details``); otherwise a new id is made from the name. The registering
    officer gets a checkpoint scope on the venue unless they see every place
    already, and so does the venue manager ``manager_id`` when given (an
    administrator registering for a manager). Recorded in the audit log.

    Raises :class:`ProblemError` (unknown ward, a checkpoint that is not a
    venue or is registered already) and writes nothing then.
    """
    problems = _problems_of(conn, details)
    if checkpoint_id is not None:
        problems += _adoptable(conn, checkpoint_id)
    if problems:
        raise ProblemError(problems)
    place = {
        "name": details.name,
        "ward_code": details.ward_code,
        "lat": details.lat,
        "lon": details.lon,
    }
    if checkpoint_id is None:
        venue_id = _free_id(conn, details.name)
        conn.execute(
            insert(checkpoints).values(
                id=venue_id, kind=CheckpointKind.VENUE.value, active=True, **place
            )
        )
    else:
        venue_id = checkpoint_id
        conn.execute(update(checkpoints).where(checkpoints.c.id == venue_id).values(**place))
    device_id = venue_id[: 64 - len(DEVICE_SUFFIX)] + DEVICE_SUFFIX
    conn.execute(
        insert(devices).values(
            id=device_id,
            checkpoint_id=venue_id,
            lane=0,
            direction=DeviceDirection.IN.value,
            mqtt_username=device_id,
            mqtt_password_hash=NO_BROKER_LOGIN,
        )
    )
    conn.execute(
        insert(venues).values(
            checkpoint_id=venue_id,
            category=details.category.value,
            address=details.address,
            contact_name=details.contact_name,
            contact_phone=details.contact_phone,
            device_id=device_id,
            registered_by=officer.id,
        )
    )
    if not officer.unrestricted:
        grant_venue_scope(conn, officer_id=officer.id, venue_id=venue_id)
    if manager_id is not None:
        grant_venue_scope(conn, officer_id=manager_id, venue_id=venue_id)
    record_action(
        conn,
        officer=officer,
        action="venue.register",
        subject=f"checkpoint:{venue_id}",
        detail={
            "name": details.name,
            "category": details.category.value,
            "ward_code": details.ward_code,
            "device_id": device_id,
            "manager_id": manager_id,
            "completed_existing": checkpoint_id is not None,
        },
        ip=ip,
    )
    venue = get_venue(conn, venue_id=venue_id)
    if venue is None:  # pragma: no cover - written above in this transaction
        raise RuntimeError(f"venue {venue_id} vanished")
    return venue


def set_venue_active(
    conn: Connection, *, venue_id: str, active: bool, officer: Officer, ip: str | None = None
) -> bool:
    """Open or close a venue for check-ins; False when it is not a registered venue.

    A closed venue keeps its passages (tracing still finds them); its check-in
    page refuses new scans until it is opened again.
    """
    registered = exists().where(venues.c.checkpoint_id == venue_id)
    result = conn.execute(
        update(checkpoints).where(checkpoints.c.id == venue_id, registered).values(active=active)
    )
    if not result.rowcount:
        return False
    record_action(
        conn,
        officer=officer,
        action="venue.activate" if active else "venue.deactivate",
        subject=f"checkpoint:{venue_id}",
        ip=ip,
    )
    return True


# --- passages at a venue ----------------------------------------------------------------


class StoredCheckIn(BaseModel):
    """A passage as stored (what a retried or repeated check-in answers with)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    device_id: str
    checkpoint_id: str
    seq: int
    seen_at: datetime
    verdict: Color
    reason: VerdictCode


_STORED = select(
    passages.c.event_id,
    passages.c.device_id,
    passages.c.checkpoint_id,
    passages.c.seq,
    passages.c.seen_at,
    passages.c.verdict,
    passages.c.reason,
)


def find_check_in(conn: Connection, *, event_id: UUID) -> StoredCheckIn | None:
    """The passage stored under ``event_id``, or None."""
    row = conn.execute(_STORED.where(passages.c.event_id == event_id)).mappings().first()
    return None if row is None else StoredCheckIn.model_validate(dict(row))


def recent_check_in(
    conn: Connection, *, checkpoint_id: str, declaration_id: int, since: datetime
) -> StoredCheckIn | None:
    """The latest passage of this declaration at this checkpoint since ``since``, or None.

    An index range on ``(checkpoint_id, seen_at)``: a few seconds of one venue.
    """
    query = (
        _STORED.where(
            passages.c.checkpoint_id == checkpoint_id,
            passages.c.seen_at >= since,
            passages.c.declaration_id == declaration_id,
        )
        .order_by(passages.c.seen_at.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else StoredCheckIn.model_validate(dict(row))


def next_seq(conn: Connection, *, device_id: str) -> int:
    """Draw the device's next sequence number (one atomic statement; the row is locked until
    the caller's transaction ends). ``LookupError`` for an unknown device."""
    drawn = conn.execute(
        update(devices)
        .where(devices.c.id == device_id)
        .values(last_seq=func.coalesce(devices.c.last_seq, 0) + 1)
        .returning(devices.c.last_seq)
    ).scalar_one_or_none()
    if drawn is None:
        raise LookupError(f"no device {device_id!r}")
    return int(drawn)


# What a venue's staff may be told: the colour, and the reason only when it is
# about the code itself (forged, expired...), never about the person's health —
# they are not health officers (the alert carries the reason to those who are).
DOOR_CODES = frozenset(
    {
        VerdictCode.FORGED,
        VerdictCode.MALFORMED,
        VerdictCode.EXPIRED,
        VerdictCode.NOT_YET_VALID,
        VerdictCode.UNKNOWN_DECLARATION,
        VerdictCode.UNKNOWN_CITIZEN,
    }
)


def door_code(reason: VerdictCode | str) -> VerdictCode | None:
    """The verdict's reason if a venue may see it (see :data:`DOOR_CODES`), else None."""
    code = VerdictCode(reason)
    return code if code in DOOR_CODES else None


class VenuePassage(BaseModel):
    """One check-in as the venue's manager sees it: when, the verdict, the visitor's initials.

    ``code`` is the reason only when it is about the code (:data:`DOOR_CODES`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    seq: int
    seen_at: datetime
    verdict: Color
    code: VerdictCode | None
    initials: str | None


@dataclass(frozen=True, slots=True)
class VenueDay:
    """A venue's check-ins of one Vietnam day, newest first (``truncated``: more than shown)."""

    day: date
    passages: list[VenuePassage]
    truncated: bool
    counts: dict[Color, int] = field(default_factory=dict)


FIRST_DAY = date(2020, 1, 1)
LAST_DAY = date(2099, 12, 31)


def day_window(day: date) -> tuple[datetime, datetime]:
    """A Vietnam calendar day as a UTC ``[start, end)``.

    ``ValueError`` outside :data:`FIRST_DAY`..:data:`LAST_DAY` (no passage can be there).
    """
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"day {day} outside {FIRST_DAY}..{LAST_DAY}")
    start = datetime.combine(day, datetime.min.time(), tzinfo=LOCAL_TZ)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def today() -> date:
    """Today in Vietnam."""
    return datetime.now(LOCAL_TZ).date()


def venue_day(
    conn: Connection, *, checkpoint_id: str, day: date, limit: int = MAX_PASSAGES
) -> VenueDay:
    """The venue's check-ins on ``day`` (Vietnam time), newest first, with counts by verdict.

    Personal data (the visitors' initials): the caller records the read.
    """
    since, until = day_window(day)
    in_day = and_(
        passages.c.checkpoint_id == checkpoint_id,
        passages.c.seen_at >= since,
        passages.c.seen_at < until,
    )
    query = (
        select(
            passages.c.event_id,
            passages.c.seq,
            passages.c.seen_at,
            passages.c.verdict,
            passages.c.reason,
            citizens.c.full_name,
        )
        .select_from(passages.outerjoin(citizens, citizens.c.id == passages.c.citizen_id))
        .where(in_day)
        .order_by(passages.c.seen_at.desc(), passages.c.event_id.desc())
        .limit(limit + 1)
    )
    rows = list(conn.execute(query).mappings())
    shown = [
        VenuePassage(
            event_id=r["event_id"],
            seq=r["seq"],
            seen_at=r["seen_at"],
            verdict=r["verdict"],
            code=door_code(r["reason"]),
            initials=initials(r["full_name"]) if r["full_name"] else None,
        )
        for r in rows[:limit]
    ]
    counted = conn.execute(
        select(passages.c.verdict, func.count()).where(in_day).group_by(passages.c.verdict)
    )
    counts = {Color(verdict): int(n) for verdict, n in counted}
    return VenueDay(day=day, passages=shown, truncated=len(rows) > limit, counts=counts)


# --- checking a visitor in --------------------------------------------------------------


class CheckInError(Exception):
    """A check-in refused before anything was stored; ``code`` says why (an i18n key suffix)."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


@dataclass(frozen=True, slots=True)
class CheckIn:
    """A check-in's outcome.

    ``duplicate``: this event id was stored already (a retried request);
    ``repeat``: the same pass was checked in here within the repeat window and
    that earlier check-in is what this one is. ``alerts`` are the alerts this
    check-in raised (none for a duplicate or a repeat).
    """

    event_id: UUID
    venue_id: str
    seq: int
    seen_at: datetime
    color: Color
    code: VerdictCode
    duplicate: bool = False
    repeat: bool = False
    alerts: list[RaisedAlert] = field(default_factory=list)

    @classmethod
    def stored(cls, found: StoredCheckIn, *, duplicate: bool = False, repeat: bool = False) -> Self:
        """The check-in a stored passage records."""
        return cls(
            event_id=found.event_id,
            venue_id=found.checkpoint_id,
            seq=found.seq,
            seen_at=found.seen_at,
            color=found.verdict,
            code=found.reason,
            duplicate=duplicate,
            repeat=repeat,
        )


def _retrying(action: Callable[[], T]) -> T:
    # The pipeline leaves "database locked / deadlock / connection lost" to its
    # caller; the work is idempotent on the event id, so it is simply run again.
    for attempt in range(STORE_ATTEMPTS):
        try:
            return action()
        except OperationalError as exc:
            if attempt == STORE_ATTEMPTS - 1:
                raise
            log.warning("venue check-in: database busy, retrying: %s", exc.orig)
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def check_in(
    engine: Engine,
    pipeline: IngestPipeline,
    *,
    venue: Venue,
    token: str,
    event_id: UUID | None = None,
    decoder: str = "manual",
    now: datetime | None = None,
    repeat_window_s: float = REPEAT_WINDOW_S,
) -> CheckIn:
    """Check a visitor's pass in at ``venue`` through the ingest pipeline.

    Raises :class:`CheckInError` (nothing stored) for a closed venue
    (``venue_inactive``), text that is not a pass code (``not_a_pass``: any QR
    can be held up to the camera, the venue's own poster included), or an
    event id stored for another device (``event_id_taken``); and when the
    pipeline set the scan aside (``refused``: the scan is kept in the dead
    letters with the reason).
    """
    now = now or datetime.now(UTC)
    text = token.strip()
    if not venue.active:
        raise CheckInError("venue_inactive")
    if not text.startswith(PREFIX) or len(text) > MAX_TOKEN_CHARS:
        raise CheckInError("not_a_pass")

    def earlier(conn: Connection) -> CheckIn | None:
        if event_id is not None:
            found = find_check_in(conn, event_id=event_id)
            if found is not None:
                if found.device_id != venue.device_id:
                    raise CheckInError("event_id_taken", str(event_id))
                return CheckIn.stored(found, duplicate=True)
        # The signature check is cached per token: the pipeline's own check below is free.
        verification = pipeline.verifier.verify(text, at=int(now.timestamp()))
        if is_authentic(verification) and verification.claims is not None:
            found = recent_check_in(
                conn,
                checkpoint_id=venue.id,
                declaration_id=verification.claims.declaration_id,
                since=now - timedelta(seconds=repeat_window_s),
            )
            if found is not None:
                return CheckIn.stored(found, repeat=True)
        return None

    with engine.connect() as conn:
        answered = earlier(conn)
    if answered is not None:
        return answered

    seq = in_transaction(engine, lambda conn: next_seq(conn, device_id=venue.device_id))
    event = ScanEvent(
        event_id=event_id or new_event_id(),
        device_id=venue.device_id,
        checkpoint_id=venue.id,
        lane=0,
        direction=Direction.IN,
        seq=seq,
        seen_at=now,
        token=text,
        decoder=decoder[:16],
        quality=1.0,
    )
    inbound = Inbound(scan_topic(venue.device_id), encode(event), now)
    prepared = assemble([pipeline.prepare_one(inbound)])
    outcome = _retrying(lambda: pipeline.store(prepared))
    if outcome.letters:
        letter = outcome.letters[0]
        raise CheckInError("refused", f"{letter.reason.value}: {letter.detail}")
    if outcome.result.stored:
        accepted = outcome.result.stored[0]
        return CheckIn(
            event_id=event.event_id,
            venue_id=venue.id,
            seq=seq,
            seen_at=now,
            color=accepted.decision.color,
            code=accepted.decision.code,
            alerts=list(outcome.result.alerts),
        )
    # Stored meanwhile by a concurrent request with the same event id.
    with engine.connect() as conn:
        found = find_check_in(conn, event_id=event.event_id)
    if found is None or found.device_id != venue.device_id:
        raise CheckInError("event_id_taken", str(event.event_id))
    return CheckIn.stored(found, duplicate=True)
