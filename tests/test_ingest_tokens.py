"""Token checks on the ingest path: the signature cache, the keyring generations, and the
rule that a signature checked elsewhere (the MQTT link child) is trusted only for the very
token, and only with the keyring in use."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine

from aggregator.ingest.consumer import ConsumerConfig, IngestConsumer
from aggregator.ingest.link import Delivery, _Checker
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.mqtt import MqttOptions
from aggregator.ingest.pipeline import IngestPipeline, Parsed
from aggregator.ingest.tokens import TokenVerifier, pack_check, unpack_check
from aggregator.ingest.validate import Inbound
from aggregator.timeseries import TimeSeriesWriter
from contract.ids import new_event_id
from contract.messages import ScanEvent, encode
from contract.token import (
    HOUR,
    Keyring,
    Reason,
    SigningKey,
    Verification,
    issue_token,
    keyring_json,
)
from contract.topics import scan_topic

NOW = int(datetime.now(UTC).timestamp()) // HOUR * HOUR


def token(key: SigningKey, declaration_id: int = 7, hours: int = 48) -> str:
    return issue_token(
        key, declaration_id=declaration_id, issued_at=NOW - HOUR, expires_at=NOW + hours * HOUR
    )


def test_signature_is_cached_and_the_window_judged_each_time(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    verifier = TokenVerifier(keyring, cache_size=10)
    tok = token(signing_key, hours=2)
    assert verifier.verify(tok, at=NOW).reason is Reason.OK
    assert verifier.verify(tok, at=NOW + 5 * HOUR).reason is Reason.EXPIRED  # same cached check
    assert verifier.verify(tok, at=NOW - 3 * HOUR).reason is Reason.NOT_YET_VALID
    stats = verifier.stats()
    assert (stats.misses, stats.hits, stats.size) == (1, 2, 1)
    base = verifier.signature(tok)
    assert base.reason is Reason.OK and base.claims is not None
    assert verifier.judge(base, at=NOW + 5 * HOUR).reason is Reason.EXPIRED


def test_the_cache_is_bounded_and_dropped_with_the_keyring(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    verifier = TokenVerifier(keyring, cache_size=3)
    seen: list[int] = []
    verifier.on_replace(lambda _ring, generation: seen.append(generation))
    for i in range(5):
        verifier.signature(token(signing_key, declaration_id=100 + i))
    assert verifier.stats().size == 3
    assert verifier.generation == 0
    other = SigningKey.generate(kid=signing_key.kid + 1)
    verifier.replace_keyring(Keyring.from_keys([other.public()]))
    assert (verifier.generation, seen, verifier.stats().size) == (1, [1], 0)
    assert verifier.signature(token(signing_key)).reason is Reason.UNKNOWN_KEY


def test_packed_checks_round_trip(signing_key: SigningKey, keyring: Keyring) -> None:
    verifier = TokenVerifier(keyring)
    for tok in (token(signing_key), "KD1:NOT-A-PASS", "https://example.com/menu"):
        check = verifier.signature(tok)
        assert unpack_check(pack_check(check)) == check
        assert verifier.packed_signature(tok) == pack_check(check)


def inbound(tok: str) -> Inbound:
    event = ScanEvent(
        event_id=new_event_id(),
        device_id="gate-1",
        checkpoint_id="cp-1",
        lane=0,
        direction="in",
        seq=1,
        seen_at=datetime.now(UTC),
        token=tok,
        decoder="zxing",
        quality=0.9,
    )
    return Inbound(scan_topic("gate-1"), encode(event), datetime.now(UTC))


def test_a_check_made_elsewhere_counts_only_for_the_token_it_was_made_for(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    pipeline = IngestPipeline(create_engine("sqlite://"), TokenVerifier(keyring))
    genuine = token(signing_key)
    forged_key = SigningKey.generate(kid=signing_key.kid)  # same key id, other key
    forged = token(forged_key)
    claimed_ok = TokenVerifier(keyring).signature(genuine)  # as the link child made it
    # Told "authentic" for another token: the forged one is checked here, and refused.
    parsed = pipeline.prepare_one(inbound(forged), signed=(genuine, claimed_ok))
    assert isinstance(parsed, Parsed)
    assert parsed.verification.reason is Reason.BAD_SIGNATURE
    # For the very token, the check is used as given (only the window is judged here).
    told = Verification(Reason.OK, claimed_ok.claims)
    parsed = pipeline.prepare_one(inbound(genuine), signed=(genuine, told))
    assert isinstance(parsed, Parsed) and parsed.verification.reason is Reason.OK
    assert pipeline.verifier.stats().misses == 1  # only the forged token was checked here


def test_a_check_made_with_an_older_keyring_is_made_again(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    pipeline = IngestPipeline(create_engine("sqlite://"), TokenVerifier(keyring))
    consumer = IngestConsumer(
        MqttOptions("127.0.0.1", 1),
        ConsumerConfig(client_id="agg-test", mqtt_process=False),
        pipeline,
        metrics=IngestMetrics(),
        timeseries=TimeSeriesWriter(None),
    )
    genuine = token(signing_key)
    item = inbound(genuine)
    ok = pack_check(TokenVerifier(keyring).signature(genuine))
    before = pipeline.verifier.generation
    # The key is withdrawn: a pass it signed no longer counts as authentic.
    pipeline.verifier.replace_keyring(Keyring())
    now = pipeline.verifier.generation

    def prepared(generation: int) -> Reason:
        received = item.received_at.timestamp()
        message = Delivery(1, 1, item.topic, item.payload, received, 0, (genuine, generation, ok))
        _, parsed = consumer._prepare_one(message, now)
        assert isinstance(parsed, Parsed)
        return parsed.verification.reason

    assert prepared(before) is Reason.UNKNOWN_KEY  # checked again, with the keyring in use
    assert prepared(now) is Reason.OK  # made with the keyring in use: taken as it is


def test_the_link_child_checks_the_token_it_finds_and_says_with_which_keyring(
    signing_key: SigningKey, keyring: Keyring
) -> None:
    checker = _Checker(keyring_json(keyring.entries()), 5, 100)
    genuine = token(signing_key)
    item = inbound(genuine)
    assert checker.check(item.payload) == (
        genuine,
        5,
        pack_check(Verification(Reason.OK, TokenVerifier(keyring).signature(genuine).claims)),
    )
    # Nothing it cannot find plainly: the parent checks those itself.
    assert checker.check(b'{"token": "KD1:\\u0041BC"}') is None
    assert checker.check(b"not json at all") is None
    assert checker.check(b'{"token": "' + b"A" * 70_000 + b'"}') is None
    checker.replace(keyring_json([]), 6)
    assert checker.check(item.payload) == (
        genuine,
        6,
        (
            "unknown_key",
            f"kid {signing_key.kid}",
            pack_check(TokenVerifier(keyring).signature(genuine))[2],
        ),
    )
