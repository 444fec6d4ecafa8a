"""What the API reports to Prometheus (``GET /metrics``): answers by route and status, their
latency, and the Temporal calls in flight. The worker's own figures (Temporal SDK metrics,
escalations raised, notifications delivered) are served by the worker on
``HYOJUNKA_WORKER_METRICS_ADDRESS``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ANSWERS = Counter(
    "hyojunka_http_requests_total",
    "Answers given, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "hyojunka_http_request_duration_seconds",
    "Time to answer, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPDATES_IN_FLIGHT = Gauge(
    "hyojunka_temporal_calls_in_flight",
    "Calls from this API process to Temporal not yet answered (waiting for a turn included).",
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    ANSWERS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)
