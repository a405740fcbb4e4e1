"""City traffic simulator: Hà Nội's camera checkpoints publishing scans over MQTT.

``kiemdich sim city --gates 45 --rate 20 --duration 600 --speedup 60 --seed 1``

Gates and devices
    The default city is Hà Nội's 45 camera checkpoints (:mod:`simulators.hanoi_gates`),
    each with in and out lanes and one device per lane (``hn-ql1a-phapvan-in-1``).
    ``--gates N`` takes the first N, or adds synthetic side-road checkpoints
    (``hn-sim-00046`` ...) beside real ones up to 10,000. Checkpoints and
    devices are registered in the database through :mod:`aggregator.db.fleet`
    (idempotently); every device gets a random MQTT password, kept in
    ``OUT/credentials.json`` (mode 0600), which is also what ``kiemdich broker
    files --credentials`` turns into the broker's password file.

Traffic
    A non-homogeneous Poisson process whose rate follows a day in Hà Nội:
    quiet nights, a morning rush (07-09, mostly inbound) and a longer evening
    rush (17-19, mostly outbound). ``--rate`` is the mean over a whole day in
    events per (wall) second; ``--speedup`` runs the simulated clock faster, so
    a day's rhythm fits in minutes. The clock only shapes the rhythm: the
    ``seen_at`` on the wire is real time, as an aggregator refuses device clocks
    running ahead. Gates draw traffic by weight (expressways and main bridges
    several times a provincial road).

    Codes shown at the gates: current passes from ``tokens.csv`` (the
    population simulator's output), a share of them of flagged citizens
    (F0/F1/F2/F3/deceased in its ``health_status``), forged passes (a real
    declaration id signed by a wrong key with the right key id), expired
    passes (signed with the real key when ``signing-key.json`` is at hand) and
    garbage (other QR codes, corrupt base45, truncated passes). The same seed
    gives the same traffic (times, gates, lanes, codes); event ids are fresh
    UUIDv7 each run, since they are the aggregator's idempotency key.

Devices
    With broker authentication (the default) every device is its own paho MQTT
    v5 client logged in as itself, with a retained ``online`` status on
    connect and a last will ``offline``. Devices drop off at random
    (``--dropout-per-hour``, per device and simulated hour): the connection
    ends with "disconnect with will message" so the broker announces it
    offline, scans made meanwhile wait in the device's backlog (the edge
    outbox's job) and are published, with their original times, on reconnect.
    Scans are ``ScanEvent``s at QoS 1 on the device's own scan topic, with
    per-device sequence numbers that continue across runs (``OUT/seq.json``).

    One connection per device is what a real fleet looks like, and what a
    broker ACL requires (a device may publish only under its own id); it does
    not scale to 20,000 simulated devices in one process. With ``--no-auth``
    (an anonymous broker) the devices are multiplexed over a pool of
    ``--connections`` clients instead, and going offline/online is published
    as explicit retained status messages (a will belongs to a connection, not
    to one of the devices sharing it). Authentication with more than
    ``MAX_AUTH_DEVICES`` devices is refused with that advice.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import json
import logging
import math
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aggregator.db.engine import default_url, make_engine
from aggregator.db.fleet import add_device, list_devices, upsert_checkpoint
from aggregator.db.migrate import upgrade
from aggregator.db.schema import CheckpointKind
from contract.ids import new_event_id
from contract.messages import CameraState, DeviceState, DeviceStatus, Direction, ScanEvent, encode
from contract.token import HOUR, Keyring, SigningKey, issue_token
from contract.topics import scan_topic, status_topic
from simulators.hanoi_gates import HANOI_GATES, GateSite
from simulators.population import KEYRING_FILE, SIGNING_KEY_FILE, TOKENS_CSV

log = logging.getLogger(__name__)

MAX_GATES = 10_000
MAX_AUTH_DEVICES = 2_000
CREDENTIALS_FILE = "credentials.json"
SEQ_FILE = "seq.json"
SOFTWARE = "kiemdich-sim/1"
FLAGGED_STATUSES = frozenset({"F0", "F1", "F2", "F3", "deceased"})
VIETNAM_UTC_OFFSET_S = 7 * 3600
DAY_S = 86_400

# Relative traffic per hour of the day in Hà Nội (local time), index = hour.
HOURLY_PROFILE = np.array(
    [0.15, 0.10, 0.08, 0.08, 0.15, 0.45, 1.10, 2.20, 2.40, 1.50, 1.00, 0.95,
     0.90, 0.90, 1.00, 1.20, 1.70, 2.40, 2.50, 1.70, 1.10, 0.75, 0.45, 0.25]
)  # fmt: skip
HOURLY_PROFILE = HOURLY_PROFILE / HOURLY_PROFILE.mean()
_RUSH_IN_SHARE = 0.7  # morning: into the city
_RUSH_OUT_SHARE = 0.3  # evening: out of it


class CityError(Exception):
    """The simulation cannot run as asked (the message says why, in both languages)."""


class TokenKind(StrEnum):
    """What a simulated car shows the camera."""

    CLEAR = "clear"
    FLAGGED = "flagged"
    EXPIRED = "expired"
    FORGED = "forged"
    GARBAGE = "garbage"


class CityConfig(BaseModel):
    """Everything a run depends on; validated before anything starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    gates: int = Field(default=len(HANOI_GATES), ge=1, le=MAX_GATES)
    rate: float = Field(default=20.0, gt=0, le=200_000, description="events/s, daily mean")
    duration_s: float = Field(default=60.0, gt=0)
    speedup: float = Field(default=1.0, gt=0, le=1_000_000)
    seed: int = Field(default=0, ge=0)
    start: AwareDatetime | None = Field(default=None, description="simulated clock start")
    population_dir: Path = Path("var/sim")
    out: Path = Path("var/sim/city")
    db_url: str | None = Field(default=None, description="register gates here; None = skip")
    auth: bool = True
    connections: int = Field(default=8, ge=1, le=256)
    flagged_share: float = Field(default=0.02, ge=0, le=1)
    forged_share: float = Field(default=0.003, ge=0, le=1)
    expired_share: float = Field(default=0.005, ge=0, le=1)
    garbage_share: float = Field(default=0.005, ge=0, le=1)
    dropout_per_hour: float = Field(default=0.05, ge=0, le=100)
    outage_s: tuple[float, float] = Field(default=(30.0, 600.0), description="simulated s")
    status_interval_s: float = Field(default=30.0, gt=0)
    token_sample: int = Field(default=200_000, ge=1)
    connect_timeout_s: float = Field(default=30.0, gt=0)
    exclude_devices: tuple[str, ...] = Field(
        default=(), description="devices driven by something else (real edge agents in the demo)"
    )

    def kind_shares(self) -> dict[TokenKind, float]:
        """Probability of each kind of code (clear takes the rest)."""
        odd = {
            TokenKind.FLAGGED: self.flagged_share,
            TokenKind.EXPIRED: self.expired_share,
            TokenKind.FORGED: self.forged_share,
            TokenKind.GARBAGE: self.garbage_share,
        }
        total = sum(odd.values())
        if total > 1:
            raise ValueError(f"code shares add up to {total:.3f} > 1")
        return {TokenKind.CLEAR: 1 - total, **odd}


# --- the city: gates and devices ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One simulated camera lane."""

    id: str
    checkpoint_id: str
    gate: int
    lane: int
    direction: Direction


@dataclass(frozen=True)
class CityLayout:
    """The checkpoints and their devices."""

    gates: tuple[GateSite, ...]
    devices: tuple[SimDevice, ...]
    lanes: dict[tuple[int, Direction], tuple[int, ...]] = field(repr=False)


def _synthetic_gate(i: int, rng: np.random.Generator) -> GateSite:
    # Extra checkpoints sit beside a real one (its ward), a few km away.
    near = HANOI_GATES[i % len(HANOI_GATES)]
    number = i + 1
    return GateSite(
        slug=f"sim-{number:05d}",
        name=f"Chốt mô phỏng {number} (gần {near.name.removeprefix('Chốt ')})",
        road=near.road,
        kind=CheckpointKind.SIDE_ROAD,
        ward_code=near.ward_code,
        ward_name=near.ward_name,
        lat=round(near.lat + float(rng.uniform(-0.02, 0.02)), 5),
        lon=round(near.lon + float(rng.uniform(-0.02, 0.02)), 5),
        lanes_in=1,
        lanes_out=1,
        weight=0.5,
    )


def build_layout(gates: int, *, seed: int = 0) -> CityLayout:
    """The first ``gates`` catalogue sites (plus synthetic ones past 45) and their devices."""
    if not 1 <= gates <= MAX_GATES:
        raise CityError(f"số chốt / gates must be 1..{MAX_GATES}: {gates}")
    sites = list(HANOI_GATES[:gates])
    rng = np.random.default_rng([seed, 7])
    sites += [_synthetic_gate(i, rng) for i in range(len(HANOI_GATES), gates)]
    devices: list[SimDevice] = []
    lanes: dict[tuple[int, Direction], tuple[int, ...]] = {}
    for g, site in enumerate(sites):
        lane = 0
        for direction, count in ((Direction.IN, site.lanes_in), (Direction.OUT, site.lanes_out)):
            indices = []
            for k in range(1, count + 1):
                device_id = f"{site.checkpoint_id}-{direction.value}-{k}"
                indices.append(len(devices))
                devices.append(SimDevice(device_id, site.checkpoint_id, g, lane, direction))
                lane += 1
            lanes[(g, direction)] = tuple(indices)
    return CityLayout(tuple(sites), tuple(devices), lanes)


def without_devices(layout: CityLayout, exclude: set[str]) -> CityLayout:
    """The layout minus ``exclude`` (still registered; their lanes get no simulated traffic)."""
    unknown = exclude - {d.id for d in layout.devices}
    if unknown:
        raise CityError(f"thiết bị không có / unknown devices: {', '.join(sorted(unknown))}")
    kept = [d for d in layout.devices if d.id not in exclude]
    index = {d.id: i for i, d in enumerate(kept)}
    lanes = {
        key: tuple(index[layout.devices[i].id] for i in members if layout.devices[i].id in index)
        for key, members in layout.lanes.items()
    }
    return CityLayout(layout.gates, tuple(kept), lanes)


# --- codes -------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPools:
    """Codes the simulated cars carry, from the population simulator's output."""

    clear: tuple[tuple[int, str], ...]
    flagged: tuple[tuple[int, str], ...]
    kid: int
    signing_key: SigningKey | None


def load_token_pools(population_dir: Path, *, sample: int, seed: int) -> TokenPools:
    """Read ``tokens.csv`` (keeping a seeded sample of ``sample`` rows per pool).

    Flagged citizens (F0..F3, deceased) and the rest are kept apart so their
    share at the gates is set by the simulation, not by their share of the
    population. The signing key, when present, lets the simulation make
    genuinely signed but expired passes.
    """
    path = population_dir / TOKENS_CSV
    if not path.exists():
        raise CityError(
            f"Thiếu {path}: hãy chạy `kiemdich sim population` trước / "
            f"missing {path}: run `kiemdich sim population` first"
        )
    rng = np.random.default_rng([seed, 3])
    clear: list[tuple[int, str]] = []
    flagged: list[tuple[int, str]] = []
    seen = {"clear": 0, "flagged": 0}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            is_flagged = row["health_status"] in FLAGGED_STATUSES
            pool, name = (flagged, "flagged") if is_flagged else (clear, "clear")
            item = (int(row["declaration_id"]), row["token"])
            seen[name] += 1
            # Reservoir sampling: a uniform sample of any file size in bounded memory.
            if len(pool) < sample:
                pool.append(item)
            else:
                j = int(rng.integers(0, seen[name]))
                if j < sample:
                    pool[j] = item
    if not clear and not flagged:
        raise CityError(f"{path} không có mã nào / holds no tokens")
    key_path = population_dir / SIGNING_KEY_FILE
    signing_key = SigningKey.load(key_path) if key_path.exists() else None
    kid = signing_key.kid if signing_key else 1
    keyring_path = population_dir / KEYRING_FILE
    if signing_key is None and keyring_path.exists():
        entries = Keyring.load(keyring_path).entries()
        kid = entries[0].kid if entries else kid
    return TokenPools(tuple(clear), tuple(flagged), kid, signing_key)


# --- traffic -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedScan:
    """One car at one lane: when (wall seconds from the start), where, what code."""

    at_s: float
    device: int
    kind: TokenKind
    token: str
    quality: float
    frames_seen: int


@dataclass(frozen=True, slots=True)
class PlannedOutage:
    """A device off the network from ``at_s`` for ``length_s`` (wall seconds)."""

    at_s: float
    device: int
    length_s: float


def _local_hour(unix_s: np.ndarray | float) -> np.ndarray:
    return np.asarray(((np.asarray(unix_s) + VIETNAM_UTC_OFFSET_S) % DAY_S) / HOUR)


def profile_at(local_hour: np.ndarray) -> np.ndarray:
    """Relative traffic (daily mean 1) at a local hour, interpolated between hour centres."""
    x = np.concatenate(([-0.5], np.arange(24) + 0.5, [24.5]))
    y = np.concatenate(([HOURLY_PROFILE[-1]], HOURLY_PROFILE, [HOURLY_PROFILE[0]]))
    return np.interp(local_hour, x, y)


def in_share_at(local_hour: np.ndarray) -> np.ndarray:
    """Share of traffic entering the city at a local hour (rush hours are one-sided)."""
    h = np.asarray(local_hour)
    share = np.full(h.shape, 0.5)
    share = np.where((h >= 6) & (h < 10), _RUSH_IN_SHARE, share)
    return np.where((h >= 16) & (h < 20), _RUSH_OUT_SHARE, share)


class TrafficModel:
    """Deterministic traffic for a layout: the same seed gives the same plan."""

    CHUNK = 4096

    def __init__(
        self,
        layout: CityLayout,
        pools: TokenPools,
        config: CityConfig,
        *,
        sim_start: float,
        token_now: float,
    ) -> None:
        self.layout = layout
        self.pools = pools
        self.config = config
        self.sim_start = sim_start
        self.token_now = int(token_now)
        weights = np.array([g.weight * (g.lanes_in + g.lanes_out) for g in layout.gates])
        self._gate_p = weights / weights.sum()
        shares = config.kind_shares()
        if not pools.flagged:
            shares[TokenKind.CLEAR] += shares.pop(TokenKind.FLAGGED)
        if pools.signing_key is None:
            shares[TokenKind.CLEAR] += shares.pop(TokenKind.EXPIRED)
        if not pools.clear:
            shares[TokenKind.FLAGGED] = shares.get(TokenKind.FLAGGED, 0) + shares.pop(
                TokenKind.CLEAR
            )
        self.kinds = list(shares)
        self._kind_p = np.array([shares[k] for k in self.kinds])
        self._kind_p = self._kind_p / self._kind_p.sum()
        self._impostor = SigningKey.from_seed(
            pools.kid, hashlib.sha256(f"kiemdich city impostor {config.seed}".encode()).digest()
        )

    def sim_time(self, at_s: float | np.ndarray) -> np.ndarray:
        """Simulated unix time at ``at_s`` wall seconds from the start."""
        return np.asarray(self.sim_start + np.asarray(at_s) * self.config.speedup)

    def rate_at(self, at_s: float | np.ndarray) -> np.ndarray:
        """Target events per wall second at ``at_s``."""
        return self.config.rate * profile_at(_local_hour(self.sim_time(at_s)))

    def scans(self, duration_s: float) -> Iterator[PlannedScan]:
        """The scans of a run of ``duration_s`` wall seconds, in time order (lazily)."""
        rng = np.random.default_rng([self.config.seed, 1])
        peak = self.config.rate * float(HOURLY_PROFILE.max())
        t = 0.0
        while True:
            # Thinning: candidates at the peak rate, kept in proportion to the rate then.
            times = t + np.cumsum(rng.exponential(1.0 / peak, size=self.CHUNK))
            t = float(times[-1])
            keep = rng.random(self.CHUNK) * peak < self.rate_at(times)
            times = times[keep & (times < duration_s)]
            yield from self._draw(rng, times)
            if t >= duration_s:
                return

    def _draw(self, rng: np.random.Generator, times: np.ndarray) -> Iterator[PlannedScan]:
        n = len(times)
        if n == 0:
            return
        gates = rng.choice(len(self._gate_p), p=self._gate_p, size=n)
        inbound = rng.random(n) < in_share_at(_local_hour(self.sim_time(times)))
        lane_pick = rng.random(n)
        kinds = rng.choice(len(self.kinds), p=self._kind_p, size=n)
        picks = rng.random(n)
        quality = np.round(rng.uniform(0.55, 1.0, size=n), 3)
        frames = rng.integers(1, 7, size=n)
        for i in range(n):
            direction = Direction.IN if inbound[i] else Direction.OUT
            lanes = self.layout.lanes[(int(gates[i]), direction)]
            if not lanes:  # every lane of this side is driven by a real agent
                continue
            device = lanes[min(int(lane_pick[i] * len(lanes)), len(lanes) - 1)]
            kind = self.kinds[int(kinds[i])]
            yield PlannedScan(
                at_s=float(times[i]),
                device=device,
                kind=kind,
                token=self._token(kind, float(picks[i]), rng),
                quality=float(quality[i]),
                frames_seen=int(frames[i]),
            )

    def _token(self, kind: TokenKind, pick: float, rng: np.random.Generator) -> str:
        pools = self.pools
        base = pools.clear or pools.flagged
        if kind is TokenKind.FLAGGED:
            return pools.flagged[int(pick * len(pools.flagged))][1]
        if kind is TokenKind.CLEAR:
            return pools.clear[int(pick * len(pools.clear))][1]
        declaration_id = base[int(pick * len(base))][0]
        now = self.token_now
        if kind is TokenKind.FORGED:
            return issue_token(
                self._impostor,
                declaration_id=declaration_id,
                issued_at=now - HOUR,
                expires_at=now + 23 * HOUR,
            )
        if kind is TokenKind.EXPIRED:
            assert pools.signing_key is not None  # the kind is dropped without a key
            return issue_token(
                pools.signing_key,
                declaration_id=declaration_id,
                issued_at=now - 20 * 24 * HOUR,
                expires_at=now - 6 * 24 * HOUR,
            )
        return _garbage(base[int(pick * len(base))][1], rng)

    def outages(self, duration_s: float) -> list[PlannedOutage]:
        """Each device's drop-outs during the run (Poisson in simulated time), by start."""
        cfg = self.config
        if cfg.dropout_per_hour <= 0:
            return []
        rng = np.random.default_rng([cfg.seed, 2])
        per_wall_s = cfg.dropout_per_hour * cfg.speedup / HOUR
        expected = per_wall_s * duration_s * len(self.layout.devices)
        n = int(rng.poisson(expected))
        starts = np.sort(rng.uniform(0, duration_s, size=n))
        devices = rng.integers(0, len(self.layout.devices), size=n)
        low, high = cfg.outage_s
        lengths = rng.uniform(low, high, size=n) / cfg.speedup
        return [
            PlannedOutage(float(s), int(d), max(0.5, float(length)))
            for s, d, length in zip(starts, devices, lengths, strict=True)
        ]


_GARBAGE_URLS = (
    "https://tokhaiyte.vn/?c=",
    "https://vneid.gov.vn/qr/",
    "ETC-VETC-",
    "http://zalo.me/g/",
)
_BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _garbage(real_token: str, rng: np.random.Generator) -> str:
    form = int(rng.integers(0, 3))
    if form == 0:  # another QR code in the car (toll sticker, a web link)
        tail = "".join(rng.choice(list("abcdefghjkmnpqrstuvwxyz0123456789"), size=12))
        return _GARBAGE_URLS[int(rng.integers(0, len(_GARBAGE_URLS)))] + tail
    if form == 1:  # our prefix, corrupt body
        return "KD1:" + "".join(rng.choice(list(_BASE45), size=int(rng.integers(20, 140))))
    cut = int(rng.integers(8, max(9, len(real_token) - 1)))
    return real_token[:cut]  # a pass read half-way


# --- devices on the network ------------------------------------------------------


@dataclass
class LinkCounters:
    """What the MQTT side did (updated from paho's network threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    published: int = 0
    acked: int = 0
    refused: int = 0
    statuses: int = 0
    connects: int = 0
    connect_failures: int = 0
    last_refusal: str | None = None

    def add(self, **deltas: int) -> None:
        """Add to counters under the lock."""
        with self.lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)


def _status(
    device: SimDevice, state: DeviceState, *, passages: int, backlog: int, jitter: random.Random
) -> DeviceStatus:
    online = state is DeviceState.ONLINE
    fps = round(jitter.uniform(13.5, 15.0), 2)
    return DeviceStatus(
        device_id=device.id,
        checkpoint_id=device.checkpoint_id,
        state=state,
        at=datetime.now(UTC),
        software=SOFTWARE,
        camera=CameraState.OK if online else None,
        fps=fps if online else None,
        decode_fps=round(fps / 2, 2) if online else None,
        decode_ms_p50=round(jitter.uniform(8, 14), 1) if online else None,
        decode_ms_p99=round(jitter.uniform(30, 60), 1) if online else None,
        passages=passages,
        outbox_depth=backlog,
    )


StatusOf = Callable[[int], DeviceStatus]


class DeviceLinks(ABC):
    """How simulated devices reach the broker (one client each, or a shared pool)."""

    def __init__(self, config: CityConfig, counters: LinkCounters) -> None:
        self.config = config
        self.counters = counters
        self._connected = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Lock()

    def _client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        # No paho logger: after a deliberate disconnect its loop logs a spurious
        # "not connected" error; failures reach us through the callbacks.
        # mosquitto's Receive Maximum is 20 and paho does not read it from CONNACK.
        client.max_inflight_messages_set(20)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.counters.add(connect_failures=1)
            with self.counters.lock:
                self.counters.last_refusal = f"CONNACK {reason_code}"
            return
        self.counters.add(connects=1)
        self._connected_one(client, userdata)

    def _connected_one(self, client: mqtt.Client, userdata: Any) -> None:
        with self._pending_lock:
            self._pending -= 1
            if self._pending <= 0:
                self._connected.set()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.counters.add(refused=1)
            with self.counters.lock:
                self.counters.last_refusal = f"PUBACK {reason_code}"
        else:
            self.counters.add(acked=1)

    def _wait_connected(self, expected: int) -> None:
        if not self._connected.wait(self.config.connect_timeout_s):
            self.close()
            raise CityError(
                "Không kết nối được MQTT broker / could not connect to the broker at "
                f"{self.config.host}:{self.config.port}: {self.counters.connects}/{expected} "
                f"connected ({self.counters.last_refusal or 'no answer'})"
            )

    @abstractmethod
    def start(self, devices: Sequence[SimDevice], status_of: StatusOf) -> None:
        """Connect; returns once every connection is up (raises :class:`CityError` otherwise)."""

    @abstractmethod
    def publish(self, device: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 on behalf of ``device`` (never blocks: paho queues it)."""

    @abstractmethod
    def go_offline(self, device: int, status: DeviceStatus) -> None:
        """Take ``device`` off the network (its offline status reaches subscribers)."""

    @abstractmethod
    def go_online(self, device: int, status: DeviceStatus) -> None:
        """Bring ``device`` back (an online status follows)."""

    @abstractmethod
    def leave(self, offline_of: StatusOf) -> None:
        """Make every device end offline (before :meth:`close`)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect everything."""


_WILL_DISCONNECT = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")


class PerDeviceLinks(DeviceLinks):
    """One authenticated client per device, with its own last will."""

    def __init__(
        self, config: CityConfig, counters: LinkCounters, passwords: dict[str, str]
    ) -> None:
        super().__init__(config, counters)
        self.passwords = passwords
        self.clients: list[mqtt.Client] = []
        self._online_status: list[DeviceStatus] = []

    def start(self, devices: Sequence[SimDevice], status_of: StatusOf) -> None:
        """Connect every device as itself (username = device id)."""
        missing = [d.id for d in devices if d.id not in self.passwords]
        if missing:
            raise CityError(
                f"Thiếu mật khẩu cho / no password for {len(missing)} devices ({missing[0]}, ...)"
            )
        self._pending = len(devices)
        for index, device in enumerate(devices):
            client = self._client(device.id)
            client.user_data_set(index)
            client.username_pw_set(device.id, self.passwords[device.id])
            self._online_status.append(status_of(index))
            self._set_will(client, index)
            self.clients.append(client)
            client.connect_async(self.config.host, self.config.port, keepalive=30)
            client.loop_start()
        self._wait_connected(len(devices))

    def _set_will(self, client: mqtt.Client, index: int) -> None:
        status = self._online_status[index]
        will = status.model_copy(update={"state": DeviceState.OFFLINE, "at": datetime.now(UTC)})
        client.will_set(status_topic(status.device_id), encode(will), qos=1, retain=True)

    def _connected_one(self, client: mqtt.Client, userdata: Any) -> None:
        status = self._online_status[int(userdata)]
        # Retained "online" on every (re)connect; publish only queues it in paho.
        client.publish(status_topic(status.device_id), encode(status), qos=1, retain=True)
        self.counters.add(statuses=1, published=1)
        super()._connected_one(client, userdata)

    def publish(self, device: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish on the device's own connection."""
        self.clients[device].publish(topic, payload, qos=1, retain=retain)
        self.counters.add(published=1)

    def go_offline(self, device: int, status: DeviceStatus) -> None:
        """End the session asking the broker to send the will (the offline status)."""
        client = self.clients[device]
        client.disconnect(reasoncode=_WILL_DISCONNECT)
        client.loop_stop()

    def go_online(self, device: int, status: DeviceStatus) -> None:
        """Reconnect; the online status follows from ``on_connect``."""
        client = self.clients[device]
        self._online_status[device] = status
        self._set_will(client, device)
        client.connect_async(self.config.host, self.config.port, keepalive=30)
        client.loop_start()

    def leave(self, offline_of: StatusOf) -> None:
        """Nothing to say: each device's will announces it at :meth:`close`."""

    def close(self) -> None:
        """Disconnect everyone with their will, so every device ends offline."""
        for client in self.clients:
            # Not only the connected ones: a device coming back from an outage may
            # be waiting for its CONNACK. Skipped, it announced itself online right
            # after and its socket stayed open with no will (test_city flaked).
            client.disconnect(reasoncode=_WILL_DISCONNECT)
        for client in self.clients:
            client.loop_stop()


class PooledLinks(DeviceLinks):
    """Anonymous broker: many devices share a few connections (scale runs)."""

    def __init__(self, config: CityConfig, counters: LinkCounters) -> None:
        super().__init__(config, counters)
        self.clients: list[mqtt.Client] = []
        self._devices = 0

    def start(self, devices: Sequence[SimDevice], status_of: StatusOf) -> None:
        """Open the pool and publish every device's online status."""
        self._devices = len(devices)
        pool = min(self.config.connections, len(devices))
        self._pending = pool
        suffix = secrets.token_hex(3)
        for i in range(pool):
            client = self._client(f"kd-sim-city-{suffix}-{i}")
            self.clients.append(client)
            client.connect_async(self.config.host, self.config.port, keepalive=30)
            client.loop_start()
        self._wait_connected(pool)
        for index in range(len(devices)):
            self._announce(index, status_of(index))

    def _announce(self, device: int, status: DeviceStatus) -> None:
        self.publish(device, status_topic(status.device_id), encode(status), retain=True)
        self.counters.add(statuses=1)

    def publish(self, device: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish on the pool connection this device maps to."""
        self.clients[device % len(self.clients)].publish(topic, payload, qos=1, retain=retain)
        self.counters.add(published=1)

    def go_offline(self, device: int, status: DeviceStatus) -> None:
        """A shared connection has no per-device will: say it explicitly."""
        self._announce(device, status)

    def go_online(self, device: int, status: DeviceStatus) -> None:
        """Publish the device's online status."""
        self._announce(device, status)

    def leave(self, offline_of: StatusOf) -> None:
        """Publish every device's offline status."""
        for device in range(self._devices):
            self._announce(device, offline_of(device))

    def close(self) -> None:
        """Disconnect the pool."""
        for client in self.clients:
            client.disconnect()
        for client in self.clients:
            client.loop_stop()


# --- credentials and registration -------------------------------------------------


def _write_json_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_credentials(out: Path) -> dict[str, str]:
    """``OUT/credentials.json`` (device id -> MQTT password), or empty when absent."""
    path = out / CREDENTIALS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CityError(f"{path}: expected a JSON object of device id -> password")
    return {str(k): str(v) for k, v in data.items()}


def ensure_credentials(layout: CityLayout, out: Path) -> dict[str, str]:
    """Every device's password, made (random) for devices that have none yet, saved 0600."""
    passwords = load_credentials(out)
    missing = [d.id for d in layout.devices if d.id not in passwords]
    if missing:
        passwords.update({device_id: secrets.token_urlsafe(18) for device_id in missing})
        _write_json_private(out / CREDENTIALS_FILE, passwords)
    return passwords


def register_city(db_url: str, layout: CityLayout, passwords: dict[str, str]) -> int:
    """Register checkpoints (upsert) and devices not yet known; returns devices added.

    The database keeps only argon2 hashes: a device registered earlier whose
    password is no longer in the credentials file cannot be used, and is refused.
    """
    upgrade(db_url)
    engine = make_engine(db_url)
    added = 0
    try:
        with engine.begin() as conn:
            for site in layout.gates:
                upsert_checkpoint(
                    conn,
                    id=site.checkpoint_id,
                    name=site.name,
                    kind=site.kind,
                    ward_code=site.ward_code,
                    lat=site.lat,
                    lon=site.lon,
                    owner="Công an TP Hà Nội (mô phỏng / simulated)",
                )
            known = {d.id for d in list_devices(conn)}
            for device in layout.devices:
                if device.id in known:
                    continue
                add_device(
                    conn,
                    id=device.id,
                    checkpoint_id=device.checkpoint_id,
                    lane=device.lane,
                    direction=device.direction.value,
                    mqtt_password=passwords[device.id],
                )
                added += 1
    finally:
        engine.dispose()
    return added


def _load_seqs(out: Path) -> dict[str, int]:
    path = out / SEQ_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in data.items()}


# --- the run ------------------------------------------------------------------------


@dataclass
class CityReport:
    """What a run did."""

    devices: int
    gates: int
    planned: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    outages: int = 0
    published: int = 0
    acked: int = 0
    refused: int = 0
    statuses: int = 0
    max_late_s: float = 0.0
    wall_s: float = 0.0
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    last_refusal: str | None = None


Progress = Callable[[CityReport], None]


class CityRunner:
    """Plays a traffic plan through device links in real (wall) time."""

    def __init__(
        self,
        config: CityConfig,
        layout: CityLayout,
        model: TrafficModel,
        links: DeviceLinks,
        counters: LinkCounters,
        *,
        seqs: dict[str, int] | None = None,
    ) -> None:
        self.config = config
        self.layout = layout
        self.model = model
        self.links = links
        self.counters = counters
        n = len(layout.devices)
        seqs = seqs or {}
        self.seq = [seqs.get(d.id, 0) for d in layout.devices]
        self.passages = [0] * n
        self.online = [True] * n
        self.backlog: list[deque[bytes]] = [deque() for _ in range(n)]
        # Status figures only look alive; they are not part of the seeded plan.
        self._jitter = random.Random()

    def status(self, device: int, state: DeviceState = DeviceState.ONLINE) -> DeviceStatus:
        """The device's current status message."""
        return _status(
            self.layout.devices[device],
            state,
            passages=self.passages[device],
            backlog=len(self.backlog[device]),
            jitter=self._jitter,
        )

    def run(
        self, stop: threading.Event, *, progress: Progress | None = None, every_s: float = 5.0
    ) -> CityReport:
        """Connect, play the plan for ``duration_s``, wait for acknowledgements, leave."""
        cfg = self.config
        report = CityReport(devices=len(self.layout.devices), gates=len(self.layout.gates))
        report.sim_start = datetime.fromtimestamp(self.model.sim_start, UTC)
        outages = self.model.outages(cfg.duration_s)
        report.outages = len(outages)
        self.links.start(self.layout.devices, self.status)
        # Timed actions: (wall s, order, action, device, outage length)
        heap: list[tuple[float, int, str, int, float]] = []
        order = 0
        n = len(self.layout.devices)
        for i in range(n):
            heap.append((cfg.status_interval_s * (1 + i / n), order, "status", i, 0.0))
            order += 1
        for outage in outages:
            heap.append((outage.at_s, order, "down", outage.device, outage.length_s))
            order += 1
        heapq.heapify(heap)
        scans = self.model.scans(cfg.duration_s)
        next_scan = next(scans, None)
        t0 = time.monotonic()
        next_progress = every_s
        while not stop.is_set():
            scan_at = next_scan.at_s if next_scan is not None else math.inf
            action_at = heap[0][0] if heap else math.inf
            at = min(scan_at, action_at)
            if at >= cfg.duration_s:
                break
            delay = t0 + at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            report.max_late_s = max(report.max_late_s, -delay)
            if scan_at <= action_at and next_scan is not None:
                self._scan(next_scan)
                report.planned += 1
                report.by_kind[next_scan.kind.value] += 1
                next_scan = next(scans, None)
            else:
                _, _, action, device, length = heapq.heappop(heap)
                order += 1
                follow = self._act(action, device, length, at)
                if follow is not None:
                    heapq.heappush(heap, (follow[0], order, follow[1], device, 0.0))
            if progress is not None and time.monotonic() - t0 >= next_progress:
                next_progress += every_s
                progress(self._fill(report, t0))
        # Devices still offline come back so their backlog is delivered.
        for device in range(n):
            if not self.online[device]:
                self._act("up", device, 0.0, cfg.duration_s)
        self._wait_acks()
        self.links.leave(lambda i: self.status(i, DeviceState.OFFLINE))
        self._wait_acks()
        self.links.close()
        self._save_seqs()
        return self._fill(report, t0)

    def _fill(self, report: CityReport, t0: float) -> CityReport:
        c = self.counters
        with c.lock:
            report.published, report.acked, report.refused = c.published, c.acked, c.refused
            report.statuses, report.last_refusal = c.statuses, c.last_refusal
        report.wall_s = time.monotonic() - t0
        report.sim_end = datetime.fromtimestamp(float(self.model.sim_time(report.wall_s)), UTC)
        return report

    def _scan(self, planned: PlannedScan) -> None:
        device = self.layout.devices[planned.device]
        i = planned.device
        event = ScanEvent(
            event_id=new_event_id(),
            device_id=device.id,
            checkpoint_id=device.checkpoint_id,
            lane=device.lane,
            direction=device.direction,
            seq=self.seq[i],
            seen_at=datetime.now(UTC),
            token=planned.token,
            decoder="zxing",
            quality=planned.quality,
            frames_seen=planned.frames_seen,
        )
        self.seq[i] += 1
        self.passages[i] += 1
        payload = encode(event)
        if self.online[i]:
            self.links.publish(i, scan_topic(device.id), payload)
        else:
            self.backlog[i].append(payload)

    def _act(self, action: str, device: int, length: float, at: float) -> tuple[float, str] | None:
        if action == "status":
            if self.online[device]:
                status = self.status(device)
                self.links.publish(
                    device, status_topic(status.device_id), encode(status), retain=True
                )
                self.counters.add(statuses=1)
            return (at + self.config.status_interval_s, "status")
        if action == "down":
            if not self.online[device]:
                return None  # already off: outages do not stack
            self.online[device] = False
            self.links.go_offline(device, self.status(device, DeviceState.OFFLINE))
            return (at + length, "up")
        # "up": back online, then the backlog drains oldest first
        self.online[device] = True
        self.links.go_online(device, self.status(device))
        topic = scan_topic(self.layout.devices[device].id)
        while self.backlog[device]:
            self.links.publish(device, topic, self.backlog[device].popleft())
        return None

    def _wait_acks(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.counters.lock:
                done = self.counters.acked + self.counters.refused >= self.counters.published
            if done:
                return
            time.sleep(0.05)
        log.warning("còn tin chưa được xác nhận / unacknowledged publishes remain")

    def _save_seqs(self) -> None:
        seqs = {d.id: self.seq[i] for i, d in enumerate(self.layout.devices)}
        _write_json_private(self.config.out / SEQ_FILE, {**_load_seqs(self.config.out), **seqs})


def prepare(config: CityConfig) -> tuple[CityLayout, dict[str, str]]:
    """Build the layout, make credentials and register in the database when asked."""
    layout = build_layout(config.gates, seed=config.seed)
    if config.auth and len(layout.devices) > MAX_AUTH_DEVICES:
        raise CityError(
            f"{len(layout.devices)} thiết bị, mỗi thiết bị một kết nối: quá nhiều / "
            f"{len(layout.devices)} devices each with its own authenticated connection is more "
            f"than {MAX_AUTH_DEVICES}; use --no-auth (an anonymous broker) to multiplex them "
            "over a connection pool"
        )
    passwords = ensure_credentials(layout, config.out)
    if config.db_url is not None:
        register_city(config.db_url, layout, passwords)
    return layout, passwords


def run_city(
    config: CityConfig,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    prepared: tuple[CityLayout, dict[str, str]] | None = None,
) -> CityReport:
    """Prepare (unless given) and run one simulation; returns its report."""
    layout, passwords = prepared or prepare(config)
    if config.exclude_devices:
        layout = without_devices(layout, set(config.exclude_devices))
    pools = load_token_pools(config.population_dir, sample=config.token_sample, seed=config.seed)
    now = time.time()
    sim_start = config.start.timestamp() if config.start else now
    model = TrafficModel(layout, pools, config, sim_start=sim_start, token_now=now)
    counters = LinkCounters()
    links: DeviceLinks = (
        PerDeviceLinks(config, counters, passwords)
        if config.auth
        else PooledLinks(config, counters)
    )
    runner = CityRunner(config, layout, model, links, counters, seqs=_load_seqs(config.out))
    return runner.run(stop or threading.Event(), progress=progress)


# --- CLI ----------------------------------------------------------------------------


def _aware(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+07:00")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CityConfig.model_fields
    parser.add_argument("--host", default=d["host"].default, help="MQTT broker")
    parser.add_argument("--port", type=int, default=d["port"].default)
    parser.add_argument("--gates", type=int, default=d["gates"].default, help="số chốt / gates")
    parser.add_argument(
        "--rate", type=float, default=d["rate"].default, help="lượt/giây / events per second"
    )
    parser.add_argument(
        "--duration", type=float, default=d["duration_s"].default, help="giây / wall seconds"
    )
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="simulated seconds per wall second"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=_aware, help="simulated start, ISO 8601 (default now)")
    parser.add_argument("--population-dir", type=Path, default=d["population_dir"].default)
    parser.add_argument("--out", type=Path, default=d["out"].default, help="credentials, seqs")
    parser.add_argument("--db", default=default_url(), help="URL CSDL / database URL")
    parser.add_argument("--no-register", action="store_true", help="do not touch the database")
    parser.add_argument(
        "--register-only",
        action="store_true",
        help="register gates and write credentials, then exit (before broker files)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="anonymous broker: multiplex devices over --connections clients",
    )
    parser.add_argument("--connections", type=int, default=d["connections"].default)
    for name in ("flagged", "forged", "expired", "garbage"):
        key = f"{name}_share"
        parser.add_argument(f"--{name}-share", dest=key, type=float, default=d[key].default)
    parser.add_argument("--dropout-per-hour", type=float, default=d["dropout_per_hour"].default)
    parser.add_argument(
        "--status-interval", type=float, default=d["status_interval_s"].default, help="s"
    )
    parser.add_argument(
        "--exclude-device",
        action="append",
        default=[],
        metavar="ID",
        help="a device driven by a real edge agent: registered, but no simulated traffic",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _print_progress(report: CityReport) -> None:
    sim = report.sim_end or datetime.now(UTC)
    clock = sim.astimezone(UTC) + timedelta(seconds=VIETNAM_UTC_OFFSET_S)
    print(
        f"[{report.wall_s:6.0f} s | {clock:%H:%M} giờ HN] lượt / scans {report.planned:,} "
        f"gửi / sent {report.published:,} ack {report.acked:,} từ chối / refused "
        f"{report.refused:,}",
        file=sys.stderr,
        flush=True,
    )


def _run(args: argparse.Namespace) -> int:
    try:
        config = CityConfig(
            host=args.host,
            port=args.port,
            gates=args.gates,
            rate=args.rate,
            duration_s=args.duration,
            speedup=args.speedup,
            seed=args.seed,
            start=args.start,
            population_dir=args.population_dir,
            out=args.out,
            db_url=None if args.no_register else args.db,
            auth=not args.no_auth,
            connections=args.connections,
            flagged_share=args.flagged_share,
            forged_share=args.forged_share,
            expired_share=args.expired_share,
            garbage_share=args.garbage_share,
            dropout_per_hour=args.dropout_per_hour,
            status_interval_s=args.status_interval,
            exclude_devices=tuple(args.exclude_device),
        )
        config.kind_shares()
        prepared = prepare(config)
        if args.register_only:
            print(
                f"{len(prepared[0].gates)} chốt / checkpoints, {len(prepared[0].devices)} "
                f"thiết bị / devices; mật khẩu / credentials: {config.out / CREDENTIALS_FILE}"
            )
            return 0
        stop = threading.Event()
        try:
            progress = None if args.quiet else _print_progress
            report = run_city(config, stop=stop, progress=progress, prepared=prepared)
        except KeyboardInterrupt:
            stop.set()
            return 130
    except (CityError, ValueError, OSError) as exc:
        print(f"Lỗi / error: {exc}", file=sys.stderr)
        return 2
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(report.by_kind.items()))
    print(
        f"{report.gates} chốt / gates, {report.devices} thiết bị / devices, "
        f"{report.wall_s:.0f} s\n"
        f"lượt quét / scans {report.planned:,} ({kinds})\n"
        f"gửi / published {report.published:,}, ack {report.acked:,}, "
        f"từ chối / refused {report.refused:,}, trạng thái / statuses {report.statuses:,}, "
        f"mất kết nối / drop-outs {report.outages:,}, trễ tối đa / max late "
        f"{report.max_late_s:.2f} s"
    )
    return 1 if report.refused else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``city`` to the ``sim`` command group; its ``func(args) -> int`` runs it."""
    parser = subparsers.add_parser(
        "city", help="Mô phỏng giao thông qua các chốt / city traffic through the checkpoints"
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.city --gates 45 ...``."""
    parser = argparse.ArgumentParser(prog="kiemdich sim city")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
