"""WAL checkpoints on their own thread: real SQLite files, real PostgreSQL for the no-op."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from aggregator.db.checkpoint import WalCheckpointer
from aggregator.db.engine import make_engine


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def _autocheckpoint(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())


def _write(engine: Engine, commits: int, rows: int = 50) -> None:
    blob = "x" * 2000
    for i in range(commits):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO t (k, v) VALUES (:k, :v)"),
                [{"k": i * rows + j, "v": blob} for j in range(rows)],
            )


@pytest.fixture
def sqlite_engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield engine
    engine.dispose()


def test_commits_no_longer_checkpoint_and_the_thread_does(sqlite_engine: Engine) -> None:
    ckpt = WalCheckpointer(sqlite_engine, interval_s=0.05)
    assert _autocheckpoint(sqlite_engine) == 1000
    ckpt.start()
    try:
        assert ckpt.active
        assert _autocheckpoint(sqlite_engine) == 0
        _write(sqlite_engine, commits=40)
        _wait_for(lambda: ckpt.checkpoints >= 3)
    finally:
        ckpt.stop()
    assert not ckpt.active
    # Without the thread, the commits checkpoint again.
    assert _autocheckpoint(sqlite_engine) == 1000
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 40 * 50


def test_a_grown_wal_is_truncated(sqlite_engine: Engine, tmp_path: Path) -> None:
    wal = tmp_path / "wal.db-wal"
    ckpt = WalCheckpointer(sqlite_engine, interval_s=0.05, truncate_above_bytes=256 * 1024)
    ckpt.start()
    try:
        # A reader holding a snapshot keeps passive checkpoints from finishing,
        # so the WAL grows past the bound while it reads.
        with sqlite_engine.connect() as reader:
            reader.execute(text("SELECT count(*) FROM t")).scalar_one()
            _write(sqlite_engine, commits=20)
            assert wal.stat().st_size > 256 * 1024
            reader.commit()
        _wait_for(lambda: ckpt.truncations >= 1 and wal.stat().st_size == 0)
    finally:
        ckpt.stop()
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 20 * 50
        assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"


def test_a_failing_checkpoint_does_not_stop_the_thread(sqlite_engine: Engine) -> None:
    ckpt = WalCheckpointer(sqlite_engine, interval_s=0.05)
    calls = {"n": 0}
    real = ckpt.checkpoint

    def flaky(conn: object) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("disk I/O error")
        real(conn)

    ckpt.checkpoint = flaky  # type: ignore[method-assign]
    ckpt.start()
    try:
        _write(sqlite_engine, commits=5)
        _wait_for(lambda: ckpt.checkpoints >= 2)
    finally:
        ckpt.stop()
    assert calls["n"] >= 4


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///file:mem?mode=memory&uri=true"])
def test_memory_databases_are_left_alone(url: str) -> None:
    engine = make_engine(url)
    ckpt = WalCheckpointer(engine)
    ckpt.start()
    assert not ckpt.active
    ckpt.stop()
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_is_left_alone(engine: Engine) -> None:
    ckpt = WalCheckpointer(engine)
    ckpt.start()
    assert not ckpt.active
    ckpt.stop()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
