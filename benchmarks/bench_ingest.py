"""Benchmark: the aggregator's ingest throughput, scan-to-verdict latency and memory.

    .venv/bin/python benchmarks/bench_ingest.py [--quick] [--minutes 2] [--events 100000]

Everything runs against a private mosquitto on a free port, with the
aggregator in its own process (as deployed; a benchmark thread in the same
interpreter would share its GIL), over a registry of ``--citizens`` people
(default 1,000,000) built once with :mod:`simulators.population` into
``var/bench/ingest/<citizens>/`` (and, when PostgreSQL is reachable at
``KIEMDICH_TEST_PG``, into the database ``kiemdich_bench_ingest_<citizens>``)
and reused while its passes are valid. Each measurement gets a fresh copy.

The event stream is the city simulator's Hà Nội traffic (45 gates, 130
devices, 2 % flagged citizens, forged, expired and garbage codes),
pre-generated once, so every contender gets the same bytes. It is queued
through four connections, each device's scans always on the same one, so
they reach the broker in order as from a real gate; a second SQLite drain
sends them through the connections in turn, so gates' scans overtake one
another (every overtaken scan opens a sequence gap the next batch closes).

1. Baseline: a bare paho subscriber (persistent session, shared subscription,
   the aggregator's Receive Maximum, acknowledging on receipt, doing nothing)
   drains the stream queued at the broker: the raw broker + paho rate.
2. Our aggregator on SQLite drains the same queued stream: events verified
   against the registry, committed and acknowledged, per second, and as a
   fraction of the bare rate (target ≥ 5,000/s); then the shuffled stream.
3. On PostgreSQL, one process, then two sharing the stream through the MQTT 5
   shared subscription (target: the second adds ≥ 60 %).
4. Scan-to-verdict latency at a steady 1,000 events/s: publish time to the
   verdict arriving on the device's verdict topic, p50/p99 (target p99 <
   250 ms), beside an echo subscriber that answers each scan at once (the
   MQTT round trip floor).
5. The aggregator's RSS (with its MQTT link child process) sampled every
   second during (4), which lasts ``--minutes``: flat means the last
   quarter's mean is within 5 % of the second quarter's.

Draining a queue the broker already holds measures the consumer alone; a live
publisher would take one of the machine's cores from it. ``--quick`` uses a
20,000-person registry, 10,000 events and 30 s of steady load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import create_engine, text

from aggregator.db.engine import make_engine, normalize_url
from aggregator.db.migrate import upgrade
from contract.ids import new_event_id
from contract.messages import ScanEvent, encode
from contract.topics import ALL_SCANS, scan_topic, shared, verdict_topic
from simulators.city import (
    CityConfig,
    CityLayout,
    TrafficModel,
    build_layout,
    ensure_credentials,
    load_token_pools,
    register_city,
)
from simulators.population import PopulationConfig, build_population

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "var" / "bench" / "ingest"
PG_ENV = "KIEMDICH_TEST_PG"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SEED = 2021
GATES = 45
VALID_DAYS = 365
RECEIVE_MAXIMUM = 2000  # the aggregator's default (AggregatorSettings.receive_maximum)
SESSION_EXPIRY_S = 3600
PUBLISHERS = 4
REPORT_EVERY_S = 0.1
FLAT_WITHIN = 0.05


# --- private broker ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    """A fresh anonymous mosquitto (no limit on queued messages); yields its port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        "set_tcp_nodelay true\nlog_dest stdout\nlog_type error\nlog_type warning\n"
    )
    log = workdir / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {log.read_text()[-1000:]}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(client_id: str = "") -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(20)  # mosquitto's Receive Maximum towards clients
    return client


def _session_properties(receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = receive_maximum
    return props


def create_sessions(port: int, client_ids: Sequence[str]) -> None:
    """Make persistent sessions subscribed to the shared scan filter, then leave them offline.

    mosquitto queues a shared subscription's messages for its offline members
    in turn, so whatever is published next waits for these clients.
    """
    for client_id in client_ids:
        done = threading.Event()
        client = _client(client_id)
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(shared(ALL_SCANS), qos=1)
        client.on_subscribe = lambda _c, _u, _m, _rcs, _p, done=done: done.set()
        client.connect(
            "127.0.0.1", port, clean_start=False, properties=_session_properties(RECEIVE_MAXIMUM)
        )
        client.loop_start()
        if not done.wait(10):
            raise RuntimeError(f"could not subscribe {client_id}")
        client.disconnect()
        client.loop_stop()


class _Acked:
    """What both publisher pools share: waiting for the broker's PUBACKs."""

    @property
    def acked(self) -> int:
        """PUBACKs received so far."""
        raise NotImplementedError

    def wait_acked(self, count: int, timeout_s: float = 600) -> None:
        """Until ``count`` PUBACKs arrived."""
        deadline = time.monotonic() + timeout_s
        while self.acked < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.acked}/{count} publishes acknowledged")
            time.sleep(0.02)


class PublisherPool(_Acked):
    """A few anonymous connections publishing for many devices at QoS 1.

    By default each device's scans always go through the same connection, so
    they reach the broker in order, as from a real gate (each has its own
    connection: the broker's ACL ties its topics to its login). With
    ``shuffled`` the connections are used in turn whatever the device, so a
    device's scans overtake one another: every overtaken one opens a sequence
    gap that the next batch fills (more work per event, as when several
    aggregators commit one gate's scans in a different order).
    """

    def __init__(self, port: int, size: int = PUBLISHERS, *, shuffled: bool = False) -> None:
        self.shuffled = shuffled
        self.clients = []
        self._acked = 0
        self._lock = threading.Lock()
        for _ in range(size):
            client = _client()
            client.on_publish = self._on_publish
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)
        self._next = 0

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        """PUBACKs received so far."""
        with self._lock:
            return self._acked

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one QoS 1 message on the topic's connection (or the next one, shuffled)."""
        if self.shuffled:
            client = self.clients[self._next]
            self._next = (self._next + 1) % len(self.clients)
        else:
            client = self.clients[zlib.crc32(topic.encode()) % len(self.clients)]
        client.publish(topic, payload, qos=1)

    def close(self) -> None:
        """Disconnect."""
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class RawPublisherPool(_Acked):
    """:class:`PublisherPool` for the soak, as light as a load generator can be.

    A soak on one machine shares its cores with its own load: paho spends
    tens of microseconds of Python per QoS 1 message and its PUBACK, and the
    pool measured at half a core at 1,800 scans/s, taken from the system
    under test (the gates it stands for run on devices of their own). Here
    each connection is a plain MQTT 3.1.1 socket: PUBLISH packets are framed
    by hand and written with one ``sendall``; a thread per connection counts
    the broker's PUBACKs (fixed 4-byte packets; keep-alive off, so nothing
    else arrives). Same contract as :class:`PublisherPool`: one device's
    scans always go through one connection, in order, at QoS 1.
    """

    def __init__(self, port: int, size: int = PUBLISHERS) -> None:
        self._socks: list[socket.socket] = []
        self._received = [0] * size
        self._ids = [0] * size
        self._readers: list[threading.Thread] = []
        for k in range(size):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client_id = f"soak-pub-{os.getpid()}-{k}".encode()
            # CONNECT: protocol "MQTT" level 4, clean session, keep-alive 0.
            body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
            sock.sendall(b"\x10" + _varint(len(body)) + body)
            connack = b""
            while len(connack) < 4:
                more = sock.recv(4 - len(connack))
                if not more:
                    raise RuntimeError("the broker closed the connection before its CONNACK")
                connack += more
            if connack[0] != 0x20 or connack[3] != 0:
                raise RuntimeError(f"CONNACK refused: {connack!r}")
            self._socks.append(sock)
            reader = threading.Thread(target=self._read, args=(k,), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, k: int) -> None:
        sock = self._socks[k]
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self._received[k] += len(chunk)

    @property
    def acked(self) -> int:
        """PUBACKs received so far."""
        return sum(n // 4 for n in self._received)

    def publish(self, topic: str, payload: bytes) -> None:
        """Write one QoS 1 PUBLISH on the topic's connection."""
        k = zlib.crc32(topic.encode()) % len(self._socks)
        # Packet ids cycle through 1..65535; PUBACKs come back within
        # milliseconds, so an id is never reused while still in flight.
        self._ids[k] = self._ids[k] % 65535 + 1
        name = topic.encode()
        body = len(name).to_bytes(2, "big") + name + self._ids[k].to_bytes(2, "big") + payload
        self._socks[k].sendall(b"\x32" + _varint(len(body)) + body)

    def close(self) -> None:
        """DISCONNECT and close."""
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")
            sock.close()
        for reader in self._readers:
            reader.join(timeout=5)


# --- registry cache ------------------------------------------------------------------


@dataclass
class Registry:
    """The cached registry: a SQLite file, its population output, maybe a PostgreSQL template."""

    citizens: int
    sqlite_path: Path
    pop_dir: Path
    credentials_dir: Path
    pg_template: str | None
    pg_base: str | None
    pg_skip_reason: str | None


def _pg_admin(base_url: str) -> Any:
    return create_engine(normalize_url(base_url), isolation_level="AUTOCOMMIT")


def _pg_reachable(base_url: str) -> str | None:
    admin = _pg_admin(base_url)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "skip PostgreSQL"
        return f"PostgreSQL not reachable at {normalize_url(base_url).render_as_string()}: {exc}"
    finally:
        admin.dispose()
    return None


def _pg_url(base_url: str, name: str) -> str:
    return normalize_url(base_url).set(database=name).render_as_string(hide_password=False)


def _pg_count_citizens(base_url: str, name: str) -> int | None:
    admin = _pg_admin(base_url)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
    finally:
        admin.dispose()
    if not exists:
        return None
    engine = make_engine(_pg_url(base_url, name))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM citizens")).scalar_one())
    except Exception:  # noqa: BLE001 - a half-built cache is rebuilt
        return None
    finally:
        engine.dispose()


def _pg_exec(base_url: str, sql: str) -> None:
    admin = _pg_admin(base_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


def ensure_registry(citizens: int, *, postgres: bool) -> Registry:
    """Build (once) or reuse the registry of ``citizens`` people with the city's devices."""
    root = CACHE / str(citizens)
    manifest_path = root / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    now = time.time()
    fresh = (
        manifest.get("citizens") == citizens
        and manifest.get("seed") == SEED
        and manifest.get("valid_until", 0) > now + 2 * 86_400
        and manifest.get("gates") == GATES
    )
    pop_dir = root / "population"
    sqlite_path = root / "registry.db"
    layout = build_layout(GATES, seed=SEED)
    if not fresh:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        as_of = datetime.fromtimestamp(now // 86_400 * 86_400, UTC)
        print(f"building the {citizens:,}-person registry (once) in {root} ...", flush=True)
        started = time.monotonic()
        build_population(
            PopulationConfig(
                citizens=citizens,
                db_url=f"sqlite:///{sqlite_path}",
                seed=SEED,
                out=pop_dir,
                as_of=as_of,
                valid_days=VALID_DAYS,
            ),
            progress=sys.stderr.isatty(),
        )
        passwords = ensure_credentials(layout, root)
        register_city(f"sqlite:///{sqlite_path}", layout, passwords)
        manifest = {
            "citizens": citizens,
            "seed": SEED,
            "gates": GATES,
            "as_of": as_of.isoformat(),
            "valid_until": as_of.timestamp() + VALID_DAYS * 86_400,
        }
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(f"  built in {time.monotonic() - started:.0f} s", flush=True)

    pg_base = os.environ.get(PG_ENV, PG_DEFAULT)
    pg_template: str | None = None
    skip: str | None = "not asked (--no-postgres)"
    if postgres:
        skip = _pg_reachable(pg_base)
    if postgres and skip is None:
        pg_template = f"kiemdich_bench_ingest_{citizens}"
        if (
            manifest.get("pg_template") != pg_template
            or _pg_count_citizens(pg_base, pg_template) != citizens
        ):
            print(f"building the registry into PostgreSQL {pg_template} (once) ...", flush=True)
            _pg_exec(pg_base, f'DROP DATABASE IF EXISTS "{pg_template}" WITH (FORCE)')
            _pg_exec(pg_base, f'CREATE DATABASE "{pg_template}"')
            pg_out = root / "population-pg"
            build_population(
                PopulationConfig(
                    citizens=citizens,
                    db_url=_pg_url(pg_base, pg_template),
                    seed=SEED,
                    out=pg_out,
                    as_of=datetime.fromisoformat(manifest["as_of"]),
                    valid_days=VALID_DAYS,
                    signing_key=pop_dir / "signing-key.json",
                ),
                progress=sys.stderr.isatty(),
            )
            # Same seed, key and date: the same people and byte-identical tokens.
            with (pop_dir / "tokens.csv").open() as a, (pg_out / "tokens.csv").open() as b:
                if a.read(1 << 20) != b.read(1 << 20):
                    raise RuntimeError("the PostgreSQL registry's tokens differ from SQLite's")
            register_city(_pg_url(pg_base, pg_template), layout, ensure_credentials(layout, root))
            manifest["pg_template"] = pg_template
            manifest_path.write_text(json.dumps(manifest, indent=1))
    return Registry(citizens, sqlite_path, pop_dir, root, pg_template, pg_base, skip)


# --- event stream ---------------------------------------------------------------------


@dataclass
class Stream:
    """Pre-generated scans: (topic, payload) pairs, and the layout they come from."""

    layout: CityLayout
    messages: list[tuple[str, bytes]]
    tokens: list[str] = field(repr=False)


def make_stream(registry: Registry, events: int) -> Stream:
    """``events`` scans of Hà Nội traffic (seeded), with fresh UUIDv7 event ids."""
    layout = build_layout(GATES, seed=SEED)
    config = CityConfig(
        gates=GATES, rate=1000.0, seed=SEED, population_dir=registry.pop_dir, speedup=60.0
    )
    pools = load_token_pools(registry.pop_dir, sample=200_000, seed=SEED)
    now = time.time()
    # The rhythm of a morning in Hà Nội (08:00), whatever the hour the bench runs at.
    morning = datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp()
    model = TrafficModel(layout, pools, config, sim_start=morning, token_now=now)
    seq = [0] * len(layout.devices)
    messages: list[tuple[str, bytes]] = []
    tokens: list[str] = []
    seen_at = datetime.now(UTC)
    for planned in model.scans(duration_s=events / 100):
        device = layout.devices[planned.device]
        event = ScanEvent(
            event_id=new_event_id(),
            device_id=device.id,
            checkpoint_id=device.checkpoint_id,
            lane=device.lane,
            direction=device.direction,
            seq=seq[planned.device],
            seen_at=seen_at,
            token=planned.token,
            decoder="zxing",
            quality=planned.quality,
            frames_seen=planned.frames_seen,
        )
        seq[planned.device] += 1
        messages.append((scan_topic(device.id), encode(event)))
        tokens.append(planned.token)
        if len(messages) == events:
            break
    if len(messages) < events:
        raise RuntimeError(f"the traffic model gave {len(messages)} < {events} events")
    return Stream(layout, messages, tokens)


# --- child processes ---------------------------------------------------------------------


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found = [pid]
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _process_tree(int(child))
    return found


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0  # exited meanwhile
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Child:
    """A benchmark child process printing its counters as JSON lines."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv],
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
            cwd=REPO,
        )
        self.latest: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._lock:
                self.latest = row
                self.history.append(row)

    def snapshot(self) -> dict[str, Any]:
        """The last counters reported."""
        with self._lock:
            return dict(self.latest)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
        """Until the reported counters satisfy ``predicate`` (raises on timeout or exit)."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.snapshot()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"child exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out; last counters {self.snapshot()}")
            time.sleep(0.02)

    def rss_kb(self) -> int:
        """Resident memory of the child and its own children (the aggregator's MQTT link
        process), from /proc."""
        return sum(self.rss_split_kb())

    def rss_split_kb(self) -> tuple[int, int]:
        """Resident memory of the child itself, and of its own children."""
        main, *children = _process_tree(self.proc.pid)
        return _rss_kb(main), sum(_rss_kb(pid) for pid in children)

    def stop(self) -> None:
        """SIGTERM, then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


def _report_loop(stop: threading.Event, counters: Callable[[], dict[str, Any]]) -> None:
    while not stop.is_set():
        print(json.dumps({"t": time.time(), **counters()}), flush=True)
        stop.wait(REPORT_EVERY_S)
    print(json.dumps({"t": time.time(), **counters()}), flush=True)


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def child_aggregator(args: argparse.Namespace) -> int:
    """Run one AggregatorService until SIGTERM, reporting ``service.stats()``."""
    from aggregator.service import AggregatorService
    from aggregator.settings import AggregatorSettings

    stop = _stop_on_sigterm()
    settings = AggregatorSettings(
        environment="development",
        db_url=args.db,
        migrate_on_start=False,
        mqtt_port=args.port,
        client_id=args.client_id,
        keyring_path=args.keyring,
        receive_maximum=RECEIVE_MAXIMUM,
        session_expiry_s=SESSION_EXPIRY_S,
    )
    service = AggregatorService(settings)
    service.start()
    try:
        _report_loop(stop, service.stats)
    finally:
        service.stop()
    return 0


def child_bare(args: argparse.Namespace) -> int:
    """A paho subscriber that only counts (or, with ``--echo``, answers each scan at once)."""
    stop = _stop_on_sigterm()
    lock = threading.Lock()
    counts = {"received": 0, "connected": False}
    client = _client(args.client_id)
    echo = args.echo

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        c.subscribe(shared(ALL_SCANS), qos=1)
        counts["connected"] = True

    def on_message(c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if echo:
            device = message.topic.split("/")[3]
            event_id = json.loads(message.payload)["event_id"]
            c.publish(verdict_topic(device), b'{"event_id":"%s"}' % event_id.encode(), qos=1)
        with lock:
            counts["received"] += 1

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(
        "127.0.0.1", args.port, clean_start=False, properties=_session_properties(RECEIVE_MAXIMUM)
    )
    client.loop_start()

    def snapshot() -> dict[str, Any]:
        with lock:
            return dict(counts)

    _report_loop(stop, snapshot)
    client.disconnect()
    client.loop_stop()
    return 0


# --- measurements --------------------------------------------------------------------------


def _processed(row: dict[str, Any]) -> int:
    if "stored" in row:
        return int(row["stored"]) + int(row["duplicates"]) + int(row["dead_letters"])
    return int(row.get("received", 0))


@dataclass
class Drain:
    """One drain of the queued stream."""

    label: str
    events: int
    seconds: float
    processes: int
    detail: dict[str, Any]

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds


def _first_time(history: list[dict[str, Any]]) -> float:
    for row in history:
        if _processed(row) > 0 or int(row.get("received", 0)) > 0:
            return float(row["t"])
    raise RuntimeError("no message was received")


def drain(
    label: str,
    stream: Stream,
    workdir: Path,
    make_child: Callable[[int, str, int], Child],
    processes: int = 1,
    *,
    shuffled: bool = False,
) -> Drain:
    """Queue the stream at a fresh broker for ``processes`` consumers, then time their drain."""
    n = len(stream.messages)
    with mosquitto(workdir / "broker") as port:
        ids = [f"bench-{label.replace(' ', '-')}-{i}" for i in range(processes)]
        create_sessions(port, ids)
        pool = PublisherPool(port, shuffled=shuffled)
        for topic, payload in stream.messages:
            pool.publish(topic, payload)
        pool.wait_acked(n)
        pool.close()
        children = [make_child(port, client_id, i) for i, client_id in enumerate(ids)]
        try:
            deadline = time.monotonic() + max(600.0, n / 100)
            while sum(_processed(c.snapshot()) for c in children) < n:
                for child in children:
                    if child.proc.poll() is not None:
                        raise RuntimeError(f"child exited: {child.log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: drain timed out")
                time.sleep(0.02)
            done = time.time()
            first = min(_first_time(c.history) for c in children)
            detail = {cid: c.snapshot() for cid, c in zip(ids, children, strict=True)}
        finally:
            for child in children:
                child.stop()
    return Drain(label, n, done - first, processes, detail)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass
class Steady:
    """A paced run: latencies (ms) and the consumer's memory over time."""

    label: str
    sent: int
    answered: int
    p50_ms: float
    p99_ms: float
    rss_kb: list[int]


def _scan_payload(stream: Stream, i: int, seqs: list[int]) -> tuple[str, str, bytes]:
    layout = stream.layout
    device_index = i % len(layout.devices)
    device = layout.devices[device_index]
    event = ScanEvent(
        event_id=new_event_id(),
        device_id=device.id,
        checkpoint_id=device.checkpoint_id,
        lane=device.lane,
        direction=device.direction,
        seq=seqs[device_index],
        seen_at=datetime.now(UTC),
        token=stream.tokens[i % len(stream.tokens)],
        decoder="zxing",
        quality=0.9,
    )
    seqs[device_index] += 1
    return str(event.event_id), scan_topic(device.id), encode(event)


def steady(
    label: str,
    stream: Stream,
    port: int,
    *,
    rate: float,
    seconds: float,
    rss_of: Child | None = None,
) -> Steady:
    """Publish at ``rate``/s for ``seconds``; time each verdict back on the device's topic."""
    arrivals: list[tuple[float, bytes]] = []
    ready = threading.Event()
    listener = _client(f"bench-verdicts-{uuid.uuid4().hex[:6]}")
    listener.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("kd/v1/dev/+/verdict", qos=0)
    listener.on_subscribe = lambda *_a: ready.set()
    # Only record here; JSON is parsed after the run.
    listener.on_message = lambda _c, _u, m: arrivals.append((time.perf_counter(), m.payload))
    listener.connect("127.0.0.1", port)
    listener.loop_start()
    if not ready.wait(10):
        raise RuntimeError("verdict listener did not subscribe")
    pool = PublisherPool(port)
    sent_at: dict[str, float] = {}
    rss: list[int] = []
    seqs = [0] * len(stream.layout.devices)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    next_rss = t0
    for i in range(total):
        due = t0 + i / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        event_id, topic, payload = _scan_payload(stream, i, seqs)
        sent_at[event_id] = time.perf_counter()
        pool.publish(topic, payload)
        if rss_of is not None and time.perf_counter() >= next_rss:
            rss.append(rss_of.rss_kb())
            next_rss += 1.0
    time.sleep(2.0)  # stragglers
    pool.close()
    listener.disconnect()
    listener.loop_stop()
    latencies = []
    for arrived, payload in list(arrivals):
        event_id = json.loads(payload)["event_id"]
        sent = sent_at.pop(event_id, None)
        if sent is not None:
            latencies.append((arrived - sent) * 1000)
    if not latencies:
        raise RuntimeError(f"{label}: no verdict came back")
    return Steady(
        label,
        total,
        len(latencies),
        statistics.median(latencies),
        _percentile(latencies, 0.99),
        rss,
    )


# --- running it all --------------------------------------------------------------------------


def _aggregator_child(workdir: Path, registry: Registry, db_url: str) -> Callable[..., Child]:
    def make(port: int, client_id: str, i: int) -> Child:
        child = Child(
            [
                "--child",
                "aggregator",
                "--db",
                db_url,
                "--port",
                str(port),
                "--client-id",
                client_id,
                "--keyring",
                str(registry.pop_dir / "keyring.json"),
            ],
            workdir / f"{client_id}.log",
        )
        return child

    return make


def _bare_child(workdir: Path, *, echo: bool = False) -> Callable[..., Child]:
    def make(port: int, client_id: str, i: int) -> Child:
        argv = ["--child", "bare", "--port", str(port), "--client-id", client_id]
        return Child([*argv, "--echo"] if echo else argv, workdir / f"{client_id}.log")

    return make


@contextmanager
def sqlite_copy(
    registry: Registry, workdir: Path, name: str, *, source: Path | None = None
) -> Iterator[str]:
    """A fresh copy of the cached SQLite registry (or of ``source``, a store made
    from it), migrated to head."""
    path = workdir / f"{name}.db"
    shutil.copyfile(source or registry.sqlite_path, path)
    url = f"sqlite:///{path}"
    upgrade(url)
    try:
        yield url
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def pg_copy(registry: Registry) -> Iterator[str]:
    """A fresh database cloned from the cached PostgreSQL registry, migrated to head."""
    assert registry.pg_base is not None and registry.pg_template is not None
    name = f"kd_bench_run_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _pg_exec(registry.pg_base, f'CREATE DATABASE "{name}" TEMPLATE "{registry.pg_template}"')
    url = _pg_url(registry.pg_base, name)
    try:
        upgrade(url)
        yield url
    finally:
        _pg_exec(registry.pg_base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _mb(kb: float) -> float:
    return kb / 1024


def _quarters(samples: list[int]) -> tuple[float, float]:
    q = max(1, len(samples) // 4)
    second = samples[q : 2 * q] or samples
    last = samples[-q:]
    return statistics.fmean(second), statistics.fmean(last)


def run(args: argparse.Namespace) -> int:
    """All measurements, then the table."""
    citizens = args.citizens or (20_000 if args.quick else 1_000_000)
    events = args.events or (10_000 if args.quick else 100_000)
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 2.0)
    registry = ensure_registry(citizens, postgres=not args.no_postgres)
    print(f"generating {events:,} scans ...", flush=True)
    stream = make_stream(registry, events)
    workdir = Path(tempfile.mkdtemp(prefix="kd-bench-ingest-"))
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        print("1. bare subscriber drain", flush=True)
        bare = drain("bare", stream, workdir / "bare", _bare_child(workdir))
        print(f"   {bare.rate:,.0f} events/s", flush=True)

        print("2. aggregator on SQLite", flush=True)
        with sqlite_copy(registry, workdir, "drain") as url:
            ours = drain(
                "sqlite", stream, workdir / "sqlite", _aggregator_child(workdir, registry, url)
            )
        print(f"   {ours.rate:,.0f} events/s", flush=True)
        rows.append(
            (
                "ingest SQLite, 1 process (events/s)",
                f"{ours.rate:,.0f}",
                f"bare {bare.rate:,.0f}",
                f"{ours.rate / bare.rate:.0%} of bare",
                f"≥ 5,000/s: {'yes' if ours.rate >= 5000 else 'NO'}",
            )
        )
        print("2b. aggregator on SQLite, gates' scans out of order", flush=True)
        with sqlite_copy(registry, workdir, "shuffled") as url:
            mixed = drain(
                "sqlite-shuffled",
                stream,
                workdir / "shuffled",
                _aggregator_child(workdir, registry, url),
                shuffled=True,
            )
        print(f"   {mixed.rate:,.0f} events/s", flush=True)
        rows.append(
            (
                "  same, each gate's scans out of order",
                f"{mixed.rate:,.0f}",
                f"in order {ours.rate:,.0f}",
                f"{mixed.rate / ours.rate - 1:+.0%}",
                "",
            )
        )

        if registry.pg_template is not None:
            print("3. aggregator on PostgreSQL: 1 process, then 2", flush=True)
            with pg_copy(registry) as url:
                pg1 = drain(
                    "pg1", stream, workdir / "pg1", _aggregator_child(workdir, registry, url)
                )
            print(f"   1 process {pg1.rate:,.0f} events/s", flush=True)
            with pg_copy(registry) as url:
                pg2 = drain(
                    "pg2",
                    stream,
                    workdir / "pg2",
                    _aggregator_child(workdir, registry, url),
                    processes=2,
                )
            print(f"   2 processes {pg2.rate:,.0f} events/s", flush=True)
            gain = pg2.rate / pg1.rate - 1
            rows.append(
                (
                    "ingest PostgreSQL, 1 process (events/s)",
                    f"{pg1.rate:,.0f}",
                    f"bare {bare.rate:,.0f}",
                    f"{pg1.rate / bare.rate:.0%} of bare",
                    "",
                )
            )
            rows.append(
                (
                    "ingest PostgreSQL, 2 processes (events/s)",
                    f"{pg2.rate:,.0f}",
                    f"1 process {pg1.rate:,.0f}",
                    f"{gain:+.0%}",
                    f"≥ +60%: {'yes' if gain >= 0.6 else 'NO'}",
                )
            )
        else:
            rows.append(("ingest PostgreSQL", "skipped", registry.pg_skip_reason or "", "", ""))

        seconds = minutes * 60
        print(f"4./5. steady 1,000 events/s for {seconds:.0f} s: latency and memory", flush=True)
        with mosquitto(workdir / "echo") as port:
            echo = _bare_child(workdir, echo=True)(port, "bench-echo", 0)
            echo.wait_for(lambda r: bool(r.get("connected")), 30)
            floor = steady("echo", stream, port, rate=1000, seconds=min(seconds, 30.0))
            echo.stop()
        with sqlite_copy(registry, workdir, "steady") as url, mosquitto(workdir / "lat") as port:
            agg = _aggregator_child(workdir, registry, url)(port, "bench-steady", 0)
            agg.wait_for(lambda r: bool(r.get("connected")), 120)
            ours_lat = steady("aggregator", stream, port, rate=1000, seconds=seconds, rss_of=agg)
            agg.stop()
        rows.append(
            (
                "scan→verdict p50 / p99 @1,000/s (ms)",
                f"{ours_lat.p50_ms:.1f} / {ours_lat.p99_ms:.1f}",
                f"echo {floor.p50_ms:.1f} / {floor.p99_ms:.1f}",
                f"p99 ×{ours_lat.p99_ms / floor.p99_ms:.1f}",
                f"p99 < 250 ms: {'yes' if ours_lat.p99_ms < 250 else 'NO'}",
            )
        )
        rows.append(
            (
                "verdicts received / scans sent",
                f"{ours_lat.answered:,} / {ours_lat.sent:,}",
                f"echo {floor.answered:,} / {floor.sent:,}",
                "",
                "",
            )
        )
        if len(ours_lat.rss_kb) >= 8:
            q2, q4 = _quarters(ours_lat.rss_kb)
            drift = q4 / q2 - 1
            rows.append(
                (
                    "aggregator RSS, 2nd → last quarter (MiB)",
                    f"{_mb(q2):.1f} → {_mb(q4):.1f}",
                    f"peak {_mb(max(ours_lat.rss_kb)):.1f}",
                    f"{drift:+.1%}",
                    f"flat (±{FLAT_WITHIN:.0%}): {'yes' if abs(drift) <= FLAT_WITHIN else 'NO'}",
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _print_table(citizens, events, minutes, rows)
    return 0


def _print_table(
    citizens: int, events: int, minutes: float, rows: list[tuple[str, str, str, str, str]]
) -> None:
    print(
        f"\n== ingest: {citizens:,} citizens, {events:,} queued scans, "
        f"{minutes:g} min steady ({os.cpu_count()} CPUs; figures are provisional on a busy host)"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    header = ("measure", "ours", "baseline", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run the benchmark or one of its child processes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small registry, short runs")
    parser.add_argument("--citizens", type=int, help="registry size (default 1,000,000)")
    parser.add_argument("--events", type=int, help="queued scans per drain (default 100,000)")
    parser.add_argument("--minutes", type=float, help="steady-load minutes (default 2; 10 = full)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL runs")
    parser.add_argument("--child", choices=("aggregator", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--keyring", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "aggregator":
        return child_aggregator(args)
    if args.child == "bare":
        return child_bare(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
