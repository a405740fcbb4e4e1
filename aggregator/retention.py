"""The retention job: :func:`aggregator.db.retention.run_retention` on a timer, one run at a time.

The aggregator service starts a :class:`RetentionJob` as one of its steps
(unless ``retention_days`` is 0): the first run comes ``retention_start_delay_s``
after start-up, then one every ``retention_interval_s``. Every aggregator
process runs the job; :func:`~aggregator.db.retention.retention_lock` lets only
one of them work at a time, the others skip that turn. ``kiemdich retention
run`` does the same once, from the command line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import TypeAdapter
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db.retention import RetentionPolicy, RetentionReport, retention_lock, run_retention
from aggregator.settings import ENV_PREFIX, AggregatorSettings

log = logging.getLogger(__name__)

# RetentionPolicy field -> AggregatorSettings field.
POLICY_SETTINGS: dict[str, str] = {
    "retention_days": "retention_days",
    "unhandled_notification_days": "unhandled_notification_days",
    "alert_retention_days": "alert_retention_days",
    "rollup_retention_days": "rollup_retention_days",
    "audit_retention_days": "audit_retention_days",
    "chunk_rows": "retention_chunk_rows",
    "pause_s": "retention_pause_s",
}


def policy_from_settings(settings: AggregatorSettings) -> RetentionPolicy:
    """The retention policy the service's settings describe."""
    return RetentionPolicy(
        **{field: getattr(settings, name) for field, name in POLICY_SETTINGS.items()}
    )


def policy_from_environment(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> RetentionPolicy:
    """The policy from ``KIEMDICH_RETENTION_DAYS`` etc., checked as the service checks them.

    Only the retention fields are read (with the service's own field
    constraints), so a cron job or a shell needs no broker secrets. ``overrides``
    (policy field names; None means "not given") win. Raises ``ValueError`` for
    a bad value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, name in POLICY_SETTINGS.items():
        if overrides.get(field) is not None:
            raw: Any = overrides[field]
        else:
            raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        info = AggregatorSettings.model_fields[name]
        if raw is None:
            values[field] = info.default
            continue
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, *info.metadata])
        try:
            values[field] = adapter.validate_python(raw)
        except ValueError as exc:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return RetentionPolicy(**values)


def run_locked(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> RetentionReport | None:
    """One run under the retention lock; None when another process is running one."""
    with retention_lock(engine) as got:
        if not got:
            log.info("retention: another process is running it; skipped")
            return None
        report = run_retention(
            engine,
            policy,
            now=now,
            dry_run=dry_run,
            should_stop=stop.is_set if stop is not None else None,
        )
    log.info("retention%s: %s", " (dry run)" if dry_run else "", report.summary())
    return report


class RetentionJob:
    """A thread running the retention policy once after a delay, then every interval."""

    def __init__(
        self,
        engine: Engine,
        policy: RetentionPolicy,
        *,
        interval_s: float,
        start_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.interval_s = interval_s
        self.start_delay_s = start_delay_s
        self.runs = 0
        self.skipped = 0
        self.failures = 0
        self.last: RetentionReport | None = None
        self._halt = threading.Event()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    def run_once(
        self, *, dry_run: bool = False, now: datetime | None = None
    ) -> RetentionReport | None:
        """Run now in the caller's thread (None when another process holds the lock)."""
        report = run_locked(self.engine, self.policy, dry_run=dry_run, now=now, stop=self._halt)
        with self._done:
            if report is None:
                self.skipped += 1
            else:
                self.runs += 1
                if not dry_run:
                    self.last = report
            self._done.notify_all()
        return report

    def wait_for_runs(self, count: int, timeout: float) -> bool:
        """Block until ``count`` runs (or skips) finished; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.runs + self.skipped >= count, timeout)

    def _loop(self) -> None:
        delay = self.start_delay_s
        while not self._halt.wait(delay):
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                self.failures += 1
                log.warning("retention run failed, retrying at the next interval: %s", exc)
            # The thread must outlive any bug: the next interval tries again.
            except Exception:
                self.failures += 1
                log.exception("retention run failed")
            delay = self.interval_s

    def start(self) -> None:
        """Start the thread (first run after ``start_delay_s``)."""
        if self._thread is not None:
            raise RuntimeError("the retention job is already started")
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a run in progress ends after its current chunk."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
