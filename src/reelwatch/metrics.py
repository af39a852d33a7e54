"""Prometheus metrics, on a registry of their own (one per app, never the global default)."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reelwatch import lifecycle
from reelwatch.models import Status
from reelwatch.store import Store

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
DOWNLOAD_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

EXPIRING_WITHIN = timedelta(minutes=10)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Everything reelwatch counts; the engine records, `/metrics` renders.

    `tables=False` leaves out the gauges that are facts about the whole table (generations by
    status, queue depth, oldest active): a separate worker process exposes only what it did,
    and the server's `/metrics` reports the table once, not once per worker.
    """

    def __init__(self, *, tables: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        table = r if tables else None
        self.generations = Gauge(
            "reelwatch_generations", "Generations by status.", ["status"], registry=table
        )
        self.checks = Counter(
            "reelwatch_status_checks", "Provider calls by outcome.", ["outcome"], registry=r
        )
        self.poll_latency = Histogram(
            "reelwatch_poll_latency_seconds",
            "Latency of one status check.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.detection_lag = Histogram(
            "reelwatch_detection_lag_seconds",
            "From the provider's completion to the video stored locally.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "reelwatch_rate_limited", "429 answers from the provider.", registry=r
        )
        self.retry_after = Histogram(
            "reelwatch_retry_after_seconds",
            "Retry-After asked for by 429 answers.",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.download_bytes = Counter(
            "reelwatch_download_bytes", "Bytes of assets stored.", registry=r
        )
        self.download_duration = Histogram(
            "reelwatch_download_duration_seconds",
            "Time to store all assets of one video.",
            buckets=DOWNLOAD_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "reelwatch_queue_depth", "Active generations due for a look now.", registry=table
        )
        self.oldest_active = Gauge(
            "reelwatch_oldest_active_age_seconds",
            "Age of the oldest active generation.",
            registry=table,
        )
        self.webhooks = Counter(
            "reelwatch_webhooks", "Webhook deliveries received, by result.", ["result"], registry=r
        )
        # Health, for alerts (docs/alerts.yml).
        # Exposed only by a process that runs a worker (`track_worker`): a server without one
        # must not report a worker that is down.
        self.worker_up = Gauge(
            "reelwatch_worker_up", "1 while this process's worker loop runs.", registry=None
        )
        self.database_errors = Counter(
            "reelwatch_database_errors", "Database errors met by the worker.", registry=r
        )
        self.disk_full = Counter(
            "reelwatch_disk_full", "Downloads that found no space left for the file.", registry=r
        )
        self.circuit_open = Gauge(
            "reelwatch_circuit_open",
            "1 while the provider's circuit is open (it kept failing; probes only).",
            ["provider"],
            registry=r,
        )
        self.temp_removed = Counter(
            "reelwatch_temp_files_removed",
            "Orphaned temporary files removed by the janitor.",
            registry=r,
        )
        self.assets_expiring = Gauge(
            "reelwatch_assets_expiring",
            "Generations not yet downloaded whose provider copy expires within 10 minutes.",
            registry=table,
        )
        self.quarantined = Gauge(
            "reelwatch_quarantined",
            "Active generations set aside for a person (claimed too often without a step).",
            registry=table,
        )

    def track_worker(self) -> None:
        """This process runs a worker: expose `reelwatch_worker_up`."""
        self.registry.register(self.worker_up)

    def record(self, observation: lifecycle.Observation, decision: lifecycle.Decision) -> None:
        """Count what one applied decision tells (called by the engine after each write)."""
        match observation:
            case lifecycle.Polled(latency_s=latency):
                self.checks.labels("ok").inc()
                self.poll_latency.observe(latency)
            case lifecycle.Vanished(latency_s=latency):
                self.checks.labels("not_found").inc()
                self.poll_latency.observe(latency)
            case lifecycle.RateLimited(retry_after_s=wait, local=False):
                self.checks.labels("rate_limited").inc()
                self.rate_limited.inc()
                if wait is not None:
                    self.retry_after.observe(wait)
            case lifecycle.Transient():
                self.checks.labels("error").inc()
            case lifecycle.Submitted() | lifecycle.SubmitRejected() | lifecycle.SubmitLost():
                self.checks.labels("create").inc()
            case lifecycle.Downloaded(assets=assets, duration_s=duration):
                self.download_bytes.inc(sum(a.bytes for a in assets.values()))
                self.download_duration.observe(duration)
                lag = decision.event.data.get("detection_lag_s")
                if isinstance(lag, int | float):
                    self.detection_lag.observe(lag)
            case lifecycle.DownloadFailed(code=code):
                self.checks.labels("download_failed").inc()
                if code == "disk_full":
                    self.disk_full.inc()
            case lifecycle.Crashed():
                self.checks.labels("internal_error").inc()

    async def refresh(self, store: Store, now: datetime) -> None:
        """Update the gauges that are facts about the table (at scrape time)."""
        counts = await store.count_by_status()
        for status in Status:
            self.generations.labels(status.value).set(counts.get(status, 0))
        depth, oldest = await store.backlog(now)
        self.queue_depth.set(depth)
        self.oldest_active.set(0.0 if oldest is None else (now - oldest).total_seconds())
        trouble = await store.trouble(now, expiring_within=EXPIRING_WITHIN)
        self.assets_expiring.set(trouble.expiring)
        self.quarantined.set(trouble.quarantined)

    def render(self) -> bytes:
        return generate_latest(self.registry)
