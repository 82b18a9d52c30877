"""Prometheus metrics of one server: its own registry, so that several apps in one process (tests) never mix.

Names follow Prometheus conventions (`openai_dit_` prefix, `_seconds`, `_total`). Labels are bounded: routes are
route templates (never raw paths), outcomes are a fixed set, and nothing a client sends (keys, prompts, ids)
becomes a label.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["CONTENT_TYPE", "ServerMetrics", "outcome_of"]

CONTENT_TYPE = "text/plain; version=0.0.4"  # the text exposition format every Prometheus scrapes (utf-8)

disable_created_metrics()  # no `_created` series beside every counter and histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def outcome_of(status: int) -> str:
    """An HTTP status as one of a few outcomes: success, client_error, unauthorized, rejected (429 or 503: at
    capacity, loading or draining), cancelled (499: the client left), timeout (504), server_error."""
    if status < 400:
        return "success"
    if status == 401:
        return "unauthorized"
    if status in (429, 503):
        return "rejected"
    if status == 499:
        return "cancelled"
    if status == 504:
        return "timeout"
    return "client_error" if status < 500 else "server_error"


class ServerMetrics:
    """Every metric the server exports; `expose()` renders the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "openai_dit_http_requests", "HTTP requests by route template, method and outcome (status class).",
            ["route", "method", "status", "outcome"], registry=r)
        self.http_duration = Histogram(
            "openai_dit_http_request_duration_seconds", "HTTP request duration, until the response was sent.",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_length = Gauge("openai_dit_queue_length", "Requests waiting for the pipeline.", registry=r)
        self.running = Gauge("openai_dit_running_requests", "Requests in the pipeline call now running.",
                             registry=r)
        self.ready = Gauge("openai_dit_ready", "1 when the model is loaded and the server admits work.",
                           registry=r)
        self.draining = Gauge("openai_dit_draining", "1 while a graceful shutdown lets in-flight work finish.",
                              registry=r)
        self.batch_size = Histogram("openai_dit_batch_size", "Requests per pipeline call.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue_seconds = Histogram(
            "openai_dit_queue_seconds", "Time from admission until the request's pipeline call started.",
            ["task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram(
            "openai_dit_inference_seconds", "Duration of the pipeline call that served the request.",
            ["task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e_seconds = Histogram(
            "openai_dit_request_seconds", "End to end: admission to encoded result (queue, inference, encoding).",
            ["task"], buckets=_LATENCY_BUCKETS, registry=r)
        self.generations = Counter(
            "openai_dit_generation_requests", "Generation requests by task and outcome: success, failed, cancelled, "
            "rejected (refused at admission), aborted (the server stopped first).", ["task", "outcome"], registry=r)
        self.cached_steps = Counter(
            "openai_dit_cache_cached_steps", "Denoising steps cache-dit served from its cache.", registry=r)
        self.cache_steps = Counter(
            "openai_dit_cache_steps", "Denoising steps of calls with cache-dit enabled (cached or computed).",
            registry=r)
        self.images = Counter("openai_dit_images", "Images produced.", registry=r)
        self.videos = Counter("openai_dit_videos", "Videos produced.", registry=r)
        self.video_seconds = Counter("openai_dit_video_seconds", "Seconds of video produced (frames / fps).",
                                     registry=r)

    def watch(self, *, queue_length: Callable[[], float], running: Callable[[], float],
              ready: Callable[[], float], draining: Callable[[], float],
              memory: Callable[[], dict[str, float] | None] | None = None) -> None:
        """Gauges read at scrape time from the runner's live state; `memory`: the accelerator's bytes by kind
        (allocated, reserved, max_allocated), None where there is none (then the family is absent)."""
        self.queue_length.set_function(queue_length)
        self.running.set_function(running)
        self.ready.set_function(ready)
        self.draining.set_function(draining)
        if memory is not None:
            self.registry.register(_MemoryCollector(memory))

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status), outcome_of(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def observe_call(self, batch_size: int, cached_steps: int | None, total_steps: int) -> None:
        """One pipeline call; `cached_steps` is None when cache-dit is off for it."""
        self.batch_size.observe(batch_size)
        if cached_steps is not None:
            self.cached_steps.inc(cached_steps)
            self.cache_steps.inc(total_steps)

    def observe_request(self, task: str, outcome: str, *, queue_s: float | None = None,
                        inference_s: float | None = None, e2e_s: float | None = None) -> None:
        self.generations.labels(task, outcome).inc()
        if queue_s is not None:
            self.queue_seconds.labels(task).observe(queue_s)
        if inference_s is not None:
            self.inference_seconds.labels(task).observe(inference_s)
        if e2e_s is not None:
            self.e2e_seconds.labels(task).observe(e2e_s)

    def count_outputs(self, *, images: int = 0, videos: int = 0, video_seconds: float = 0.0) -> None:
        if images:
            self.images.inc(images)
        if videos:
            self.videos.inc(videos)
            self.video_seconds.inc(video_seconds)

    def expose(self) -> bytes:
        return generate_latest(self.registry)


class _MemoryCollector:
    """`openai_dit_gpu_memory_bytes{kind}`, read from the device at scrape time."""

    def __init__(self, read: Callable[[], dict[str, float] | None]) -> None:
        self._read = read

    def collect(self):
        figures = self._read()
        if not figures:
            return
        family = GaugeMetricFamily("openai_dit_gpu_memory_bytes", "Memory of the model's GPU: allocated by tensors, "
                                   "reserved by the caching allocator, and the peak allocated.", labels=["kind"])
        for kind, value in figures.items():
            family.add_metric([kind], value)
        yield family
