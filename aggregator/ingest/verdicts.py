"""The verdict on one passage: a pure function of the token check, the registry and the time.

Precedence, most serious first:

1. A code that is not an authentic pass: unreadable (``malformed``, no alert:
   any QR code can be held up to a camera) or forged (bad signature or a key
   we do not hold: ``forged`` alert).
2. An authentic pass the registry does not know (``unknown_declaration``,
   ``unknown_citizen`` alert: a signed code nobody can place on a person).
3. The person's registry status: F0, F1 and a deceased person's identity stop
   the passage (red, with an alert) whatever the pass's dates say.
4. The declaration was revoked before the code was seen (red, alert).
5. The pass's validity window, from the token and from the registry's expiry
   (``expired`` with an alert; ``not_yet_valid`` without one).
6. Otherwise the person passes: F2 yellow, recovered green, and everyone else
   by vaccination (two doses green, fewer yellow).

Wards are told about every passage of an authentic, known declaration: the
ward of origin (departure) and of destination (arrival); a flagged person's
passage also goes to their ward of temporary residence (alert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aggregator.db.schema import HealthStatus, NotificationKind
from contract.messages import AlertKind, Color, VerdictCode
from contract.token import Reason, Verification

FULLY_VACCINATED_DOSES = 2

# Token refusals that leave the signature proven: the claims can be trusted.
_AUTHENTIC = frozenset({Reason.OK, Reason.EXPIRED, Reason.NOT_YET_VALID, Reason.REVOKED})
_FORGED = frozenset({Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY})
# Alerts about the person (not the code): their ward of temporary residence is told too.
_PERSON_ALERTS = frozenset({AlertKind.F0, AlertKind.F1, AlertKind.DECEASED_IDENTITY})
_FLAGGED: dict[HealthStatus, tuple[VerdictCode, AlertKind]] = {
    HealthStatus.F0: (VerdictCode.F0, AlertKind.F0),
    HealthStatus.F1: (VerdictCode.F1, AlertKind.F1),
    HealthStatus.DECEASED: (VerdictCode.DECEASED_IDENTITY, AlertKind.DECEASED_IDENTITY),
}


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    """What the registry says about a declaration and the citizen who filed it."""

    declaration_id: int
    citizen_id: int
    health_status: HealthStatus
    vaccine_doses: int
    origin_ward_code: int | None
    destination_ward_code: int | None
    temporary_ward_code: int | None
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Notify:
    """One ward notification to write."""

    ward_code: int
    kind: NotificationKind


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict and every side effect it implies."""

    color: Color
    code: VerdictCode
    vaccine_doses: int | None = None
    alert: AlertKind | None = None
    citizen_id: int | None = None
    health_status: HealthStatus | None = None
    notifications: tuple[Notify, ...] = ()

    @property
    def flagged(self) -> bool:
        """True when the passage raised an alert (counted in the rollups)."""
        return self.alert is not None


def is_authentic(verification: Verification) -> bool:
    """True when the token's signature held (its claims can be trusted)."""
    return verification.reason in _AUTHENTIC and verification.claims is not None


def _notifications(record: RegistryRecord, flagged: bool) -> tuple[Notify, ...]:
    found: list[Notify] = []
    if record.origin_ward_code is not None:
        found.append(Notify(record.origin_ward_code, NotificationKind.DEPARTURE))
    if record.destination_ward_code is not None:
        found.append(Notify(record.destination_ward_code, NotificationKind.ARRIVAL))
    if flagged and record.temporary_ward_code is not None:
        found.append(Notify(record.temporary_ward_code, NotificationKind.ALERT))
    return tuple(found)


def _known(
    record: RegistryRecord, color: Color, code: VerdictCode, alert: AlertKind | None = None
) -> Decision:
    return Decision(
        color,
        code,
        vaccine_doses=record.vaccine_doses,
        alert=alert,
        citizen_id=record.citizen_id,
        health_status=record.health_status,
        notifications=_notifications(record, flagged=alert in _PERSON_ALERTS),
    )


def _by_vaccination(doses: int) -> Color:
    return Color.GREEN if doses >= FULLY_VACCINATED_DOSES else Color.YELLOW


def decide(
    verification: Verification, record: RegistryRecord | None, seen_at: datetime
) -> Decision:
    """The verdict on a passage seen at ``seen_at`` (aware).

    ``verification`` is the token check at ``seen_at`` (signature, key and
    validity window); ``record`` is the registry's entry for the token's
    declaration id, None when the registry does not know it (ignored unless
    the token is authentic).
    """
    reason = verification.reason
    if reason in _FORGED:
        return Decision(Color.INVALID, VerdictCode.FORGED, alert=AlertKind.FORGED)
    if not is_authentic(verification):
        return Decision(Color.INVALID, VerdictCode.MALFORMED)
    if record is None:
        return Decision(
            Color.INVALID, VerdictCode.UNKNOWN_DECLARATION, alert=AlertKind.UNKNOWN_CITIZEN
        )

    status = record.health_status
    if status in _FLAGGED:
        code, alert = _FLAGGED[status]
        return _known(record, Color.RED, code, alert)
    revoked = reason is Reason.REVOKED or (
        record.revoked_at is not None and record.revoked_at <= seen_at
    )
    if revoked:
        return _known(record, Color.RED, VerdictCode.REVOKED, AlertKind.REVOKED)
    if reason is Reason.EXPIRED or seen_at >= record.expires_at:
        return _known(record, Color.INVALID, VerdictCode.EXPIRED, AlertKind.EXPIRED)
    if reason is Reason.NOT_YET_VALID:
        return _known(record, Color.INVALID, VerdictCode.NOT_YET_VALID)
    if status is HealthStatus.F2:
        return _known(record, Color.YELLOW, VerdictCode.F2)
    if status is HealthStatus.F3:
        return _known(record, _by_vaccination(record.vaccine_doses), VerdictCode.F3)
    if status is HealthStatus.RECOVERED:
        return _known(record, Color.GREEN, VerdictCode.RECOVERED)
    return _known(record, _by_vaccination(record.vaccine_doses), VerdictCode.CLEAR)
