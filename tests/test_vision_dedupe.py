"""One car = one passage: the pure deduplicator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.token import MAX_TOKEN_CHARS
from edge.vision.dedupe import Deduper

A = "KD1:AAAA"
B = "KD1:BBBB"


def test_first_sighting_emitted_then_tracked() -> None:
    d = Deduper(window_s=10)
    first = d.observe(A, 100.0, quality=0.4, source="lane1")
    assert first is not None
    assert (first.token, first.first_seen, first.source, first.quality) == (A, 100.0, "lane1", 0.4)
    for i, q in enumerate([0.7, None, 0.5]):
        assert d.observe(A, 100.1 + i * 0.033, quality=q, source="lane1") is None
    track = d.track(A)
    assert track is not None
    assert track.frames_seen == 4 and track.best_quality == 0.7
    assert track.first_seen == 100.0 and track.last_seen == pytest.approx(100.166)
    assert (d.stats.passages, d.stats.repeats, d.stats.ignored) == (1, 3, 0)


def test_several_cameras_are_one_passage() -> None:
    d = Deduper(window_s=10)
    assert d.observe(A, 5.0, source="cam-east") is not None
    assert d.observe(A, 5.2, source="cam-west") is None
    track = d.track(A)
    assert track is not None and track.sources == {"cam-east", "cam-west"}


def test_window_slides_on_last_sighting() -> None:
    d = Deduper(window_s=30)
    # A car queued at the barrier, its code visible every 10 s for 2 minutes.
    emitted = [d.observe(A, float(t)) for t in range(0, 121, 10)]
    assert sum(e is not None for e in emitted) == 1
    # Gone for longer than the window: the next sighting is a new passage.
    assert d.observe(A, 151.5) is not None
    assert d.stats.passages == 2


def test_distinct_tokens_are_distinct_passages() -> None:
    d = Deduper(window_s=30)
    assert d.observe(A, 1.0) is not None
    assert d.observe(B, 1.0) is not None
    assert len(d) == 2


@pytest.mark.parametrize(
    ("text", "is_text"),
    [
        ("https://example.com/menu", True),
        ("kd1:lowercase", True),
        ("", True),
        ("KD1:" + "A" * MAX_TOKEN_CHARS, True),
        ("KD1:\\xff\\xfe", False),
    ],
    ids=["url", "lowercase-prefix", "empty", "oversized", "binary"],
)
def test_non_tokens_are_counted_and_never_emitted(text: str, is_text: bool) -> None:
    d = Deduper(window_s=30)
    for t in range(3):
        assert d.observe(text, float(t), is_text=is_text) is None
    assert d.stats.ignored == 3 and d.stats.passages == 0 and len(d) == 0


def test_expired_tracks_are_evicted_and_reported() -> None:
    d = Deduper(window_s=5)
    d.observe(A, 0.0)
    d.observe(A, 1.0)
    d.observe(B, 3.0)
    d.expire(6.5)
    assert d.track(A) is None and d.track(B) is not None
    closed = d.pop_closed()
    assert [(t.token, t.frames_seen) for t in closed] == [(A, 2)]
    assert d.pop_closed() == []
    d.expire(100.0)
    assert len(d) == 0 and [t.token for t in d.pop_closed()] == [B]


def test_memory_is_bounded() -> None:
    d = Deduper(window_s=3600, max_entries=16)
    for i in range(1000):
        assert d.observe(f"KD1:{i:06d}", float(i) / 100) is not None
        assert len(d) <= 16
    assert d.stats.evicted_for_space == 1000 - 16
    assert len(d.pop_closed()) == 16  # the closed log is bounded too
    # The most recent tokens are still tracked, the oldest are not.
    assert d.track("KD1:000999") is not None and d.track("KD1:000000") is None


def test_late_timestamp_from_another_camera_joins_the_passage() -> None:
    d = Deduper(window_s=10)
    d.observe(A, 50.0, source="cam1")
    assert d.observe(A, 49.8, source="cam2") is None
    track = d.track(A)
    assert track is not None and track.last_seen == 50.0 and track.frames_seen == 2


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="window_s"):
        Deduper(window_s=0)
    with pytest.raises(ValueError, match="max_entries"):
        Deduper(window_s=1, max_entries=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([A, B, "KD1:CCCC", "NOPE"]), st.floats(0, 20)),
        max_size=60,
    ),
    st.floats(0.5, 8),
)
def test_passages_match_a_reference_model(sightings, window) -> None:
    """Time-ordered sightings: one passage per token plus one per gap longer than the window."""
    sightings = sorted(sightings, key=lambda s: s[1])
    d = Deduper(window_s=window)
    emitted: dict[str, int] = {}
    for text, ts in sightings:
        if d.observe(text, ts) is not None:
            emitted[text] = emitted.get(text, 0) + 1
    expected: dict[str, int] = {}
    last: dict[str, float] = {}
    for text, ts in sightings:
        if not text.startswith("KD1:"):
            continue
        if text not in last or ts - last[text] > window:
            expected[text] = expected.get(text, 0) + 1
        last[text] = ts
    assert emitted == expected
    assert d.stats.ignored == sum(1 for t, _ in sightings if t == "NOPE")
