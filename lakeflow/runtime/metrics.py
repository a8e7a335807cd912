"""``[metrics] listen``: Prometheus metrics at ``/metrics`` and a health check at ``/healthz``.

The figures are read from each source's :class:`SourceStats` when scraped, so collecting
costs nothing per payload. The exposition format is prometheus_client's, not ours.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from lakeflow.runtime.stats import COUNTERS, Histogram, SourceStats
from lakeflow.runtime.status import StatusTracker
from lakeflow.secrets import redact

logger = logging.getLogger(__name__)


def _reader(name: str) -> Callable[[SourceStats], int]:
    return lambda stats: int(getattr(stats, name))


_COUNTERS: tuple[tuple[str, str, Callable[[SourceStats], int]], ...] = tuple(
    (metric, documentation, _reader(name)) for name, (metric, documentation) in COUNTERS.items()
)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    cumulative = 0
    out = []
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        cumulative += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
    return out


class StatsCollector(Collector):
    """A prometheus_client collector over the runtime's per-source stats."""

    def __init__(self, tracker: StatusTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[Metric]:
        labels = ["source", "table"]
        specs = self.tracker.specs
        items = [(name, [name, specs[name].table], s) for name, s in self.tracker.stats.items()]
        for metric, documentation, read in _COUNTERS:
            family = CounterMetricFamily(metric, documentation, labels=labels)
            for _, values, stats in items:
                family.add_metric(values, read(stats))
            yield family
        backlog = GaugeMetricFamily(
            "lakeflow_spool_backlog_payloads",
            "Payloads received and spooled but not yet committed.",
            labels=labels,
        )
        last_commit = GaugeMetricFamily(
            "lakeflow_last_commit_timestamp_seconds",
            "Unix time of the source's last commit.",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "lakeflow_commit_latency_seconds",
            "Seconds from a batch's first receipt until its commit landed.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "lakeflow_commit_duration_seconds",
            "Seconds one commit took: decode and write.",
            labels=labels,
        )
        for _, values, stats in items:
            backlog.add_metric(values, stats.backlog)
            if stats.last_commit is not None:
                last_commit.add_metric(values, stats.last_commit)
            latency.add_metric(values, _buckets(stats.latency), stats.latency.total)
            duration.add_metric(values, _buckets(stats.commit_seconds), stats.commit_seconds.total)
        yield from (backlog, last_commit, latency, duration)
        drift = CounterMetricFamily(
            "lakeflow_drift",
            "Payloads that carried something the source does not declare, by kind: a key "
            "no field reads, a value outside a field's domain, an unknown instrument.",
            labels=["source", "kind"],
        )
        for name, _, stats in items:
            counts = stats.drift
            for kind in ("key", "value", "instrument"):
                drift.add_metric([name, kind], counts.get(kind, 0))
        yield drift
        up = GaugeMetricFamily(
            "lakeflow_source_healthy",
            "1 while the source is connected and not silent, or polled within two "
            "intervals; else 0.",
            labels=["source"],
        )
        connected = GaugeMetricFamily(
            "lakeflow_source_connected",
            "1 while a streaming source holds a connection, else 0.",
            labels=["source"],
        )
        quiet = GaugeMetricFamily(
            "lakeflow_seconds_since_last_payload",
            "Seconds since the source's newest payload arrived (since its start before the "
            "first). A streaming source past its silence_timeout is unhealthy.",
            labels=["source"],
        )
        silence = GaugeMetricFamily(
            "lakeflow_silence_timeout_seconds",
            "Seconds without data that are normal for a streaming source.",
            labels=["source"],
        )
        now = time.time()
        for status in self.tracker.snapshot():
            up.add_metric([status.source], 0.0 if status.problem(now) else 1.0)
            since = status.last_payload if status.last_payload is not None else status.started
            quiet.add_metric([status.source], max(0.0, now - since))
            if status.kind == "streaming":
                holding = status.state in ("connected", "silent")
                connected.add_metric([status.source], 1.0 if holding else 0.0)
                if status.silence_timeout is not None:
                    silence.add_metric([status.source], status.silence_timeout)
        yield from (up, connected, quiet, silence)


class MetricsServer:
    """An aiohttp server on the runtime's event loop: ``/metrics`` and ``/healthz``."""

    def __init__(self, listen: str, tracker: StatusTracker) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.tracker = tracker
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(tracker))
        # RSS, CPU and open files of this process: what a months-long run needs watched.
        ProcessCollector(registry=self.registry)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Start listening; the real port is in ``self.port`` (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        bound = self._runner.addresses
        if bound:
            self.port = bound[0][1]
        logger.info("metrics at http://%s:%d/metrics, health at /healthz", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        # Labels carry names and URLs: masked like the logs (a scrape is rare, the text small).
        body = redact(generate_latest(self.registry).decode()).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        now = time.time()
        sources = {}
        problems = []
        for status in self.tracker.snapshot():
            problem = status.problem(now)
            sources[status.source] = {"state": status.state, "problem": problem}
            if problem:
                problems.append(f"{status.source}: {problem}")
        body = {"status": "unhealthy" if problems else "ok", "sources": sources}
        if problems:
            body["reason"] = "; ".join(problems)
        return web.Response(
            text=redact(json.dumps(body)) + "\n",
            status=503 if problems else 200,
            content_type="application/json",
        )
