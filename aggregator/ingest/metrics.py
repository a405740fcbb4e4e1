"""Prometheus metrics of one aggregator process, in a private registry.

A private registry (not the library's global one) so several services can
live in one process (tests, benchmarks) without colliding, and ``/metrics``
shows exactly this service.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class IngestMetrics:
    """Every metric the aggregator exports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "kiemdich_ingest_received", "Scan messages received from the broker", registry=r
        )
        self.stored = Counter(
            "kiemdich_ingest_stored", "Passages newly stored (exactly once)", registry=r
        )
        self.duplicates = Counter(
            "kiemdich_ingest_duplicates", "Scan events already stored (redelivery)", registry=r
        )
        self.dead_letters = Counter(
            "kiemdich_ingest_dead_letters", "Messages set aside, by reason", ["reason"], registry=r
        )
        self.alerts = Counter(
            "kiemdich_ingest_alerts", "Alerts raised, by kind", ["kind"], registry=r
        )
        self.verdicts_sent = Counter(
            "kiemdich_ingest_verdicts_sent", "Verdicts published to gates", registry=r
        )
        self.batches = Counter("kiemdich_ingest_batches", "Batches committed", registry=r)
        self.db_retries = Counter(
            "kiemdich_ingest_db_retries", "Batches retried after a database error", registry=r
        )
        self.batch_size = Histogram(
            "kiemdich_ingest_batch_size", "Messages per batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "kiemdich_ingest_batch_seconds",
            "Time to store one batch (transaction, commit included)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.scan_to_verdict = Histogram(
            "kiemdich_scan_to_verdict_seconds",
            "From the gate's seen_at to the verdict's publication (gate clock vs ours)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "kiemdich_ingest_lag_seconds",
            "Age of the oldest message received but not yet committed",
            registry=r,
        )
        self.queue_depth = Gauge(
            "kiemdich_ingest_queue_depth", "Messages waiting for the worker", registry=r
        )
        self.mqtt_connected = Gauge(
            "kiemdich_mqtt_connected", "1 while the ingest MQTT client is connected", registry=r
        )
        self.devices_online = Gauge(
            "kiemdich_devices_online", "Devices whose last status says online", registry=r
        )
        self.denylist_revision = Gauge(
            "kiemdich_denylist_revision", "Revision of the deny-list last published", registry=r
        )
        self.denylist_entries = Gauge(
            "kiemdich_denylist_entries", "Entries in the deny-list last published", registry=r
        )

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Have ``gauge`` read its value from ``read`` at every scrape."""
        gauge.set_function(read)
