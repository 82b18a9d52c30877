"""What the runner tells the metrics: each job's outcome (once), each pipeline call, what was produced; and, while
tracing is on, each job's spans (once, when it settles)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import RequestCancelled, ServiceUnavailable
from ..metrics import ServerMetrics
from ..types import CacheStats, GenerationResult
from .jobs import CallRecord, Job

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ["MetricsObserver", "TracingObserver", "outcome_of"]


def outcome_of(error: BaseException | None) -> str:
    """How a job ended: success, cancelled, aborted (the server stopped, or lost a rank, after admitting it) or
    failed."""
    if error is None:
        return "success"
    if isinstance(error, RequestCancelled):
        return "cancelled"
    if isinstance(error, ServiceUnavailable):
        return "aborted"
    return "failed"


class MetricsObserver:
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def rejected(self, job: Job) -> None:
        self.metrics.observe_request(job.request.task.value, "rejected")

    def call(self, batch_size: int, cache: CacheStats | None) -> None:
        enabled = cache is not None and cache.enabled
        self.metrics.observe_call(batch_size, cache.cached_steps if cache is not None and enabled else None,
                                  cache.total_steps if cache is not None and enabled else 0)

    def call_steps(self, call: CallRecord) -> None:
        """A pipeline call's denoising steps (whether it returned or not): the time between consecutive steps."""
        self.metrics.observe_steps([when for _, _, when in call.steps])

    def settled(self, job: Job, error: BaseException | None, produced: GenerationResult | None) -> None:
        """A job's outcome: success, cancelled, aborted (the server stopped, or lost a rank, after admitting it) or
        failed; with its queue, inference and end-to-end times, and what it produced."""
        request = job.request
        outcome = outcome_of(error)
        queue_s = job.started_at - job.enqueued_at if job.started_at is not None else None
        self.metrics.observe_request(request.task.value, outcome, queue_s=queue_s, inference_s=job.inference_seconds,
                                     e2e_s=time.monotonic() - job.enqueued_at if error is None else None)
        if produced is None:
            return
        if produced.images is not None:
            self.metrics.count_outputs(images=len(produced.images))
        if produced.videos is not None:
            videos, frames = produced.videos.shape[:2]
            seconds = videos * frames / request.fps if request.fps else 0.0
            self.metrics.count_outputs(videos=videos, video_seconds=seconds)


class TracingObserver:
    """Each admitted job's spans, made once when it settles from the timestamps that the generation and encoder
    threads recorded on it (their own start and end times; nothing crosses threads for them):

    - `queue`: admitted -> its pipeline call starts (or the job ends, if it never started);
    - `denoise`: the call starts -> its last denoising step, with a `step` event at each step's time;
    - `decode`: the last step -> the call returns (the VAE decode and the pipeline's post-processing);
    - `encode`: the encode stage (PNG / MP4 encoding) -> the job settles, where there is one.

    They are children of the span current when the job was submitted (the HTTP request's). A job that outlives its
    request (`detached`: a video job), or one submitted outside any span, gets a trace of its own: a `job` span
    over its whole life is their parent, linked to the creating request's span where there was one. The stage in
    which the job ended carries its error; every span carries `openai_dit.request_id` and `openai_dit.outcome`."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    @staticmethod
    def capture() -> Any:
        """On the event loop, as a job is submitted: the current OpenTelemetry context (the HTTP request's span)."""
        from opentelemetry import context

        return context.get_current()

    def settled(self, job: Job, error: BaseException | None) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Link, Status, StatusCode

        end = job.settled_at or time.monotonic()
        offset_ns = time.time_ns() - time.monotonic_ns()

        def ns(when: float) -> int:
            return int(when * 1e9) + offset_ns

        attributes = _attributes(job, outcome_of(error))
        parent = job.trace_context
        creator = trace.get_current_span(parent).get_span_context()
        root = None
        if job.detached or not creator.is_valid:
            root = self.tracer.start_span("job", context=context.Context(), start_time=ns(job.enqueued_at),
                                          attributes=attributes, links=[Link(creator)] if creator.is_valid else [])
            parent = trace.set_span_in_context(root)
        spans = []
        for name, start, stop in _stages(job, end):
            span = self.tracer.start_span(name, context=parent, start_time=ns(start), attributes=attributes)
            if name == "denoise" and job.call is not None:
                for step, total, when in job.call.steps[:job.steps_seen]:
                    span.add_event("step", {"step": step, "total_steps": total}, timestamp=ns(when))
            spans.append((span, stop))
        if error is not None:  # on the stage where it ended, and its own trace's root
            status = Status(StatusCode.ERROR, f"{type(error).__name__}: {getattr(error, 'message', error)}")
            for span in [spans[-1][0], *([root] if root is not None else [])]:
                span.set_status(status)
                span.set_attribute("error.type", type(error).__name__)
                if attributes["openai_dit.outcome"] == "failed":
                    span.record_exception(error, timestamp=ns(end))
        for span, stop in spans:
            span.end(end_time=ns(stop))
        if root is not None:
            root.end(end_time=ns(end))


def _stages(job: Job, end: float) -> list[tuple[str, float, float]]:
    """The stages the job went through, as (name, start, end) in monotonic seconds; the last is where it ended."""
    call = job.call
    if call is None or job.started_at is None:
        return [("queue", job.enqueued_at, end)]
    stages = [("queue", job.enqueued_at, job.started_at)]
    if job.result_at is None:  # it ended during its call (failed, cancelled, aborted)
        return [*stages, ("denoise", job.started_at, call.ended_at or end)]
    steps = call.steps[:job.steps_seen]
    last_step = steps[-1][2] if steps else job.result_at
    stages += [("denoise", job.started_at, last_step), ("decode", last_step, job.result_at)]
    if job.encode_started_at is not None:
        stages.append(("encode", job.encode_started_at, end))
    return stages


def _attributes(job: Job, outcome: str) -> dict[str, Any]:
    """What every span of the job carries: its id, task and model-independent sizes, its call's batch size."""
    request = job.request
    attributes: dict[str, Any] = {
        "openai_dit.request_id": request.request_id, "openai_dit.task": request.task.value,
        "openai_dit.width": request.width, "openai_dit.height": request.height,
        "openai_dit.steps": request.num_inference_steps, "openai_dit.num_outputs": request.num_outputs,
        "openai_dit.outcome": outcome}
    if request.num_frames is not None:
        attributes["openai_dit.num_frames"] = request.num_frames
    if job.call is not None:
        attributes["openai_dit.batch_size"] = job.call.batch_size
    return attributes
