"""Prometheus metrics of one server: its own registry, so that several apps in one process (tests) never mix.

Names follow Prometheus conventions (`openai_dit_` prefix, `_seconds`, `_total`). Labels are bounded: routes are
route templates (never raw paths), outcomes are a fixed set, and nothing a client sends (keys, prompts, ids)
becomes a label.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

__all__ = ["CONTENT_TYPE", "ServerMetrics", "outcome_of"]

CONTENT_TYPE = "text/plain; version=0.0.4"  # the text exposition format every Prometheus scrapes (utf-8)

disable_created_metrics()  # no `_created` series beside every counter and histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
# One denoising step: some 10 ms (a small image on a fast GPU, cached steps) to a minute (a long video on a CPU).
_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 20, 30, 60)


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
        # process_* (CPU, memory, open files, start time), python_info and python_gc_*, as the default registry has.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:
            GCCollector(registry=r)
        self.build_info = Gauge("openai_dit_build_info", "Always 1: the versions of the server and of the libraries "
                                "it runs on.", ["version", "python", "torch", "diffusers", "cache_dit"], registry=r)
        self.build_info.labels(*_build_versions()).set(1)
        self.model_load_seconds = Gauge("openai_dit_model_load_seconds", "Wall time the model took to load and be "
                                        "placed on its devices (all ranks), set once it is ready.", registry=r)
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
        self.step_seconds = Histogram(
            "openai_dit_denoising_step_seconds", "Time between consecutive denoising steps of a pipeline call "
            "(once per call, whatever its batch size).", buckets=_STEP_BUCKETS, registry=r)
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

    def watch_model(self, model: str, describe: Callable[[], dict | None]) -> None:
        """`openai_dit_model_info{model, pipeline, device, dtype, cache, compile, world_size}` = 1 once the model
        is loaded (read from the engine's description at scrape time)."""
        self.registry.register(_ModelInfoCollector(model, describe))

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status), outcome_of(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def observe_call(self, batch_size: int, cached_steps: int | None, total_steps: int) -> None:
        """One pipeline call; `cached_steps` is None when cache-dit is off for it."""
        self.batch_size.observe(batch_size)
        if cached_steps is not None:
            self.cached_steps.inc(cached_steps)
            self.cache_steps.inc(total_steps)

    def observe_steps(self, times: Sequence[float]) -> None:
        """One pipeline call's step times (monotonic seconds, in order): each interval between consecutive steps."""
        for before, after in zip(times[:-1], times[1:], strict=True):
            self.step_seconds.observe(after - before)

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


def _build_versions() -> tuple[str, ...]:
    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return ""

    return of("openai-dit"), platform.python_version(), of("torch"), of("diffusers"), of("cache-dit")


class _ModelInfoCollector:
    def __init__(self, model: str, describe: Callable[[], dict | None]) -> None:
        self._model = model
        self._describe = describe

    def collect(self):
        described = self._describe()
        if described is None:  # still loading
            return
        labels = {"model": self._model, "pipeline": str(described.get("pipeline", "")),
                  "device": str(described.get("device", "")), "dtype": str(described.get("dtype", "")),
                  "cache": "on" if described.get("cache") else "off",
                  "compile": "on" if described.get("compile") else "off",
                  "world_size": str(described.get("world_size", 1))}
        family = GaugeMetricFamily("openai_dit_model_info", "Always 1: the model served and how it runs.",
                                   labels=list(labels))
        family.add_metric(list(labels.values()), 1)
        yield family


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
