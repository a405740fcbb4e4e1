"""Alerts as officers see and handle them: reads, the live stream's replay, and actions.

Reads take an optional ``scope``, a condition on the ``checkpoints`` table
(an officer's ``checkpoint_filter()``), so an officer only ever lists the
alerts of checkpoints they may see. :func:`list_alerts` and
:func:`get_alert` return personal data (the person and the declaration the
scanned pass belongs to): callers record the read in the audit log.
:func:`alert_heads` and :func:`action_updates` return none (ids, kinds,
statuses, times) and feed the live stream.

Life cycle (:func:`next_status`): ``open`` -> ``acknowledged`` by
*acknowledge* (seen) or *confirm* (identity checked against the card: the
alert is real) -> ``resolved`` by *resolve* (with a note saying what was
done) or *false_read* (the alert was wrong: misread code, another person's
pass). A resolved alert takes no more actions. Each action is a row of
``alert_actions`` with the officer, and the status change is a conditional
update, so two officers acting at once cannot both move the same alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Connection, RowMapping, Select, exists, func, or_, select

from aggregator.db.people import (
    DECLARATION_COLUMNS,
    DeclarationView,
    PersonView,
    declaration_view,
    person_view,
    ward_labels,
)
from aggregator.db.registry import Citizen
from aggregator.db.schema import (
    AlertStatus,
    HealthStatus,
    alert_actions,
    alerts,
    checkpoints,
    citizens,
    declarations,
    officers,
    passage_crops,
    passages,
)
from contract.messages import AlertKind, Color, Direction, VerdictCode

MAX_NOTE_CHARS = 2000
MAX_LIST = 200


class AlertAction(StrEnum):
    """What an officer does with an alert."""

    ACKNOWLEDGE = "acknowledge"
    CONFIRM = "confirm"
    RESOLVE = "resolve"
    FALSE_READ = "false_read"


_ALLOWED_FROM: dict[AlertAction, frozenset[AlertStatus]] = {
    AlertAction.ACKNOWLEDGE: frozenset({AlertStatus.OPEN}),
    AlertAction.CONFIRM: frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
    AlertAction.RESOLVE: frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
    AlertAction.FALSE_READ: frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
}
_RESULT: dict[AlertAction, AlertStatus] = {
    AlertAction.ACKNOWLEDGE: AlertStatus.ACKNOWLEDGED,
    AlertAction.CONFIRM: AlertStatus.ACKNOWLEDGED,
    AlertAction.RESOLVE: AlertStatus.RESOLVED,
    AlertAction.FALSE_READ: AlertStatus.RESOLVED,
}
UNRESOLVED = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class AlertNotFoundError(LookupError):
    """No alert has this id."""


class AlertStateError(ValueError):
    """The action does not apply to the alert in its current status."""

    def __init__(self, action: AlertAction, status: AlertStatus) -> None:
        super().__init__(
            f"Không thể '{action.value}' cảnh báo đang ở trạng thái '{status.value}' / "
            f"cannot {action.value} an alert that is {status.value}"
        )
        self.action = action
        self.status = status


def next_status(current: AlertStatus, action: AlertAction) -> AlertStatus:
    """The status ``action`` moves an alert to; :class:`AlertStateError` if it does not apply."""
    if current not in _ALLOWED_FROM[action]:
        raise AlertStateError(action, current)
    return _RESULT[action]


def check_note(action: AlertAction, note: str | None) -> str | None:
    """The note, stripped (None if empty); a resolution needs one. Raises ``ValueError``."""
    text = (note or "").strip() or None
    if text is not None and len(text) > MAX_NOTE_CHARS:
        raise ValueError(
            f"Ghi chú quá dài ({len(text)} ký tự, tối đa {MAX_NOTE_CHARS}) / "
            f"note too long ({len(text)} characters, at most {MAX_NOTE_CHARS})"
        )
    if action is AlertAction.RESOLVE and text is None:
        raise ValueError(
            "Cần ghi chú khi xử lý xong cảnh báo / resolving an alert needs a note "
            "saying what was done"
        )
    return text


# --- read models ---------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OfficerRef(_View):
    """An officer named on an alert."""

    id: int
    full_name: str


class ActionView(_View):
    """One recorded action on an alert."""

    action: AlertAction
    note: str | None
    at: datetime
    officer: OfficerRef | None


class AlertHead(_View):
    """An alert without personal data: what the live stream carries."""

    id: int
    kind: AlertKind
    status: AlertStatus
    checkpoint_id: str
    device_id: str | None
    created_at: datetime


class AlertUpdate(_View):
    """An action taken on an alert (by any officer, in any web process)."""

    action_id: int
    alert_id: int
    checkpoint_id: str
    action: AlertAction
    status: AlertStatus
    at: datetime


class AlertView(_View):
    """An alert with the passage, the person and the declaration to compare with the card."""

    id: int
    kind: AlertKind
    status: AlertStatus
    checkpoint_id: str
    checkpoint_name: str
    device_id: str | None
    direction: Direction | None
    lane: int | None
    seen_at: datetime | None
    created_at: datetime
    verdict: Color | None
    code: VerdictCode | None
    # The person's status when the alert was raised (the registry may have changed since).
    health_status_at_alert: HealthStatus | None
    claimed_declaration_id: int | None
    has_crop: bool
    acknowledged_at: datetime | None
    acknowledged_by: OfficerRef | None
    resolved_at: datetime | None
    resolved_by: OfficerRef | None
    person: PersonView | None
    declaration: DeclarationView | None
    actions: list[ActionView]


class AlertState(_View):
    """An alert's status after an action."""

    id: int
    status: AlertStatus
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    action: ActionView


# --- reads -------------------------------------------------------------------------


class _Row(BaseModel):
    """One row of :data:`_ALERT_QUERY`, typed."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: AlertKind
    status: AlertStatus
    checkpoint_id: str
    checkpoint_name: str
    device_id: str | None
    direction: Direction | None
    lane: int | None
    seen_at: datetime | None
    declaration_id: int | None
    created_at: datetime
    citizen_id: int | None
    health_status: HealthStatus | None
    detail: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    resolved_at: datetime | None
    resolved_by: int | None
    has_crop: bool


_HAS_CROP = exists().where(passage_crops.c.event_id == alerts.c.event_id)

_ALERT_QUERY = select(
    alerts.c.id,
    alerts.c.kind,
    alerts.c.status,
    alerts.c.checkpoint_id,
    checkpoints.c.name.label("checkpoint_name"),
    passages.c.device_id,
    passages.c.direction,
    passages.c.lane,
    passages.c.seen_at,
    passages.c.declaration_id,
    alerts.c.created_at,
    alerts.c.citizen_id,
    alerts.c.health_status,
    alerts.c.detail,
    alerts.c.acknowledged_at,
    alerts.c.acknowledged_by,
    alerts.c.resolved_at,
    alerts.c.resolved_by,
    _HAS_CROP.label("has_crop"),
).select_from(
    alerts.join(checkpoints, alerts.c.checkpoint_id == checkpoints.c.id).outerjoin(
        passages, alerts.c.event_id == passages.c.event_id
    )
)

_CITIZEN_FIELDS = tuple(Citizen.model_fields)


def _scoped(query: Select[Any], scope: ColumnElement[bool] | None) -> Select[Any]:
    if scope is None:
        return query
    # Not correlated: the listing query joins checkpoints too, and the scope
    # must be judged on its own rows.
    visible = select(checkpoints.c.id).where(scope).correlate(None)
    return query.where(alerts.c.checkpoint_id.in_(visible))


def _officer_refs(conn: Connection, ids: set[int]) -> dict[int, OfficerRef]:
    if not ids:
        return {}
    rows = conn.execute(
        select(officers.c.id, officers.c.full_name).where(officers.c.id.in_(sorted(ids)))
    )
    return {row.id: OfficerRef(id=row.id, full_name=row.full_name) for row in rows}


def _actions(conn: Connection, alert_ids: Sequence[int]) -> dict[int, list[ActionView]]:
    found: dict[int, list[ActionView]] = {i: [] for i in alert_ids}
    if not alert_ids:
        return found
    rows = conn.execute(
        select(
            alert_actions.c.alert_id,
            alert_actions.c.action,
            alert_actions.c.note,
            alert_actions.c.at,
            officers.c.id.label("officer_id"),
            officers.c.full_name,
        )
        .select_from(alert_actions.outerjoin(officers, alert_actions.c.officer_id == officers.c.id))
        .where(alert_actions.c.alert_id.in_(list(alert_ids)))
        .order_by(alert_actions.c.alert_id, alert_actions.c.at, alert_actions.c.id)
    )
    for row in rows:
        officer = None
        if row.officer_id is not None:
            officer = OfficerRef(id=row.officer_id, full_name=row.full_name)
        found[row.alert_id].append(
            ActionView(action=row.action, note=row.note, at=row.at, officer=officer)
        )
    return found


def _citizens(conn: Connection, ids: set[int]) -> dict[int, Citizen]:
    if not ids:
        return {}
    query = select(*(citizens.c[f] for f in _CITIZEN_FIELDS)).where(citizens.c.id.in_(sorted(ids)))
    return {row["id"]: Citizen.model_validate(dict(row)) for row in conn.execute(query).mappings()}


def _declarations(conn: Connection, ids: set[int]) -> dict[int, RowMapping]:
    if not ids:
        return {}
    query = select(*DECLARATION_COLUMNS).where(declarations.c.id.in_(sorted(ids)))
    return {row["id"]: row for row in conn.execute(query).mappings()}


def _views(conn: Connection, rows: Sequence[_Row]) -> list[AlertView]:
    """Alert rows as views; people, declarations, wards and officers are loaded in bulk."""
    people = _citizens(conn, {r.citizen_id for r in rows if r.citizen_id is not None})
    # Only a declaration of the alert's own citizen is shown: a forged code
    # may claim anyone's declaration id.
    declared = _declarations(
        conn, {r.declaration_id for r in rows if r.declaration_id and r.citizen_id}
    )
    codes: set[int | None] = set()
    for citizen in people.values():
        codes |= {citizen.permanent_ward_code, citizen.temporary_ward_code}
    for d in declared.values():
        codes |= {d["origin_ward_code"], d["destination_ward_code"]}
    labels = ward_labels(conn, codes=codes)
    refs = _officer_refs(
        conn,
        {v for r in rows for v in (r.acknowledged_by, r.resolved_by) if v is not None},
    )
    actions = _actions(conn, [r.id for r in rows])
    views = []
    for r in rows:
        citizen = people.get(r.citizen_id) if r.citizen_id is not None else None
        d = declared.get(r.declaration_id) if r.declaration_id is not None else None
        if d is not None and (citizen is None or d["citizen_id"] != citizen.id):
            d = None
        views.append(
            AlertView(
                id=r.id,
                kind=r.kind,
                status=r.status,
                checkpoint_id=r.checkpoint_id,
                checkpoint_name=r.checkpoint_name,
                device_id=r.device_id or r.detail.get("device_id"),
                direction=r.direction,
                lane=r.lane,
                seen_at=r.seen_at,
                created_at=r.created_at,
                verdict=r.detail.get("verdict"),
                code=r.detail.get("code"),
                health_status_at_alert=r.health_status,
                claimed_declaration_id=r.declaration_id or r.detail.get("declaration_id"),
                has_crop=r.has_crop,
                acknowledged_at=r.acknowledged_at,
                acknowledged_by=refs.get(r.acknowledged_by) if r.acknowledged_by else None,
                resolved_at=r.resolved_at,
                resolved_by=refs.get(r.resolved_by) if r.resolved_by else None,
                person=person_view(citizen, labels) if citizen is not None else None,
                declaration=declaration_view(d, labels) if d is not None else None,
                actions=actions[r.id],
            )
        )
    return views


def _rows(conn: Connection, query: Select[Any]) -> list[_Row]:
    return [_Row.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def list_alerts(
    conn: Connection,
    *,
    scope: ColumnElement[bool] | None,
    checkpoint_id: str | None = None,
    statuses: Sequence[AlertStatus] | None = None,
    kinds: Sequence[AlertKind] | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AlertView]:
    """Alerts newest first, within ``scope`` and the filters; page with ``before_id``."""
    if not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be 1..{MAX_LIST}: {limit}")
    query = _scoped(_ALERT_QUERY, scope)
    if checkpoint_id is not None:
        query = query.where(alerts.c.checkpoint_id == checkpoint_id)
    if statuses:
        query = query.where(alerts.c.status.in_([AlertStatus(s).value for s in statuses]))
    if kinds:
        query = query.where(alerts.c.kind.in_([AlertKind(k).value for k in kinds]))
    if before_id is not None:
        query = query.where(alerts.c.id < before_id)
    return _views(conn, _rows(conn, query.order_by(alerts.c.id.desc()).limit(limit)))


def get_alert(conn: Connection, *, alert_id: int) -> AlertView | None:
    """One alert with its person, declaration and actions, or None."""
    rows = _rows(conn, _ALERT_QUERY.where(alerts.c.id == alert_id))
    return _views(conn, rows)[0] if rows else None


def alert_checkpoint(conn: Connection, *, alert_id: int) -> str | None:
    """The checkpoint an alert was raised at (None for an unknown alert): for scope checks."""
    return conn.execute(
        select(alerts.c.checkpoint_id).where(alerts.c.id == alert_id)
    ).scalar_one_or_none()


def alert_crop(conn: Connection, *, alert_id: int) -> bytes | None:
    """The JPEG crop of the code's region in the alert's passage, or None."""
    query = (
        select(passage_crops.c.jpeg)
        .select_from(alerts.join(passage_crops, alerts.c.event_id == passage_crops.c.event_id))
        .where(alerts.c.id == alert_id)
    )
    jpeg = conn.execute(query).scalar_one_or_none()
    return None if jpeg is None else bytes(jpeg)


_HEAD_QUERY = select(
    alerts.c.id,
    alerts.c.kind,
    alerts.c.status,
    alerts.c.checkpoint_id,
    passages.c.device_id,
    alerts.c.created_at,
).select_from(alerts.outerjoin(passages, alerts.c.event_id == passages.c.event_id))


def alert_heads(
    conn: Connection,
    *,
    after_id: int,
    since: datetime | None = None,
    scope: ColumnElement[bool] | None,
    checkpoint_id: str | None = None,
    limit: int = 500,
) -> list[AlertHead]:
    """Alerts with an id above ``after_id`` (or created at or after ``since``), oldest first.

    What a reconnecting monitor missed. ``since`` covers alerts committed out
    of id order: with several aggregators on PostgreSQL, an id drawn earlier
    can commit after a later one, so "id above the last seen" alone could
    skip it; the client ignores ids it already shows.
    """
    condition = alerts.c.id > after_id
    if since is not None:
        condition = or_(condition, alerts.c.created_at >= since)
    query = _scoped(_HEAD_QUERY, scope).where(condition)
    if checkpoint_id is not None:
        query = query.where(alerts.c.checkpoint_id == checkpoint_id)
    rows = conn.execute(query.order_by(alerts.c.id).limit(limit)).mappings()
    return [AlertHead.model_validate(dict(row)) for row in rows]


def unresolved_heads(conn: Connection, *, checkpoint_id: str, limit: int = 50) -> list[AlertHead]:
    """A checkpoint's open and acknowledged alerts, newest first (no personal data)."""
    query = (
        _HEAD_QUERY.where(
            alerts.c.checkpoint_id == checkpoint_id,
            alerts.c.status.in_([s.value for s in UNRESOLVED]),
        )
        .order_by(alerts.c.id.desc())
        .limit(limit)
    )
    return [AlertHead.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def max_alert_id(conn: Connection) -> int:
    """The highest alert id (0 when none): where a live stream starts."""
    return int(conn.execute(select(func.coalesce(func.max(alerts.c.id), 0))).scalar_one())


def last_action_id(conn: Connection) -> int:
    """The highest ``alert_actions`` id (0 when none): where :func:`action_updates` starts."""
    return int(conn.execute(select(func.coalesce(func.max(alert_actions.c.id), 0))).scalar_one())


def action_updates(conn: Connection, *, after_id: int, limit: int = 500) -> list[AlertUpdate]:
    """Actions recorded after ``after_id``, oldest first, with the alert's status now."""
    query = (
        select(
            alert_actions.c.id.label("action_id"),
            alerts.c.id.label("alert_id"),
            alerts.c.checkpoint_id,
            alert_actions.c.action,
            alerts.c.status,
            alert_actions.c.at,
        )
        .select_from(alert_actions.join(alerts, alert_actions.c.alert_id == alerts.c.id))
        .where(alert_actions.c.id > after_id)
        .order_by(alert_actions.c.id)
        .limit(limit)
    )
    return [AlertUpdate.model_validate(dict(row)) for row in conn.execute(query).mappings()]


@dataclass(frozen=True, slots=True)
class OpenCount:
    """Unresolved alerts of one kind and status at one checkpoint."""

    checkpoint_id: str
    kind: AlertKind
    status: AlertStatus
    count: int


def unresolved_counts(
    conn: Connection, *, scope: ColumnElement[bool] | None, checkpoint_id: str | None = None
) -> list[OpenCount]:
    """How many alerts are open or acknowledged, per checkpoint, kind and status."""
    query = _scoped(
        select(alerts.c.checkpoint_id, alerts.c.kind, alerts.c.status, func.count()).where(
            alerts.c.status.in_([s.value for s in UNRESOLVED])
        ),
        scope,
    )
    if checkpoint_id is not None:
        query = query.where(alerts.c.checkpoint_id == checkpoint_id)
    query = query.group_by(alerts.c.checkpoint_id, alerts.c.kind, alerts.c.status)
    return [
        OpenCount(row[0], AlertKind(row[1]), AlertStatus(row[2]), int(row[3]))
        for row in conn.execute(query)
        if row[0] is not None
    ]


# --- actions -----------------------------------------------------------------------


def act_on_alert(
    conn: Connection,
    *,
    alert_id: int,
    action: AlertAction,
    officer_id: int,
    note: str | None,
    at: datetime,
) -> AlertState:
    """Record ``action`` by ``officer_id`` and move the alert on (inside the caller's transaction).

    Raises :class:`AlertNotFoundError`, :class:`AlertStateError` (the alert's
    status does not admit the action, e.g. already resolved by someone else)
    or ``ValueError`` (a resolution without a note, a note too long).
    """
    action = AlertAction(action)
    text = check_note(action, note)
    target = _RESULT[action]
    allowed = [s.value for s in _ALLOWED_FROM[action]]
    values: dict[str, Any] = {"status": target.value}
    if target is AlertStatus.ACKNOWLEDGED or action is AlertAction.CONFIRM:
        # The first officer to see it stays recorded as such.
        values["acknowledged_at"] = func.coalesce(alerts.c.acknowledged_at, at)
        values["acknowledged_by"] = func.coalesce(alerts.c.acknowledged_by, officer_id)
    if target is AlertStatus.RESOLVED:
        values["resolved_at"] = at
        values["resolved_by"] = officer_id
    updated = conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id, alerts.c.status.in_(allowed))
        .values(**values)
        .returning(alerts.c.status, alerts.c.acknowledged_at, alerts.c.resolved_at)
    ).first()
    if updated is None:
        current = conn.execute(
            select(alerts.c.status).where(alerts.c.id == alert_id)
        ).scalar_one_or_none()
        if current is None:
            raise AlertNotFoundError(f"Không có cảnh báo / no alert with id {alert_id}")
        raise AlertStateError(action, AlertStatus(current))
    conn.execute(
        alert_actions.insert().values(
            alert_id=alert_id, officer_id=officer_id, action=action.value, note=text, at=at
        )
    )
    name = conn.execute(
        select(officers.c.full_name).where(officers.c.id == officer_id)
    ).scalar_one_or_none()
    return AlertState(
        id=alert_id,
        status=AlertStatus(updated.status),
        acknowledged_at=updated.acknowledged_at,
        resolved_at=updated.resolved_at,
        action=ActionView(
            action=action,
            note=text,
            at=at,
            officer=OfficerRef(id=officer_id, full_name=name) if name is not None else None,
        ),
    )
