"""Operating the server: probes, /metrics, request ids, the request timeout and the graceful drain."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fakes import VIDEO, FakeEngine, assert_openai_error, serving, wait_until
from prometheus_client.parser import text_string_to_metric_families

from openai_dit.server.middleware import RequestIdLogFilter
from openai_dit.types import CacheStats

IMAGE = {"prompt": "a red fox", "size": "256x256", "n": 1}


def scrape(client) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)



class CachingEngine(FakeEngine):
    """Reports cache-dit statistics as the real executor does: 3 of 8 steps cached."""

    def run_batch(self, requests, cancelled, on_progress=None):
        results = super().run_batch(requests, cancelled, on_progress)
        stats = CacheStats(enabled=True, cached_steps=3, total_steps=8)
        for result in results:
            result.cache = stats
        return results


def test_probes_follow_the_lifecycle():
    engine = FakeEngine()
    engine.gate = threading.Event()
    with serving(engine) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        assert client.get("/readyz").status_code == client.get("/health/ready").status_code == 200
        assert client.get("/live").json() == {"status": "alive"}
        client.app.state.services.runner.declare_dead("rank 1 disconnected")
        for path in ("/ready", "/live", "/health"):
            assert client.get(path).status_code == 503, path
        assert client.get("/ready").json() == {"status": "failed"}
        engine.gate.set()


def test_metrics_count_requests_outputs_batches_latencies_and_cache():
    with serving(CachingEngine(), max_queued_requests=1) as client:
        before = scrape(client)
        assert value(before, "openai_dit_ready") == 1 and value(before, "openai_dit_queue_length") == 0
        for _ in range(2):
            assert client.post("/v1/images/generations", json={**IMAGE, "n": 2}).status_code == 200
        assert client.post("/generate", json={"prompt": "x", "width": 64, "height": 64}).status_code == 200
        assert client.post("/v1/images/generations", json={**IMAGE, "size": "7x7"}).status_code == 400
        samples = scrape(client)
    route = "/v1/images/generations"
    assert value(samples, "openai_dit_http_requests_total", route=route, method="POST", status="200",
                 outcome="success") == 2
    assert value(samples, "openai_dit_http_requests_total", route=route, method="POST", status="400",
                 outcome="client_error") == 1
    assert value(samples, "openai_dit_http_requests_total", route="/generate", method="POST", status="200",
                 outcome="success") == 1
    assert value(samples, "openai_dit_images_total") == 5
    assert value(samples, "openai_dit_batch_size_count") == 3
    assert value(samples, "openai_dit_cache_cached_steps_total") == 9
    assert value(samples, "openai_dit_cache_steps_total") == 3 * 8
    for name in ("openai_dit_queue_seconds_count", "openai_dit_inference_seconds_count",
                 "openai_dit_request_seconds_count"):
        assert value(samples, name, task="text-to-image") == 3, name
    assert value(samples, "openai_dit_generation_requests_total", task="text-to-image", outcome="success") == 3
    assert value(samples, "openai_dit_http_request_duration_seconds_count", route=route, method="POST") == 3


def test_metrics_describe_the_process_the_build_and_the_model():
    from importlib.metadata import version

    with serving(FakeEngine()) as client:
        samples = scrape(client)
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
            "python_info"} <= names
    build = [dict(labels) for name, labels in samples if name == "openai_dit_build_info"]
    assert len(build) == 1 and build[0]["version"] == version("openai-dit") and build[0]["diffusers"]
    model = [dict(labels) for name, labels in samples if name == "openai_dit_model_info"]
    assert model == [{"model": "fake-model", "pipeline": "", "device": "fake", "dtype": "float32", "cache": "off",
                      "compile": "off", "world_size": "1"}]
    assert value(samples, "openai_dit_model_load_seconds") > 0


def test_metrics_gauges_and_rejections_under_load():
    engine = FakeEngine()
    engine.gate = threading.Event()
    with serving(engine, max_queued_requests=1, max_batch_size=1) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/v1/images/generations", json=IMAGE)
        wait_until(lambda: engine.started.is_set())
        queued = pool.submit(client.post, "/v1/images/generations", json=IMAGE)
        wait_until(lambda: client.app.state.services.runner.queued == 1)
        refused = client.post("/v1/images/generations", json=IMAGE)
        assert_openai_error(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        samples = scrape(client)
        assert value(samples, "openai_dit_queue_length") == 1
        assert value(samples, "openai_dit_running_requests") == 1
        assert value(samples, "openai_dit_generation_requests_total", task="text-to-image", outcome="rejected") == 1
        assert value(samples, "openai_dit_http_requests_total", route="/v1/images/generations", method="POST",
                     status="429", outcome="rejected") == 1
        engine.gate.set()
        assert running.result().status_code == queued.result().status_code == 200


def test_video_seconds_are_counted():
    with serving(FakeEngine(VIDEO)) as client:
        created = client.post("/v1/videos", json={"prompt": "waves", "seconds": "1", "size": "64x64"}).json()
        wait_until(lambda: client.get(f"/v1/videos/{created['id']}").json()["status"] == "completed")
        samples = scrape(client)
    frames = created["num_frames"]
    assert value(samples, "openai_dit_videos_total") == 1
    assert abs(value(samples, "openai_dit_video_seconds_total") - frames / created["fps"]) < 1e-6
    assert value(samples, "openai_dit_request_seconds_count", task="text-to-video") == 1


def test_every_response_has_a_request_id_and_log_lines_carry_it(caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdLogFilter())
    with serving(FakeEngine(VIDEO)) as client:
        ids = {client.get(path).headers["x-request-id"] for path in ("/health", "/nowhere", "/v1/models")}
        assert len(ids) == 3 and all(len(i) == 32 for i in ids)
        spoofed = client.get("/v1/models", headers={"x-request-id": "../../etc/passwd"})
        assert spoofed.headers["x-request-id"] != "../../etc/passwd"  # ids name files: always the server's own
        created = client.post("/v1/videos", json={"prompt": "waves", "seconds": "1", "size": "64x64"})
    request_id = created.headers["x-request-id"]
    lines = [r for r in caplog.records if "queued" in r.getMessage() and created.json()["id"] in r.getMessage()]
    assert lines and lines[0].request_id == request_id


def test_a_request_over_its_time_limit_is_stopped_and_answered_504():
    engine = FakeEngine(step_delay=0.2)
    with serving(engine, request_timeout=0.3) as client:
        started = time.monotonic()
        response = client.post("/v1/images/generations", json={**IMAGE, "num_inference_steps": 50})
        error = assert_openai_error(response, 504)
        assert error["code"] == "request_timeout" and time.monotonic() - started < 2
        wait_until(lambda: engine.cancelled_calls == 1)  # its work was stopped, not left running
        engine.step_delay = 0
        assert client.post("/v1/images/generations", json=IMAGE).status_code == 200
        assert 'outcome="timeout"' in client.get("/metrics").text


def test_drain_finishes_admitted_work_refuses_new_work_and_keeps_video_jobs_queued():
    engine = FakeEngine(VIDEO)
    engine.gate = threading.Event()
    with serving(engine, max_batch_size=1) as client, ThreadPoolExecutor(2) as pool:
        lifecycle = client.app.state.services.lifecycle
        image = pool.submit(client.post, "/generate", json={"prompt": "x", "width": 64, "height": 64,
                                                            "num_frames": 9})
        wait_until(lambda: engine.started.is_set())
        job = client.post("/v1/videos", json={"prompt": "waves", "seconds": "1", "size": "64x64"}).json()
        wait_until(lambda: client.app.state.services.runner.queued == 1)
        drain = pool.submit(client.blocking_portal.call, lifecycle.drain, 10)
        wait_until(lambda: lifecycle.readiness == "draining")
        assert client.get("/ready").json() == {"status": "draining"}
        assert client.get("/health").status_code == 503
        refused = client.post("/generate", json={"prompt": "y", "width": 64, "height": 64, "num_frames": 9})
        assert_openai_error(refused, 503)
        assert refused.headers["retry-after"]
        assert client.get(f"/v1/videos/{job['id']}").json()["status"] == "queued"  # reads still work
        assert not drain.done()
        engine.gate.set()
        drain.result(timeout=10)
        assert image.result().status_code == 200  # admitted before the drain: finished
        assert client.app.state.services.runner.idle
        assert client.get(f"/v1/videos/{job['id']}").json()["status"] == "queued"  # left for the next start
        assert len(engine.calls) == 1


def test_drain_timeout_answers_what_is_left_with_503():
    engine = FakeEngine()
    engine.gate = threading.Event()
    with serving(engine, max_batch_size=1) as client, ThreadPoolExecutor(3) as pool:
        lifecycle = client.app.state.services.lifecycle
        running = pool.submit(client.post, "/v1/images/generations", json=IMAGE)
        wait_until(lambda: engine.started.is_set())
        queued = pool.submit(client.post, "/v1/images/generations", json={**IMAGE, "size": "128x128"})
        wait_until(lambda: client.app.state.services.runner.queued == 1)
        started = time.monotonic()
        client.blocking_portal.call(lifecycle.drain, 0.3)
        assert time.monotonic() - started < 3
        for future in (running, queued):
            error = assert_openai_error(future.result(timeout=5), 503)
            assert error["code"] == "model_not_ready"
        engine.gate.set()
