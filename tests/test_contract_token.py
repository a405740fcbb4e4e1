"""Pass tokens: committed vectors, size limits, key handling and fuzzing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import base45
import cbor2
import pytest
import segno
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.token import (
    EPOCH,
    HOUR,
    MAX_DECLARATION_ID,
    MAX_KID,
    PREFIX,
    Keyring,
    PublicKeyEntry,
    Reason,
    SigningKey,
    decode_token,
    issue_token,
    verify_token,
)
from contract.vectors import T0, build, vector_key

VECTORS = json.loads((Path(__file__).parent / "vectors" / "pass_tokens.json").read_text())
VECTOR_RING = Keyring([PublicKeyEntry(**entry) for entry in VECTORS["keyring"]])


@pytest.mark.parametrize("case", VECTORS["vectors"], ids=lambda c: c["name"])
def test_committed_vector(case: dict) -> None:
    result = verify_token(
        case["token"], VECTOR_RING, now=case["now"], revoked=frozenset(case["revoked"])
    )
    assert result.reason == Reason(case["expected"]), result.detail
    assert result.ok == (case["expected"] == "ok")


def test_vectors_file_is_what_the_generator_makes() -> None:
    # Ed25519 is deterministic: a change here means the token format changed.
    assert build() == VECTORS


def test_every_reason_has_a_vector_or_is_ok() -> None:
    covered = {case["expected"] for case in VECTORS["vectors"]}
    assert covered == {reason.value for reason in Reason}


def qr_of(token: str) -> segno.QRCode:
    return segno.make(token, error="m", boost_error=False, micro=False)


@pytest.mark.parametrize(
    ("kid", "declaration_id", "issued_at"),
    [
        (0, 1, EPOCH),
        (23, 4_000_000_001, T0),
        (MAX_KID, MAX_DECLARATION_ID, EPOCH + 65_000 * HOUR),  # worst case before mid-2032
    ],
)
def test_token_fits_qr_version_5_at_ecc_m(
    kid: int, declaration_id: int, issued_at: int, figures: Callable[[str], None]
) -> None:
    key = vector_key(kid)
    token = issue_token(
        key,
        declaration_id=declaration_id,
        issued_at=issued_at,
        expires_at=issued_at + 14 * 24 * HOUR,
    )
    qr = qr_of(token)
    figures(f"pass token kid={kid} id={declaration_id}: {len(token)} chars, QR {qr.designator}")
    assert qr.mode == "alphanumeric"
    assert qr.error == "M"
    assert qr.version <= 5
    assert verify_token(token, Keyring([key.public()]), now=issued_at + 60).ok


def test_claims_round_trip_to_the_hour(signing_key: SigningKey, keyring: Keyring) -> None:
    token = issue_token(
        signing_key, declaration_id=42, issued_at=T0 + 1799, expires_at=T0 + 2 * HOUR + 1
    )
    result = verify_token(token, keyring, now=T0 + 1800)
    assert result.ok
    assert result.claims is not None
    # the window only ever widens to whole hours
    assert (result.claims.issued_at, result.claims.expires_at) == (T0, T0 + 3 * HOUR)
    assert result.claims.declaration_id == 42
    assert decode_token(token) == result.claims


def test_leeway_tolerates_skew(signing_key: SigningKey, keyring: Keyring) -> None:
    token = issue_token(signing_key, declaration_id=3, issued_at=T0, expires_at=T0 + HOUR)
    assert verify_token(token, keyring, now=T0 + HOUR + 30).reason is Reason.EXPIRED
    assert verify_token(token, keyring, now=T0 + HOUR + 30, leeway_s=60).ok
    assert verify_token(token, keyring, now=T0 - 30, leeway_s=60).ok


def test_forged_code_is_reported_as_forged_even_if_revoked(keyring: Keyring) -> None:
    forged = issue_token(
        vector_key(1, "forger"), declaration_id=99, issued_at=T0, expires_at=T0 + HOUR
    )
    assert verify_token(forged, keyring, now=T0, revoked={99}).reason is Reason.BAD_SIGNATURE


def test_key_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    old, new = vector_key(1), vector_key(2)
    ring = Keyring([old.public()])
    old_token = issue_token(old, declaration_id=1, issued_at=T0, expires_at=T0 + 24 * HOUR)
    ring.add(new.public())
    ring.save(tmp_path / "keyring.json")
    loaded = Keyring.load(tmp_path / "keyring.json")
    new_token = issue_token(new, declaration_id=2, issued_at=T0, expires_at=T0 + 24 * HOUR)
    assert verify_token(old_token, loaded, now=T0).ok
    assert verify_token(new_token, loaded, now=T0).ok
    assert len(loaded) == 2


def test_signing_key_file_round_trip_and_is_private(tmp_path: Path) -> None:
    key = SigningKey.generate(7)
    path = tmp_path / "issuer.json"
    key.save(path)
    assert path.stat().st_mode & 0o077 == 0
    again = SigningKey.load(path)
    token = issue_token(again, declaration_id=5, issued_at=T0, expires_at=T0 + HOUR)
    assert verify_token(token, Keyring([key.public()]), now=T0).ok


@pytest.mark.parametrize(
    "body",
    [
        '{"format": "kiemdich-keyring/1", "keys": [], "extra": 1}',
        '{"format": "kiemdich-keyring/1", "keys": [{"kid": 999, "public_key": "AA"}]}',
        "not json",
    ],
)
def test_bad_keyring_file_is_a_clear_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(body)
    with pytest.raises(ValueError, match="invalid keyring"):
        Keyring.load(path)


def test_wrong_length_public_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring([PublicKeyEntry(kid=1, public_key="AAAA")])


@pytest.mark.parametrize("bad", [-1, MAX_KID + 1])
def test_kid_range(bad: int) -> None:
    with pytest.raises(ValueError):
        SigningKey.generate(bad)


def _signed(body: bytes) -> str:
    key = vector_key(1)
    return PREFIX + base45.b45encode(body + key.sign(PREFIX.encode() + body)).decode()


@pytest.mark.parametrize(
    "claims",
    [
        [1, 2, 3],
        [1, 2, 3, 4, 5],
        [True, 2, 3, 4],
        [1, "2", 3, 4],
        [1, 0, 3, 4],
        [1, 2**40, 3, 4],
        [300, 2, 3, 4],
        [1, 2, -3, 4],
        [1, 2, 3, 2**70],
        {"kid": 1},
    ],
)
def test_signed_but_malformed_claims_are_bad_claims(claims: object) -> None:
    result = verify_token(_signed(cbor2.dumps(claims)), VECTOR_RING, now=T0)
    assert result.reason is Reason.BAD_CLAIMS, result


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _never_raises_and_never_ok(token: str | bytes) -> None:
    result = verify_token(token, VECTOR_RING, now=T0)
    assert isinstance(result.reason, Reason)
    assert not result.ok
    assert result.reason is Reason.OK or result.reason.value in {r.value for r in Reason}


@FUZZ
@given(st.text(max_size=600))
def test_fuzz_any_text(text: str) -> None:
    _never_raises_and_never_ok(text)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_any_bytes(raw: bytes) -> None:
    _never_raises_and_never_ok(raw)


@FUZZ
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=300))
def test_fuzz_base45_alphabet_after_prefix(payload: str) -> None:
    _never_raises_and_never_ok(PREFIX + payload)


@FUZZ
@given(st.binary(min_size=0, max_size=200))
def test_fuzz_valid_base45_of_random_bytes(raw: bytes) -> None:
    _never_raises_and_never_ok(PREFIX + base45.b45encode(raw).decode())


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(), inner, max_size=5),
    max_leaves=12,
)


@FUZZ
@given(cbor_values, st.binary(min_size=64, max_size=64))
def test_fuzz_structured_cbor_with_signature_sized_tail(value: object, tail: bytes) -> None:
    _never_raises_and_never_ok(PREFIX + base45.b45encode(cbor2.dumps(value) + tail).decode())


@FUZZ
@given(st.integers(min_value=0, max_value=120), st.integers(min_value=0, max_value=255))
def test_fuzz_single_byte_corruption_of_a_valid_token(index: int, value: int) -> None:
    good = VECTORS["vectors"][0]["token"]
    raw = bytearray(base45.b45decode(good[len(PREFIX) :]))
    index %= len(raw)
    if raw[index] == value:
        return
    raw[index] = value
    _never_raises_and_never_ok(PREFIX + base45.b45encode(bytes(raw)).decode())
