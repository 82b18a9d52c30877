"""OpenTelemetry traces over the real app and runner with a fake engine (an in-memory exporter): the HTTP server
span and, under it, each request's queue / denoise / decode / encode spans; video jobs in a trace of their own;
errors; probes; tracing off. And the denoising-step histogram."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fakes import IMAGES, VIDEO, FakeEngine, run_request, serving, wait_until
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from openai_dit import tracing
from openai_dit.config import ServerConfig
from openai_dit.runner import Runner
from openai_dit.types import GenerationRequest, Task

STAGES = ("queue", "denoise", "decode", "encode")
_TOLERANCE_NS = 2_000_000  # monotonic -> epoch conversions of two clocks read a moment apart


@pytest.fixture
def spans():
    """Every app created inside the test traces into this exporter; nothing stays configured after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)
        provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


def stages_of(exporter: InMemorySpanExporter, request_id: str) -> dict[str, ReadableSpan]:
    found = {span.name: span for span in exporter.get_finished_spans()
             if span.attributes.get("openai_dit.request_id") == request_id and span.kind is SpanKind.INTERNAL}
    assert len(found) == len([s for s in exporter.get_finished_spans()
                              if s.attributes.get("openai_dit.request_id") == request_id
                              and s.kind is SpanKind.INTERNAL]), "a stage twice"
    return found


def wait_for_stages(exporter, request_id: str, names) -> dict[str, ReadableSpan]:
    wait_until(lambda: set(names) <= set(stages_of(exporter, request_id)))
    return stages_of(exporter, request_id)


def assert_in_order(*spans: ReadableSpan) -> None:
    for span in spans:
        assert span.start_time <= span.end_time, span.name
    for before, after in zip(spans[:-1], spans[1:], strict=True):
        assert before.end_time <= after.start_time + _TOLERANCE_NS, (before.name, after.name)


# --- image requests ---------------------------------------------------------------------------------------------
def test_an_image_request_has_a_server_span_and_its_stages_as_children(spans):
    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64",
                                                               "num_inference_steps": 5, "response_format": "b64_json"})
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
        stages = wait_for_stages(spans, request_id, STAGES)
        wait_until(lambda: server_spans(spans))
    (server,) = server_spans(spans)
    assert server.name == "POST /v1/images/generations"
    assert server.attributes["http.route"] == "/v1/images/generations"
    assert server.attributes["openai_dit.request_id"] == request_id
    assert set(stages) == set(STAGES)
    for stage in stages.values():
        assert stage.parent is not None and stage.parent.span_id == server.context.span_id, stage.name
        assert stage.context.trace_id == server.context.trace_id
        assert stage.status.status_code is StatusCode.UNSET
        attributes = stage.attributes
        assert attributes["openai_dit.task"] == "text-to-image" and attributes["openai_dit.outcome"] == "success"
        assert (attributes["openai_dit.width"], attributes["openai_dit.height"]) == (64, 64)
        assert attributes["openai_dit.steps"] == 5 and attributes["openai_dit.batch_size"] == 1
        assert attributes["openai_dit.num_outputs"] == 1 and "openai_dit.num_frames" not in attributes
    queue, denoise, decode, encode = (stages[name] for name in STAGES)
    assert_in_order(queue, denoise, decode, encode)
    assert server.start_time <= queue.start_time + _TOLERANCE_NS
    steps = [event for event in denoise.events if event.name == "step"]
    assert [(e.attributes["step"], e.attributes["total_steps"]) for e in steps] == [(i, 5) for i in range(1, 6)]
    times = [e.timestamp for e in steps]
    assert times == sorted(times) and denoise.start_time <= times[0] and times[-1] == denoise.end_time
    assert named(spans, "job") == []  # no trace of its own: the HTTP request's


def test_the_callers_trace_context_is_continued(spans):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"},
                               headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
        assert response.status_code == 200, response.text
        stages = wait_for_stages(spans, response.headers["x-request-id"], ("queue", "denoise", "decode"))
        wait_until(lambda: server_spans(spans))
    assert {format(span.context.trace_id, "032x") for span in [*stages.values(), *server_spans(spans)]} == {trace_id}


def test_probes_make_no_spans(spans):
    with serving(FakeEngine(IMAGES)) as client:
        for path in ("/health", "/ready", "/readyz", "/health/ready", "/live", "/livez", "/health/live", "/metrics"):
            assert client.get(path).status_code == 200, path
        assert client.get("/v1/models").status_code == 200
        wait_until(lambda: server_spans(spans))
    assert [span.name for span in spans.get_finished_spans()] == ["GET /v1/models"]


def test_a_failed_call_marks_the_stage_it_ended_in(spans):
    engine = FakeEngine(IMAGES)
    engine.fail_with = RuntimeError("the pipeline broke")
    with serving(engine) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"})
        assert response.status_code == 500
        stages = wait_for_stages(spans, response.headers["x-request-id"], ("queue", "denoise"))
        wait_until(lambda: server_spans(spans))
    assert set(stages) == {"queue", "denoise"}  # it never reached the decode
    queue, denoise = stages["queue"], stages["denoise"]
    assert queue.status.status_code is StatusCode.UNSET and queue.attributes["openai_dit.outcome"] == "failed"
    assert denoise.status.status_code is StatusCode.ERROR and "the pipeline broke" in denoise.status.description
    assert denoise.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in denoise.events] == ["exception"]  # it failed before its first step
    assert server_spans(spans)[0].status.status_code is StatusCode.ERROR


# --- video jobs ---------------------------------------------------------------------------------------------------
def test_a_video_job_is_a_trace_of_its_own_linked_to_the_request_that_created_it(spans):
    with serving(FakeEngine(VIDEO)) as client:
        created = client.post("/v1/videos", json={"prompt": "a boat", "size": "64x64", "num_inference_steps": 3})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        stages = wait_for_stages(spans, video_id, ("job", *STAGES))
        wait_until(lambda: any(s.name == "POST /v1/videos" for s in server_spans(spans)))
    (post,) = [span for span in server_spans(spans) if span.name == "POST /v1/videos"]
    job = stages.pop("job")
    assert job.parent is None and job.context.trace_id != post.context.trace_id
    assert [link.context.span_id for link in job.links] == [post.context.span_id]
    assert job.attributes["openai_dit.task"] == "text-to-video" and job.attributes["openai_dit.num_frames"] > 1
    for stage in stages.values():
        assert stage.parent is not None and stage.parent.span_id == job.context.span_id, stage.name
    queue, denoise, decode, encode = (stages[name] for name in STAGES)
    assert_in_order(queue, denoise, decode, encode)
    assert job.start_time == queue.start_time and job.end_time == encode.end_time
    assert len([e for e in denoise.events if e.name == "step"]) == 3


def test_a_deleted_video_job_carries_the_cancellation(spans):
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine) as client:
        video_id = client.post("/v1/videos", json={"prompt": "a boat", "size": "64x64"}).json()["id"]
        wait_until(lambda: engine.started.is_set())
        assert client.delete(f"/v1/videos/{video_id}").status_code == 200
        stages = wait_for_stages(spans, video_id, ("job", "queue", "denoise"))
    assert set(stages) == {"job", "queue", "denoise"}
    for name in ("job", "denoise"):
        assert stages[name].status.status_code is StatusCode.ERROR, name
        assert stages[name].attributes["openai_dit.outcome"] == "cancelled"
        assert stages[name].attributes["error.type"] == "RequestCancelled"
    assert stages["queue"].status.status_code is StatusCode.UNSET


# --- batches and the step histogram -------------------------------------------------------------------------------
def make_request(seed: int, steps: int = 4) -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt=f"p{seed}", width=16, height=16,
                             num_inference_steps=steps, seed=seed, request_id=f"req-{seed}")


def step_count(runner: Runner) -> float:
    value = runner.metrics.registry.get_sample_value("openai_dit_denoising_step_seconds_count")
    return value or 0.0


def test_one_call_for_three_requests_is_one_observation_per_step_and_a_span_each(spans):
    """Two requests arrive while a third holds the pipeline at its first step: the call restarts with all three."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    runner = Runner(lambda: engine, max_batch_size=3)
    traces = tracing.setup(ServerConfig(model_path="m"))  # the fixture's provider
    assert traces is not None and not traces.owned
    runner.trace_with(traces.tracer)
    runner.start()
    wait_until(lambda: runner.ready, timeout=5)

    async def scenario():
        first = asyncio.ensure_future(run_request(runner, make_request(1)))
        await asyncio.to_thread(engine.started.wait, 5)
        others = [asyncio.ensure_future(run_request(runner, make_request(seed))) for seed in (2, 3)]
        await asyncio.to_thread(wait_until, lambda: runner.queued == 2)
        engine.gate.set()
        await asyncio.gather(first, *others)

    try:
        asyncio.run(scenario())
    finally:
        runner.stop()
    assert [len(batch) for batch in engine.batches] == [1, 3]  # the first call stopped after its first step
    assert step_count(runner) == 3  # 4 steps: 3 intervals, once for the call of three
    for seed in (1, 2, 3):
        stages = wait_for_stages(spans, f"req-{seed}", ("job", "queue", "denoise", "decode"))
        assert stages["job"].parent is None and not stages["job"].links  # submitted outside any span
        assert stages["denoise"].attributes["openai_dit.batch_size"] == 3
        assert len([e for e in stages["denoise"].events if e.name == "step"]) == 4


def test_the_step_histogram_counts_the_intervals_between_steps():
    with serving(FakeEngine(IMAGES, step_delay=0.01)) as client:
        for steps in (6, 1):
            response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64",
                                                                   "num_inference_steps": steps})
            assert response.status_code == 200, response.text
        text = client.get("/metrics").text
    assert "# TYPE openai_dit_denoising_step_seconds histogram" in text
    assert "openai_dit_denoising_step_seconds_count 5.0" in text  # 6 steps: 5 intervals; 1 step: none
    assert 'openai_dit_denoising_step_seconds_bucket{le="0.01"}' in text
    assert 'openai_dit_denoising_step_seconds_bucket{le="60.0"} 5.0' in text
    sum_line = next(line for line in text.splitlines() if line.startswith("openai_dit_denoising_step_seconds_sum"))
    assert float(sum_line.split()[1]) >= 5 * 0.01


# --- off, and launch checks ---------------------------------------------------------------------------------------
def test_tracing_off_adds_nothing():
    with serving(FakeEngine(IMAGES)) as client:
        assert client.runner._tracing is None
        with pytest.raises(KeyError):
            client.app.plugins.get("OpenTelemetryPlugin")
        assert client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"}).status_code == 200


_WITHOUT_OTEL = textwrap.dedent("""
    import sys

    class NoOpenTelemetry:  # as if the `otel` extra were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())
    sys.path.insert(0, "tests")
    from fakes import IMAGES, FakeEngine, serving

    from openai_dit.config import ServerConfig
    from openai_dit.tracing import check_tracing

    with serving(FakeEngine(IMAGES)) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"})
        assert response.status_code == 200, response.text
    assert check_tracing(ServerConfig(model_path="m")) is None
    print(check_tracing(ServerConfig(model_path="m", otlp_traces_endpoint="http://collector:4318")))
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
""")


def test_without_the_extra_the_server_serves_and_the_flag_is_refused_at_launch():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": ""}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    problem, modules = done.stdout.strip().splitlines()[-2:]
    assert "pip install 'openai-dit[otel]'" in problem and "opentelemetry-sdk" in problem
    assert modules == "[]"


@pytest.mark.parametrize("protocol, endpoint, problem", [
    ("", None, None),
    ("", "http://collector:4318/v1/traces", None),
    ("grpc", "collector:4317", None),
    ("http/json", "http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json is not supported"),
    ("http/protobuf", "collector:4318", "must be an http:// or https:// URL"),
])
def test_launch_check(monkeypatch, protocol, endpoint, problem):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    found = tracing.check_tracing(ServerConfig(model_path="m", otlp_traces_endpoint=endpoint))
    assert found == problem if problem is None else problem in found


@pytest.mark.parametrize("protocol, endpoint, exporter_module, url", [
    ("", "http://collector:4318", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
     "http://collector:4318/v1/traces"),
    ("http/protobuf", "http://collector:4318/custom/traces", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
     "http://collector:4318/custom/traces"),
    ("grpc", "http://collector:4317", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None),
])
def test_the_flag_builds_an_owned_provider_that_batches_to_the_exporter(monkeypatch, protocol, endpoint,
                                                                        exporter_module, url):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "dit-east")
    traces = tracing.setup(ServerConfig(model_path="m", otlp_traces_endpoint=endpoint))
    assert traces is not None and traces.owned
    try:
        assert traces.provider.resource.attributes["service.name"] == "dit-east"
        (processor,) = traces.provider._active_span_processor._span_processors
        assert type(processor).__name__ == "BatchSpanProcessor"
        exporter = processor._batch_processor._exporter
        assert type(exporter).__module__ == exporter_module
        if url is not None:
            assert exporter._endpoint == url
    finally:
        started = time.monotonic()
        asyncio.run(traces.close())  # nothing to send: no connection is made
        assert time.monotonic() - started < 30


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector's traces endpoint: keeps each export request."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the handler's protocol
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_the_flag_exports_over_otlp_http_and_the_shutdown_flushes(monkeypatch):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "dit-test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        with serving(FakeEngine(IMAGES), otlp_traces_endpoint=endpoint) as client:
            response = client.post("/v1/images/generations", json={"prompt": "a fox", "size": "64x64"})
            assert response.status_code == 200, response.text
        # The app has shut down: what the batch processor held is exported by now.
        names, services = set(), set()
        for path, body in _Collector.received:
            assert path == "/v1/traces"
            export = ExportTraceServiceRequest.FromString(body)
            for resource_spans in export.resource_spans:
                attributes = resource_spans.resource.attributes
                services |= {a.value.string_value for a in attributes if a.key == "service.name"}
                names |= {span.name for scope in resource_spans.scope_spans for span in scope.spans}
        assert services == {"dit-test"}
        assert {"POST /v1/images/generations", "queue", "denoise", "decode", "encode"} <= names
    finally:
        collector.shutdown()
        collector.server_close()


def test_the_service_name_defaults_and_tracing_is_off_without_the_flag(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert tracing.setup(ServerConfig(model_path="m")) is None
    traces = tracing.setup(ServerConfig(model_path="m", otlp_traces_endpoint="http://collector:4318"))
    assert traces is not None
    try:
        assert traces.provider.resource.attributes["service.name"] == "openai-dit"
    finally:
        asyncio.run(traces.close())
