"""``kiemdich retention run [--dry-run]``: apply the data retention policy once, now.

    kiemdich retention run --dry-run        # count what would be deleted
    kiemdich retention run                  # delete it, print the counts per table

The policy comes from the same ``KIEMDICH_*`` variables as the service
(``KIEMDICH_RETENTION_DAYS``, ``KIEMDICH_ALERT_RETENTION_DAYS``, ...; see
:mod:`aggregator.settings`); options given here win. ``--url`` defaults to
``KIEMDICH_DB_URL``, else the embedded SQLite file. The run takes the same lock
as the service's job: while an aggregator is running one, this waits for
nothing and exits with status 3.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from aggregator.db.engine import default_url, make_engine
from aggregator.db.retention import RetentionReport
from aggregator.retention import policy_from_environment, run_locked

EXIT_BUSY = 3


def format_report(report: RetentionReport) -> str:
    """The counts per table as the command prints them."""
    if report.cutoffs is None:
        return "Lưu giữ dữ liệu đang tắt (retention_days=0) / retention is off: nothing deleted"
    verb = "sẽ xoá / would delete" if report.dry_run else "đã xoá / deleted"
    cut = report.cutoffs
    lines = [
        f"Lưu giữ dữ liệu / retention{' (chạy thử / dry run)' if report.dry_run else ''}",
        f"  mốc lượt qua / passages cutoff: {cut.passages.isoformat()}",
        f"  mốc cảnh báo / alerts cutoff: {cut.alerts.isoformat() if cut.alerts else '—'}",
        f"  mốc thống kê / rollups cutoff: {cut.rollups.isoformat() if cut.rollups else '—'}",
        f"  {'bảng / table':<28} {verb}",
    ]
    lines += [f"  {table:<28} {count:>10}" for table, count in report.counts.items()]
    lines.append(f"  {'tổng / total':<28} {report.total:>10}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        policy = policy_from_environment(
            retention_days=args.days,
            alert_retention_days=args.alert_days,
            chunk_rows=args.chunk_rows,
            pause_s=0.0 if args.no_pause else None,
        )
    except ValueError as exc:
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(args.url)
    try:
        report = run_locked(engine, policy, dry_run=args.dry_run)
    except SQLAlchemyError as exc:
        print(f"Lỗi CSDL / database error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if report is None:
        print(
            "Một tiến trình khác đang chạy lưu giữ dữ liệu / another process is running "
            "retention; try again later",
            file=sys.stderr,
        )
        return EXIT_BUSY
    print(format_report(report))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``retention`` command group (``run``) to a CLI."""
    group = subparsers.add_parser(
        "retention", help="Lưu giữ dữ liệu / data retention (delete old rows)"
    )
    actions = group.add_subparsers(dest="retention_command", required=True)
    run = actions.add_parser(
        "run", help="Xoá dữ liệu quá hạn ngay / apply the retention policy now"
    )
    run.add_argument(
        "--url",
        default=default_url(),
        help="URL CSDL / database URL (default KIEMDICH_DB_URL, else the SQLite file)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="chỉ đếm, không xoá / count what would be deleted, delete nothing",
    )
    run.add_argument("--days", type=int, default=None, help="override retention_days")
    run.add_argument("--alert-days", type=int, default=None, help="override alert_retention_days")
    run.add_argument("--chunk-rows", type=int, default=None, help="override retention_chunk_rows")
    run.add_argument(
        "--no-pause",
        action="store_true",
        help="no pause between transactions (nothing else is writing)",
    )
    run.set_defaults(func=_run)
