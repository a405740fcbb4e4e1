"""Offline gate verdicts and the cached deny-list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.messages import Color, DenyEntry, DenyList, DenyReason, VerdictCode
from contract.token import Keyring, Reason, Verification, verify_token
from contract.vectors import vector_key
from edge.denylist import DenyListStore
from edge.verdict import local_verdict


def deny(revision: int, *entries: tuple[int, DenyReason]) -> DenyList:
    return DenyList(
        revision=revision,
        issued_at=datetime.now(UTC),
        entries=[DenyEntry(declaration_id=d, reason=r) for d, r in entries],
    )


def test_valid_code_is_green_offline(make_token, keyring: Keyring) -> None:
    result = verify_token(make_token(declaration_id=5), keyring)
    assert local_verdict(result, None).model_dump() == {
        "color": Color.GREEN,
        "code": VerdictCode.OFFLINE_VALID,
    }


@pytest.mark.parametrize(
    ("reason", "code"),
    [(DenyReason.F0, VerdictCode.F0), (DenyReason.REVOKED, VerdictCode.REVOKED)],
)
def test_denied_declaration_is_red(
    make_token, keyring: Keyring, reason: DenyReason, code: VerdictCode
) -> None:
    result = verify_token(make_token(declaration_id=5), keyring)
    verdict = local_verdict(result, reason)
    assert (verdict.color, verdict.code) == (Color.RED, code)


def test_forged_code_is_invalid_even_if_denied(make_token) -> None:
    other = Keyring([vector_key(1, "someone else").public()])
    result = verify_token(make_token(declaration_id=5), other)
    assert result.reason is Reason.BAD_SIGNATURE
    verdict = local_verdict(result, DenyReason.F0)
    assert (verdict.color, verdict.code) == (Color.INVALID, VerdictCode.FORGED)


def test_every_refusal_reason_has_a_verdict() -> None:
    for reason in Reason:
        if reason is not Reason.OK:
            assert local_verdict(Verification(reason), None).color in {Color.INVALID, Color.RED}


def test_denylist_keeps_highest_revision_and_survives_restart(tmp_path: Path) -> None:
    cache = tmp_path / "deny.json"
    store = DenyListStore(cache)
    assert store.revision is None
    assert store.apply(deny(2, (10, DenyReason.F0)))
    assert not store.apply(deny(1, (11, DenyReason.F0)))  # older: ignored
    assert store.reason_for(10) is DenyReason.F0
    assert store.reason_for(11) is None
    again = DenyListStore(cache)
    assert again.revision == 2
    assert again.reason_for(10) is DenyReason.F0


def test_damaged_cache_is_ignored_not_fatal(tmp_path: Path) -> None:
    cache = tmp_path / "deny.json"
    cache.write_text("{broken")
    store = DenyListStore(cache)
    assert store.revision is None
    assert store.apply(deny(1, (3, DenyReason.REVOKED)))
    assert DenyListStore(cache).reason_for(3) is DenyReason.REVOKED
