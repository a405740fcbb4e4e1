"""``make soak``: sustained load at the ingest benchmark's rate for 10 minutes.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--rate N] [--quick]

The same set-up as :mod:`benchmarks.bench_ingest` (private mosquitto, the
aggregator in its own process on a copy of the 1,000,000-person SQLite
registry, the city simulator's Hà Nội traffic), except that the store is not
empty: a store in service holds the passages of its retention window, and a
store that grows from nothing runs faster at first than it can for long
(each batch writes several times the pages once the indexes outgrow the
cache). So the registry's copy first gets ``--history`` passages (default
2,000,000, spread over the 27 days before, inside the 28 retention keeps; built once and cached
beside the registry, in a minute or two). On copies of that store two
probes measure the rate this machine sustains: a queued drain (the
aggregator alone, as :mod:`benchmarks.bench_ingest` measures it), then
scans published live at the drain's rate for 90 s, where the broker serves
the gates' connections and the load generator takes its share of the same
cores, as in the soak (the commit rate over the last minute). Then, on
another copy, scans are published live at ``--load`` (default 80 %) of the
lower of the two, or at ``--rate``, for ``--minutes``. Every
second the aggregator's RSS (with its MQTT child; both are also printed
apart) and ingest lag are sampled. The scans go out through
:class:`~benchmarks.bench_ingest.RawPublisherPool` (MQTT framed by hand on
plain sockets): the load generator shares the machine with the system under
test, and paho's publisher took half a core of two from it. Its own CPU is
printed with the results.

It passes when, at the end:

- nothing is lost: every scan sent is in ``passages`` or ``dead_letters``,
  once (the stream holds garbage codes, which are dead letters by design);
- memory is flat: the last quarter's mean RSS is within 5 % of the second
  quarter's (the first quarter is warm-up: caches, SQLite's page cache);
- lag stays bounded: the worst lag sampled from publication to commit (the
  broker's queue included, the catch-up after the last publication too) is
  under ``--max-lag`` s. The aggregator's own lag metric (received, not yet
  committed) is printed beside it; alone it would hide a backlog waiting in
  the broker, which sends no more than our Receive Maximum at a time.

Not part of ``make test`` (it takes the machine for ten minutes).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from aggregator.db.migrate import upgrade
from benchmarks import bench_ingest as bench
from benchmarks import bench_tracing
from simulators.city import build_layout

FLAT_WITHIN = 0.05
TICK_S = 0.002
LIVE_PROBE_S = 90.0
DEFAULT_HISTORY = 2_000_000
# Inside the 28 days retention keeps (AggregatorSettings.retention_days), so the
# aggregator's retention run deletes none of it during the soak.
HISTORY_DAYS = 27


def ensure_history(registry: bench.Registry, citizens: int, passages_n: int) -> Path | None:
    """The cached registry plus ``passages_n`` passages of the last 27 days (built once).

    The passages are those of the benchmark's gates, in time order with UUIDv7
    ids (as ingest appends them), by citizens drawn uniformly from the
    registry; loaded with the indexes dropped and built again after, as
    :mod:`benchmarks.bench_tracing` does. None for no history.
    """
    if passages_n <= 0:
        return None
    path = registry.sqlite_path.with_name(f"history-{passages_n}.db")
    if path.exists() and path.stat().st_mtime >= registry.sqlite_path.stat().st_mtime:
        return path
    print(f"adding {passages_n:,} passages of past traffic to the registry (once) ...", flush=True)
    started = time.monotonic()
    building = path.with_name(path.name + ".building")
    shutil.copyfile(registry.sqlite_path, building)
    url = f"sqlite:///{building}"
    upgrade(url)
    layout = build_layout(bench.GATES, seed=bench.SEED)
    gates = [(d.id, d.checkpoint_id, d.lane, str(d.direction.value)) for d in layout.devices]
    end = datetime.now(UTC) - timedelta(hours=1)
    rows = bench_tracing.passage_rows(
        passages_n,
        citizens_n=citizens,
        gates=gates,
        weights=[1.0] * len(gates),
        start=end - timedelta(days=HISTORY_DAYS),
        span=timedelta(days=HISTORY_DAYS),
        rng=random.Random(bench.SEED),
        sqlite=True,
    )
    engine = create_engine(url)
    try:
        bench_tracing.bulk_sqlite(engine, rows)
    finally:
        engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    building.replace(path)
    print(f"   {passages_n:,} passages in {time.monotonic() - started:.0f} s", flush=True)
    return path


def _counts(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            passages = conn.execute(text("SELECT count(*) FROM passages")).scalar_one()
            distinct = conn.execute(
                text("SELECT count(DISTINCT event_id) FROM passages")
            ).scalar_one()
            letters = conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()
    finally:
        engine.dispose()
    return int(passages), int(distinct), int(letters)


@contextmanager
def _live_rig(
    registry: bench.Registry, workdir: Path, history: Path | None, name: str
) -> Iterator[tuple[str, bench.Child, bench.RawPublisherPool]]:
    """A copy of the store, a private broker, the aggregator connected, publishers."""
    with (
        bench.sqlite_copy(registry, workdir, name, source=history) as url,
        bench.mosquitto(workdir / f"{name}-broker") as port,
    ):
        agg = bench._aggregator_child(workdir, registry, url)(port, name, 0)
        pool = None
        try:
            agg.wait_for(lambda r: bool(r.get("connected")), 120)
            pool = bench.RawPublisherPool(port)
            yield url, agg, pool
        finally:
            # Both are idempotent: the soak closes and stops them itself, in its order.
            if pool is not None:
                pool.close()
            agg.stop()


def _publish_live(
    pool: bench.RawPublisherPool,
    stream: bench.Stream,
    *,
    rate: float,
    total: int,
    t0: float,
    on_second: Callable[[float, int], None],
) -> None:
    """Publish ``total`` scans, scan k at ``t0 + k / rate``; ``on_second(now, published)``
    about once a second."""
    seqs = [0] * len(stream.layout.devices)
    next_sample = t0
    for i in range(total):
        due = t0 + i / rate
        now = time.perf_counter()
        if due > now:
            # Woken a tick late, it publishes the scans due meanwhile back to
            # back: one wake-up per few scans, not one per scan (the load
            # generator shares the machine with what it measures).
            time.sleep(due - now + TICK_S)
        _event_id, topic, payload = bench._scan_payload(stream, i, seqs)
        pool.publish(topic, payload)
        if now >= next_sample:
            on_second(now, i)
            next_sample += 1.0


def live_probe(
    stream: bench.Stream,
    workdir: Path,
    registry: bench.Registry,
    history: Path | None,
    *,
    rate: float,
    seconds: float = LIVE_PROBE_S,
) -> float:
    """The commit rate while scans are published live at ``rate`` (above what the
    machine holds) on a copy of the store: over the last two thirds, once the
    backlog has built. The queued drain measures the aggregator alone; live,
    the broker takes the gates' connections and the load generator its share
    of the same cores, as in the soak."""
    marks: list[tuple[float, int]] = []
    with _live_rig(registry, workdir, history, "live") as (_url, agg, pool):

        def mark(now: float, _published: int) -> None:
            snap = agg.snapshot()
            marks.append((now, int(snap["stored"]) + int(snap["dead_letters"])))

        t0 = time.perf_counter()
        _publish_live(pool, stream, rate=rate, total=int(rate * seconds), t0=t0, on_second=mark)
    (t1, n1), (t2, n2) = marks[len(marks) // 3], marks[-1]
    return (n2 - n1) / (t2 - t1)


def _per_minute(samples_kb: list[int]) -> str:
    """Mean RSS of each minute of 1 s samples, in MiB: shows a plateau or a climb."""
    return " ".join(
        f"{bench._mb(statistics.fmean(samples_kb[k : k + 60])):.0f}"
        for k in range(0, len(samples_kb), 60)
    )


def soak(args: argparse.Namespace) -> int:
    """Measure the sustainable rate, hold a share of it for ``minutes``, judge the run."""
    citizens = args.citizens or (20_000 if args.quick else 1_000_000)
    registry = bench.ensure_registry(citizens, postgres=False)
    history_n = max(
        0, args.history if args.history is not None else (0 if args.quick else DEFAULT_HISTORY)
    )
    history = ensure_history(registry, citizens, history_n)
    # As many scans as the benchmark's drain: a shorter drain measures a rate
    # the store cannot hold once it has grown.
    stream = bench.make_stream(registry, 100_000 if not args.quick else 5_000)
    workdir = Path(tempfile.mkdtemp(prefix="kd-soak-"))
    try:
        rate = args.rate
        if rate is None:
            print("measuring the sustained SQLite rate (queued drain) ...", flush=True)
            with bench.sqlite_copy(registry, workdir, "probe", source=history) as url:
                probe = bench.drain(
                    "probe",
                    stream,
                    workdir / "probe",
                    bench._aggregator_child(workdir, registry, url),
                )
            print(f"   drain {probe.rate:,.0f}/s; published live at that rate ...", flush=True)
            live = live_probe(stream, workdir, registry, history, rate=probe.rate)
            sustained = min(probe.rate, live)
            rate = max(50.0, sustained * args.load)
            print(
                f"   committed live {live:,.0f}/s → soak at {rate:,.0f}/s "
                f"({args.load:.0%} of {sustained:,.0f}/s)"
            )
        seconds = args.minutes * 60
        total = int(rate * seconds)
        print(f"soak: {rate:,.0f} scans/s for {seconds:.0f} s ({total:,} scans) ...", flush=True)
        with _live_rig(registry, workdir, history, "soak") as (url, agg, pool):
            cpu0 = time.process_time()
            rss_main: list[int] = []  # the aggregator process, then its MQTT child
            rss_link: list[int] = []
            lags: list[float] = []  # the aggregator's own: received, not yet committed
            e2e: list[float] = []  # publication to commit, the broker's queue included
            t0 = time.perf_counter()

            def sample(now: float, published: int) -> None:
                snap = agg.snapshot()
                # Redeliveries found already stored count as duplicates, not progress.
                done = int(snap["stored"]) + int(snap["dead_letters"])
                main_kb, link_kb = agg.rss_split_kb()
                rss_main.append(main_kb)
                rss_link.append(link_kb)
                lags.append(float(snap.get("lag_s") or 0.0))
                # Scans are committed in about the order they were published, and
                # scan k was due at t0 + k / rate: the oldest one not committed
                # has waited this long.
                e2e.append(max(0.0, now - (t0 + done / rate)) if done < published else 0.0)

            _publish_live(pool, stream, rate=rate, total=total, t0=t0, on_second=sample)
            pool.wait_acked(total)
            published_s = time.perf_counter() - t0
            # The load generator's own share of the machine (it runs beside the system
            # under test): this process, its publishing and sampling threads included.
            generator_cpu = (time.process_time() - cpu0) / published_s
            pool.close()
            deadline = time.monotonic() + 900
            while True:
                snap = agg.snapshot()
                if int(snap["stored"]) + int(snap["dead_letters"]) >= total:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the aggregator did not catch up within 900 s")
                sample(time.perf_counter(), total)
                time.sleep(1.0)
            caught_up_s = time.perf_counter() - t0 - published_s
            final = agg.snapshot()
            agg.stop()
            passages, distinct, letters = _counts(url)
    finally:
        if args.keep:
            print(f"kept: {workdir} (aggregator and broker logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # The history's passages are distinct and not the soak's.
    distinct -= history_n
    passages -= history_n
    lost = total - distinct - letters
    duplicates = passages - distinct
    q2, q4 = bench._quarters([m + c for m, c in zip(rss_main, rss_link, strict=True)])
    drift = q4 / q2 - 1
    worst_lag = max(e2e) if e2e else 0.0
    flat = abs(drift) <= FLAT_WITHIN
    bounded = worst_lag <= args.max_lag
    print(
        f"\n== soak: {citizens:,} citizens, {history_n:,} passages before, "
        f"{rate:,.0f} scans/s for {seconds:.0f} s "
        f"(published in {published_s:.0f} s: {total / published_s:,.0f}/s; "
        f"caught up {caught_up_s:.1f} s after)"
    )
    rows = [
        ("scans sent", f"{total:,}", ""),
        ("stored / dead letters", f"{distinct:,} / {letters:,}", ""),
        ("duplicates stored", f"{duplicates:,}", "0: " + ("yes" if duplicates == 0 else "NO")),
        ("lost", f"{lost:,}", "0: " + ("yes" if lost == 0 else "NO")),
        (
            "aggregator RSS, 2nd → last quarter (MiB)",
            f"{bench._mb(q2):.1f} → {bench._mb(q4):.1f} ({drift:+.1%})",
            f"flat (±{FLAT_WITHIN:.0%}): {'yes' if flat else 'NO'}",
        ),
        *(
            (
                f"  of it the {name} (MiB)",
                f"{bench._mb(a):.1f} → {bench._mb(b):.1f} ({(b / a - 1 if a else 0):+.1%})",
                "",
            )
            for name, (a, b) in (
                ("aggregator process", bench._quarters(rss_main)),
                ("MQTT child", bench._quarters(rss_link)),
            )
        ),
        *(
            (f"  {name}, mean of each minute (MiB)", _per_minute(samples), "")
            for name, samples in (("aggregator process", rss_main), ("MQTT child", rss_link))
        ),
        (
            "lag publish → commit, median / worst (s)",
            f"{statistics.median(e2e) if e2e else 0:.2f} / {worst_lag:.2f}",
            f"≤ {args.max_lag:g} s: {'yes' if bounded else 'NO'}",
        ),
        (
            "  worst in each minute (s)",
            " ".join(f"{max(e2e[k : k + 60]):.1f}" for k in range(0, len(e2e), 60)),
            "publishing minutes, then the catch-up",
        ),
        (
            "  of it inside the aggregator (s)",
            f"{statistics.median(lags) if lags else 0:.2f} / {max(lags) if lags else 0:.2f}",
            "the rest waited in the broker",
        ),
        ("verdicts sent", f"{int(final.get('verdicts_sent', 0)):,}", ""),
        ("load generator's CPU while publishing", f"{generator_cpu:.0%} of a core", ""),
        ("redeliveries found stored", f"{int(final.get('duplicates', 0)):,}", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0 if (lost == 0 and duplicates == 0 and flat and bounded) else 1


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--rate", type=float, help="scans/s (default: --load × measured rate)")
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured rate")
    parser.add_argument("--max-lag", type=float, default=5.0, help="worst lag allowed (s)")
    parser.add_argument("--citizens", type=int, help="registry size (default 1,000,000)")
    parser.add_argument(
        "--history",
        type=int,
        help=f"passages in the store before the soak (default {DEFAULT_HISTORY:,}; 0 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 citizens, no history")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    return soak(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
