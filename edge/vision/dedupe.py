"""One car = one passage.

A code in a windscreen is read in many consecutive frames, and where lanes
overlap by more than one camera. The first sighting of a token is emitted at
once (the gate verdict must not wait); later sightings within the window only
update the token's track (frames seen, best quality, which cameras saw it).
A token is forgotten once it has not been seen for ``window_s`` seconds, and
the number of tracked tokens is capped, so memory stays bounded however long
the agent runs. Time is whatever the caller passes (frame timestamps), so the
logic is pure and replayable.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from contract.token import MAX_TOKEN_CHARS


@dataclass(frozen=True, slots=True)
class FirstSighting:
    """A new passage: the first time a token was seen in its window."""

    token: str
    first_seen: float
    source: str
    quality: float | None


@dataclass(slots=True)
class Track:
    """What is known about one token while its window is open."""

    token: str
    first_seen: float
    last_seen: float
    frames_seen: int = 1
    best_quality: float | None = None
    sources: set[str] = field(default_factory=set)


@dataclass(slots=True)
class DedupeStats:
    """Counters since start (monotonic; for metrics)."""

    sightings: int = 0
    passages: int = 0
    repeats: int = 0
    ignored: int = 0
    evicted_for_space: int = 0


def _better(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class Deduper:
    """Turns per-frame token sightings into passages. Not thread-safe: one caller."""

    def __init__(self, *, window_s: float, max_entries: int = 4096, prefix: str = "KD1:") -> None:
        if window_s <= 0:
            raise ValueError("window_s phải > 0 / window_s must be > 0")
        if max_entries < 1:
            raise ValueError("max_entries phải >= 1 / max_entries must be >= 1")
        self.window_s = window_s
        self.max_entries = max_entries
        self.prefix = prefix
        self.stats = DedupeStats()
        # Ordered by last update, so the stalest track is always first.
        self._tracks: OrderedDict[str, Track] = OrderedDict()
        self._closed: deque[Track] = deque(maxlen=max_entries)
        self._clock = float("-inf")

    def __len__(self) -> int:
        return len(self._tracks)

    def is_pass_token(self, text: str, *, is_text: bool = True) -> bool:
        """True when ``text`` looks like a pass token worth tracking (prefix, sane length)."""
        return is_text and text.startswith(self.prefix) and len(text) <= MAX_TOKEN_CHARS

    def observe(
        self,
        text: str,
        ts: float,
        *,
        quality: float | None = None,
        source: str = "",
        is_text: bool = True,
    ) -> FirstSighting | None:
        """Record one sighting; return a :class:`FirstSighting` if it starts a new passage.

        Texts that are not pass tokens are counted in ``stats.ignored`` and
        never emitted. Timestamps may arrive slightly out of order (several
        cameras): a late sighting still counts as part of its passage.
        """
        self.stats.sightings += 1
        if not self.is_pass_token(text, is_text=is_text):
            self.stats.ignored += 1
            return None
        self._advance(ts)
        track = self._tracks.get(text)
        if track is not None and ts - track.last_seen <= self.window_s:
            track.frames_seen += 1
            track.last_seen = max(track.last_seen, ts)
            track.best_quality = _better(track.best_quality, quality)
            if source:
                track.sources.add(source)
            self._tracks.move_to_end(text)
            self.stats.repeats += 1
            return None
        if track is not None:
            self._close(text)
        while len(self._tracks) >= self.max_entries:
            _, oldest = self._tracks.popitem(last=False)
            self._closed.append(oldest)
            self.stats.evicted_for_space += 1
        self._tracks[text] = Track(
            token=text,
            first_seen=ts,
            last_seen=ts,
            best_quality=quality,
            sources={source} if source else set(),
        )
        self.stats.passages += 1
        return FirstSighting(token=text, first_seen=ts, source=source, quality=quality)

    def track(self, token: str) -> Track | None:
        """The open track of ``token``, if its window has not closed."""
        return self._tracks.get(token)

    def expire(self, now: float) -> None:
        """Close every track not seen for longer than the window before ``now``."""
        self._advance(now)

    def pop_closed(self) -> list[Track]:
        """Tracks whose window closed since the last call (their final counts), oldest first."""
        closed = list(self._closed)
        self._closed.clear()
        return closed

    def _advance(self, ts: float) -> None:
        self._clock = max(self._clock, ts)
        while self._tracks:
            token, track = next(iter(self._tracks.items()))
            # Same expression as in observe(), so float rounding cannot disagree.
            if self._clock - track.last_seen <= self.window_s:
                break
            self._close(token)

    def _close(self, token: str) -> None:
        self._closed.append(self._tracks.pop(token))
