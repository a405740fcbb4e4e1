"""The fleet as every aggregator sees it: device status messages, in memory and in the store.

Each status (``kd/v1/dev/<id>/status``, retained, last will = offline)
updates the in-memory view the dashboards read and is passed to the time
series; the store's ``devices.state``, ``last_seen_at`` and ``clock_skew_s``
are written by a background thread about once a second, in one statement for
every device that changed. The clock skew is the device's ``at`` minus our
receive time (positive: the device is ahead); statuses replayed by the broker
on subscribe (retained) are old, so they update the state but not the last
seen time nor the skew.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db.engine import write_transaction
from aggregator.db.fleet import DeviceStatusRow, record_device_status
from aggregator.ingest.control import Received
from aggregator.timeseries import TimeSeriesWriter
from contract.messages import MAX_STATUS_BYTES, DeviceState, DeviceStatus, Rejected, parse_message
from contract.topics import Kind, parse_device_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One device as the dashboards show it."""

    device_id: str
    checkpoint_id: str
    state: DeviceState
    status: DeviceStatus
    last_seen_at: datetime
    clock_skew_s: float | None


class FleetState:
    """Consumes device statuses; answers "which devices are online" from memory."""

    def __init__(
        self, engine: Engine, timeseries: TimeSeriesWriter, *, flush_interval_s: float = 1.0
    ) -> None:
        self.engine = engine
        self.timeseries = timeseries
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceView] = {}
        self._dirty: dict[str, DeviceStatusRow] = {}
        self.rejected: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- input (MQTT network thread) --------------------------------------------

    def on_status(self, message: Received) -> None:
        """Handle one status message (never raises on hostile payloads)."""
        topic = parse_device_topic(message.topic)
        if topic is None or topic.kind is not Kind.STATUS:
            self.rejected["bad_topic"] += 1
            return
        parsed = parse_message(DeviceStatus, message.payload, max_bytes=MAX_STATUS_BYTES)
        if isinstance(parsed, Rejected):
            self.rejected[parsed.reason.value] += 1
            log.warning("status from %s refused: %s", topic.device_id, parsed.detail)
            return
        if parsed.device_id != topic.device_id:
            self.rejected["topic_mismatch"] += 1
            return
        if message.retained:
            skew = None
            seen = min(parsed.at, message.received_at)
        else:
            # A last will is published by the broker long after the device wrote
            # its ``at`` (when it connected): it says nothing of the clock.
            live = parsed.state is not DeviceState.OFFLINE
            skew = (parsed.at - message.received_at).total_seconds() if live else None
            seen = message.received_at
            self.timeseries.device_status(parsed, message.received_at)
        with self._lock:
            previous = self._devices.get(parsed.device_id)
            if previous is not None and previous.last_seen_at > seen:
                return  # an older status replayed after a newer one
            if skew is None and previous is not None:
                skew = previous.clock_skew_s
            self._devices[parsed.device_id] = DeviceView(
                parsed.device_id, parsed.checkpoint_id, parsed.state, parsed, seen, skew
            )
            self._dirty[parsed.device_id] = DeviceStatusRow(
                parsed.device_id, parsed.state.value, seen, skew
            )

    # --- views --------------------------------------------------------------------

    def snapshot(self) -> list[DeviceView]:
        """Every device that has reported, by id."""
        with self._lock:
            return [self._devices[k] for k in sorted(self._devices)]

    def get(self, device_id: str) -> DeviceView | None:
        """One device's latest view, or None if it never reported."""
        with self._lock:
            return self._devices.get(device_id)

    def online_count(self) -> int:
        """How many devices last said they are online."""
        with self._lock:
            return sum(1 for d in self._devices.values() if d.state is DeviceState.ONLINE)

    # --- store --------------------------------------------------------------------

    def flush(self) -> int:
        """Write the devices that changed since the last flush; returns how many rows."""
        with self._lock:
            rows = list(self._dirty.values())
            self._dirty.clear()
        if not rows:
            return 0
        try:
            with write_transaction(self.engine) as conn:
                return record_device_status(conn, rows=rows)
        except SQLAlchemyError as exc:
            log.warning("could not store device states, retrying: %s", exc)
            with self._lock:
                for row in rows:
                    self._dirty.setdefault(row.device_id, row)
            return 0

    def start(self) -> None:
        """Start the background flusher."""
        self._thread = threading.Thread(target=self._run, name="fleet-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher after a last flush."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()
