"""The pure verdict function: every branch, and the precedence between them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.db.schema import HealthStatus, NotificationKind
from aggregator.ingest.verdicts import Decision, Notify, RegistryRecord, decide, is_authentic
from contract.messages import AlertKind, Color, VerdictCode
from contract.token import EPOCH, HOUR, PassClaims, Reason, Verification

SEEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ORIGIN, DESTINATION, TEMPORARY = 70, 26743, 4
CLAIMS = PassClaims(
    kid=1, declaration_id=123_456, issued_at=EPOCH + 100 * HOUR, expires_at=EPOCH + 200 * HOUR
)
OK = Verification(Reason.OK, CLAIMS)


def record(**changes: object) -> RegistryRecord:
    base = RegistryRecord(
        declaration_id=CLAIMS.declaration_id,
        citizen_id=42,
        health_status=HealthStatus.NONE,
        vaccine_doses=2,
        origin_ward_code=ORIGIN,
        destination_ward_code=DESTINATION,
        temporary_ward_code=None,
        expires_at=SEEN + timedelta(days=3),
        revoked_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


TRAVEL = (
    Notify(ORIGIN, NotificationKind.DEPARTURE),
    Notify(DESTINATION, NotificationKind.ARRIVAL),
)


@pytest.mark.parametrize(
    ("doses", "color"), [(0, Color.YELLOW), (1, Color.YELLOW), (2, Color.GREEN), (3, Color.GREEN)]
)
def test_clear_citizen_by_vaccination(doses: int, color: Color) -> None:
    decision = decide(OK, record(vaccine_doses=doses), SEEN)
    assert decision == Decision(
        color,
        VerdictCode.CLEAR,
        vaccine_doses=doses,
        citizen_id=42,
        health_status=HealthStatus.NONE,
        notifications=TRAVEL,
    )
    assert not decision.flagged


@pytest.mark.parametrize(
    ("status", "code", "alert"),
    [
        (HealthStatus.F0, VerdictCode.F0, AlertKind.F0),
        (HealthStatus.F1, VerdictCode.F1, AlertKind.F1),
        (HealthStatus.DECEASED, VerdictCode.DECEASED_IDENTITY, AlertKind.DECEASED_IDENTITY),
    ],
)
def test_flagged_people_are_stopped_and_their_residence_ward_told(
    status: HealthStatus, code: VerdictCode, alert: AlertKind
) -> None:
    decision = decide(OK, record(health_status=status, temporary_ward_code=TEMPORARY), SEEN)
    assert (decision.color, decision.code, decision.alert) == (Color.RED, code, alert)
    assert decision.flagged
    assert decision.health_status is status
    assert decision.notifications == (*TRAVEL, Notify(TEMPORARY, NotificationKind.ALERT))
    # Without a temporary residence only origin and destination are told.
    plain = decide(OK, record(health_status=status), SEEN)
    assert plain.notifications == TRAVEL


def test_flagged_status_outranks_every_pass_problem() -> None:
    revoked = record(health_status=HealthStatus.F0, revoked_at=SEEN - timedelta(hours=1))
    assert decide(OK, revoked, SEEN).code is VerdictCode.F0
    expired = Verification(Reason.EXPIRED, CLAIMS)
    assert decide(expired, record(health_status=HealthStatus.F1), SEEN).code is VerdictCode.F1


def test_f2_yellow_f3_by_vaccination_recovered_green() -> None:
    f2 = decide(OK, record(health_status=HealthStatus.F2), SEEN)
    assert (f2.color, f2.code, f2.alert) == (Color.YELLOW, VerdictCode.F2, None)
    f3 = decide(OK, record(health_status=HealthStatus.F3, vaccine_doses=2), SEEN)
    assert (f3.color, f3.code) == (Color.GREEN, VerdictCode.F3)
    f3_once = decide(OK, record(health_status=HealthStatus.F3, vaccine_doses=1), SEEN)
    assert (f3_once.color, f3_once.code) == (Color.YELLOW, VerdictCode.F3)
    recovered = decide(OK, record(health_status=HealthStatus.RECOVERED, vaccine_doses=0), SEEN)
    assert (recovered.color, recovered.code) == (Color.GREEN, VerdictCode.RECOVERED)
    for decision in (f2, f3, f3_once, recovered):
        assert decision.notifications == TRAVEL
        assert not decision.flagged


def test_revocation_counts_from_when_it_was_made() -> None:
    before = decide(OK, record(revoked_at=SEEN - timedelta(seconds=1)), SEEN)
    assert (before.color, before.code, before.alert) == (
        Color.RED,
        VerdictCode.REVOKED,
        AlertKind.REVOKED,
    )
    assert before.notifications == TRAVEL  # an alert about the pass, not the person
    # A backlog event seen before the revocation was a valid passage then.
    after = decide(OK, record(revoked_at=SEEN + timedelta(seconds=1)), SEEN)
    assert after.code is VerdictCode.CLEAR
    # A token check that already says revoked is honoured too.
    said = decide(Verification(Reason.REVOKED, CLAIMS), record(), SEEN)
    assert said.code is VerdictCode.REVOKED


def test_expiry_from_the_token_or_from_the_registry() -> None:
    by_token = decide(Verification(Reason.EXPIRED, CLAIMS), record(), SEEN)
    assert (by_token.color, by_token.code, by_token.alert) == (
        Color.INVALID,
        VerdictCode.EXPIRED,
        AlertKind.EXPIRED,
    )
    by_registry = decide(OK, record(expires_at=SEEN), SEEN)
    assert by_registry.code is VerdictCode.EXPIRED
    assert by_registry.citizen_id == 42


def test_not_yet_valid_is_refused_without_an_alert() -> None:
    decision = decide(Verification(Reason.NOT_YET_VALID, CLAIMS), record(), SEEN)
    assert (decision.color, decision.code, decision.alert) == (
        Color.INVALID,
        VerdictCode.NOT_YET_VALID,
        None,
    )


@pytest.mark.parametrize("reason", [Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY])
def test_forged_codes_raise_an_alert_and_never_touch_the_registry(reason: Reason) -> None:
    decision = decide(Verification(reason, CLAIMS), record(health_status=HealthStatus.F0), SEEN)
    assert decision == Decision(Color.INVALID, VerdictCode.FORGED, alert=AlertKind.FORGED)
    assert not is_authentic(Verification(reason, CLAIMS))


@pytest.mark.parametrize(
    "reason",
    [Reason.OVERSIZED, Reason.BAD_PREFIX, Reason.BAD_BASE45, Reason.BAD_CBOR, Reason.BAD_CLAIMS],
)
def test_unreadable_codes_are_malformed_without_alert(reason: Reason) -> None:
    decision = decide(Verification(reason), None, SEEN)
    assert decision == Decision(Color.INVALID, VerdictCode.MALFORMED)


def test_authentic_pass_unknown_to_the_registry() -> None:
    decision = decide(OK, None, SEEN)
    assert decision == Decision(
        Color.INVALID, VerdictCode.UNKNOWN_DECLARATION, alert=AlertKind.UNKNOWN_CITIZEN
    )
    assert is_authentic(OK)


def test_missing_wards_are_not_notified() -> None:
    decision = decide(OK, record(origin_ward_code=None, destination_ward_code=None), SEEN)
    assert decision.notifications == ()
