"""Fault: the aggregator's database is unavailable for a while during a stream of scans.

* PostgreSQL: the machine's server stays up (other tests use it); the
  aggregator reaches the test's own database through a TCP link the test cuts
  (tests/fixtures/netcut.py): open connections dropped, new ones refused, as
  when the server or the network to it goes away.
* SQLite: another process's connection holds ``BEGIN EXCLUSIVE`` on the
  database file for longer than the aggregator's busy timeout (10 s), as an
  operator's long transaction or a backup tool would.

Either way ingestion must back off (``retry_min_s`` doubling up to
``retry_max_s``), acknowledge nothing it has not committed, and resume by
itself: every event stored once, nothing lost. ``/readyz`` must say why it is
not ready meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from aggregator.api.app import create_app
from aggregator.db.engine import SQLITE_BUSY_TIMEOUT_MS
from aggregator.service import AggregatorService
from contract.token import Keyring, SigningKey
from tests.fault_rig import (
    ScanStream,
    engine_url,
    exactly_once,
    passage_count,
    start_aggregator,
)
from tests.fixtures.db import url_string
from tests.fixtures.mqtt import Broker
from tests.fixtures.netcut import NetCutFactory
from tests.ingest_world import build_world, wait_for

RETRY_MIN_S = 0.5
RETRY_MAX_S = 2.0
READY_MAX_LAG_S = 3.0
PG_OUTAGE_S = 5.0
# Longer than the busy timeout, or SQLite would simply wait and no error would be seen.
SQLITE_LOCK_S = SQLITE_BUSY_TIMEOUT_MS / 1000 + 2.0
STREAM = 300
PACE_S = 0.01
_RETRY_LOG = re.compile(r"\((store|look up)\).*?retrying in ([0-9.]+) s")


def retry_delays(caplog: pytest.LogCaptureFixture) -> dict[str, list[float]]:
    """The back-off delays the ingest consumer logged, in order, per step.

    The lookup and the store threads each back off on their own.
    """
    delays: dict[str, list[float]] = {}
    for r in caplog.records:
        if r.name == "aggregator.ingest.consumer" and (m := _RETRY_LOG.search(r.getMessage())):
            delays.setdefault(m[1], []).append(float(m[2]))
    return delays


def assert_backoff(delays: dict[str, list[float]], *, reaches_max: bool) -> None:
    """Each step's delays start at retry_min_s and double, never above retry_max_s."""
    assert delays, "no retry was logged"
    for step, sequence in delays.items():
        assert sequence[0] == RETRY_MIN_S, (step, sequence)
        for earlier, later in itertools.pairwise(sequence):
            assert later in (min(earlier * 2, RETRY_MAX_S), RETRY_MIN_S), (step, sequence)
    if reaches_max:
        assert max(max(sequence) for sequence in delays.values()) == RETRY_MAX_S, delays


def readyz(service: AggregatorService) -> tuple[int, list[str]]:
    """``GET /readyz`` of the service's app: status code and reasons."""
    with TestClient(create_app(service)) as http:
        answer = http.get("/readyz")
    return answer.status_code, list(answer.json().get("reasons", []))


@pytest.fixture
def keyring_file(tmp_path: Path, keyring: Keyring) -> Path:
    path = tmp_path / "keyring.json"
    keyring.save(path)
    return path


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_unreachable_mid_stream_then_back(
    *,
    engine: Engine,
    signing_key: SigningKey,
    keyring_file: Path,
    mosquitto: Broker,
    netcut: NetCutFactory,
    caplog: pytest.LogCaptureFixture,
    reliability: Callable[..., None],
    figures: Callable[[str], None],
) -> None:
    caplog.set_level(logging.WARNING, logger="aggregator.ingest.consumer")
    world = build_world(engine, signing_key)
    link = netcut(engine.url.port or 5432, engine.url.host or "127.0.0.1")
    proxied = url_string(engine.url.set(host=link.host, port=link.port))
    service = start_aggregator(
        proxied,
        mosquitto.port,
        keyring_file,
        retry_min_s=RETRY_MIN_S,
        retry_max_s=RETRY_MAX_S,
        ready_max_lag_s=READY_MAX_LAG_S,
    )
    try:
        assert readyz(service)[0] == 200
        stream = ScanStream(mosquitto.port, world, STREAM, pace_s=PACE_S).start()
        assert wait_for(lambda: passage_count(engine) >= STREAM // 6, timeout=60)

        link.cut()
        cut_at = time.monotonic()
        assert wait_for(lambda: service.stats()["db_retries"] >= 1, timeout=10)
        frozen = passage_count(engine)  # read on the direct connection: the server is up
        code, reasons = readyz(service)
        time.sleep(max(0.0, PG_OUTAGE_S - (time.monotonic() - cut_at)))
        still = passage_count(engine)
        retries_in_outage = int(service.stats()["db_retries"])
        published_at_heal = len(stream.ids)

        link.heal()
        healed_at = time.monotonic()
        assert wait_for(lambda: passage_count(engine) >= published_at_heal, timeout=60)
        recover_s = time.monotonic() - healed_at
        ids = stream.join()
        assert wait_for(lambda: passage_count(engine) >= len(ids), timeout=60)
        assert wait_for(lambda: readyz(service)[0] == 200, timeout=20)
        stats = service.stats()
    finally:
        service.stop()
    totals = exactly_once(engine, ids)
    delays = retry_delays(caplog)
    reliability(
        scenario=f"PostgreSQL unreachable for {PG_OUTAGE_S:.0f} s mid-stream (aggregator)",
        sent=len(ids),
        stored=totals["passages"],
        duplicates=int(stats["duplicates"]),
        lost=len(ids) - totals["passages"],
        recover_s=recover_s,
    )
    figures(
        f"PostgreSQL outage: {retries_in_outage} retries backing off "
        f"{ {step: seq[:6] for step, seq in delays.items()} } s, "
        f"/readyz {code} during it"
    )
    assert code == 503 and any("database unreachable" in r for r in reasons), reasons
    assert still == frozen, "something was committed while the database was unreachable"
    assert stats["received"] >= len(ids)
    # Back-off: from retry_min_s, doubling, never above retry_max_s.
    assert_backoff(delays, reaches_max=True)


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_locked_by_another_process_then_released(
    *,
    engine: Engine,
    signing_key: SigningKey,
    keyring_file: Path,
    mosquitto: Broker,
    caplog: pytest.LogCaptureFixture,
    reliability: Callable[..., None],
    figures: Callable[[str], None],
) -> None:
    caplog.set_level(logging.WARNING, logger="aggregator.ingest.consumer")
    world = build_world(engine, signing_key)
    assert engine.url.database is not None
    service = start_aggregator(
        engine_url(engine),
        mosquitto.port,
        keyring_file,
        retry_min_s=RETRY_MIN_S,
        retry_max_s=RETRY_MAX_S,
        ready_max_lag_s=READY_MAX_LAG_S,
    )
    holder = sqlite3.connect(engine.url.database, timeout=30, isolation_level=None)
    try:
        stream = ScanStream(mosquitto.port, world, STREAM, pace_s=PACE_S).start()
        assert wait_for(lambda: passage_count(engine) >= STREAM // 6, timeout=60)

        holder.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        frozen = passage_count(engine)  # WAL: readers are not blocked, only writers
        assert wait_for(lambda: readyz(service)[0] == 503, timeout=SQLITE_LOCK_S)
        code, reasons = readyz(service)
        assert wait_for(lambda: service.stats()["db_retries"] >= 1, timeout=SQLITE_LOCK_S)
        time.sleep(max(0.0, SQLITE_LOCK_S - (time.monotonic() - locked_at)))
        still = passage_count(engine)
        published_at_release = len(stream.ids)
        holder.execute("ROLLBACK")
        released_at = time.monotonic()

        assert wait_for(lambda: passage_count(engine) >= published_at_release, timeout=60)
        recover_s = time.monotonic() - released_at
        ids = stream.join()
        assert wait_for(lambda: passage_count(engine) >= len(ids), timeout=60)
        assert wait_for(lambda: readyz(service)[0] == 200, timeout=20)
        stats = service.stats()
    finally:
        holder.close()
        service.stop()
    totals = exactly_once(engine, ids)
    delays = retry_delays(caplog)
    reliability(
        scenario=f"SQLite locked by another process for {SQLITE_LOCK_S:.0f} s mid-stream",
        sent=len(ids),
        stored=totals["passages"],
        duplicates=int(stats["duplicates"]),
        lost=len(ids) - totals["passages"],
        recover_s=recover_s,
    )
    figures(
        f"SQLite lock: {stats['db_retries']} retries after the {SQLITE_BUSY_TIMEOUT_MS} ms busy "
        f"timeout ({delays} s), /readyz {code}: {reasons}"
    )
    # The database answers reads (WAL), so readiness fails on the ingest lag, and says so.
    assert code == 503 and any("lag" in r for r in reasons), reasons
    assert not any("database unreachable" in r for r in reasons), reasons
    assert still == frozen, "something was committed while another process held the lock"
    assert_backoff(delays, reaches_max=False)
