"""Native `/generate` <-> the internal request and result. Pure functions: no I/O, no torch."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from ..errors import InvalidRequest, UnsupportedTask
from ..models.capabilities import ModelCapabilities
from ..protocol.native import GenerateRequest, GenerateResponse
from ..types import GenerationRequest, GenerationResult, Task

__all__ = [
    "check_frames",
    "check_request",
    "check_size",
    "check_task",
    "iso_time",
    "resolve_seed",
    "select_task",
    "to_generation_request",
    "to_response",
]


def select_task(body: GenerateRequest, caps: ModelCapabilities) -> Task:
    """The old contract: images -> edit; num_frames > 1 -> video; both -> image-to-video. A video-only model
    makes video without num_frames."""
    video_only = bool(caps.tasks) and all(t.is_video for t in caps.tasks)
    wants_video = (body.num_frames or 0) > 1 or video_only
    if body.image_urls:
        return Task.IMAGE_TO_VIDEO if wants_video else Task.IMAGE_EDIT
    return Task.TEXT_TO_VIDEO if wants_video else Task.TEXT_TO_IMAGE


def check_task(task: Task, caps: ModelCapabilities, model_name: str, *, param: str | None = None) -> None:
    if task not in caps.tasks:
        can = ", ".join(sorted(t.value for t in caps.tasks)) or "nothing"
        raise UnsupportedTask(f"Model '{model_name}' cannot do {task.value} (it does: {can}).", param=param)


def check_size(width: int | None, height: int | None, caps: ModelCapabilities) -> None:
    """Sizes the client named must be multiples of the model's; absent ones are derived as multiples."""
    m = caps.size_multiple
    for name, value in (("width", width), ("height", height)):
        if value is not None and value % m:
            raise InvalidRequest(f"{name} must be a multiple of {m} for this model (got {value}; nearest: "
                                 f"{max(m, round(value / m) * m)}).", param=name, code="invalid_size")


def check_frames(num_frames: int, caps: ModelCapabilities) -> None:
    k = caps.frame_multiple or 1
    if (num_frames - 1) % k:
        low = (num_frames - 1) // k * k + 1
        raise InvalidRequest(f"num_frames must be {k}k+1 for this model (e.g. {low} or {low + k}); got "
                             f"{num_frames}.", param="num_frames", code="invalid_num_frames")


def check_request(body: GenerateRequest, caps: ModelCapabilities, model_name: str) -> Task:
    """Everything that can be refused before any I/O or model work. Returns the task."""
    task = select_task(body, caps)
    check_task(task, caps, model_name, param="image_urls" if body.image_urls else None)
    n_images = len(body.image_urls or [])
    if n_images > max(caps.max_input_images, 1) or (task is Task.IMAGE_TO_VIDEO and n_images > 1):
        limit = 1 if task is Task.IMAGE_TO_VIDEO else caps.max_input_images
        raise InvalidRequest(f"Model '{model_name}' takes at most {limit} input image(s) for {task.value}; got "
                             f"{n_images}.", param="image_urls", code="too_many_images")
    check_size(body.width, body.height, caps)
    if task.is_video:
        if body.num_frames is not None:
            check_frames(body.num_frames, caps)
        if body.num_images > 1:
            raise InvalidRequest("num_images must be 1 for video: the response carries one video.",
                                 param="num_images")
    if body.sigmas is not None:
        if not caps.accepts("sigmas"):
            raise InvalidRequest(f"Model '{model_name}' does not take sigmas.", param="sigmas")
        if len(body.sigmas) != body.num_inference_steps:
            raise InvalidRequest("sigmas must have num_inference_steps entries.", param="sigmas")
    if body.true_cfg_scale is not None and not caps.accepts("true_cfg_scale"):
        raise InvalidRequest(f"Model '{model_name}' does not take true_cfg_scale.", param="true_cfg_scale")
    return task


def resolve_seed(seed: int | None) -> int:
    """Absent or negative (-1 in many UIs) means random; the seed used is reported back."""
    if seed is None or seed < 0:
        return secrets.randbits(63)
    return seed % 2**63


def to_generation_request(body: GenerateRequest, task: Task, caps: ModelCapabilities, images: list,
                          *, request_id: str) -> GenerationRequest:
    num_frames = body.num_frames if task.is_video else None
    if task.is_video and num_frames is None:
        num_frames = caps.default_num_frames
    width, height = caps.default_size(images[0].size if images else None)
    return GenerationRequest(
        task=task,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt or None,
        width=body.width or width,
        height=body.height or height,
        num_inference_steps=body.num_inference_steps,
        guidance_scale=body.guidance_scale,
        true_cfg_scale=body.true_cfg_scale,
        sigmas=body.sigmas,
        seed=resolve_seed(body.seed),
        num_outputs=body.num_images,
        num_frames=num_frames,
        fps=body.fps if task.is_video else None,
        images=images,
        request_id=request_id,
    )


def iso_time(timestamp: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as the old server wrote it."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_response(result: GenerationResult, *, images: list[str] | None, video: str | None,
                include_stats: bool) -> GenerateResponse:
    stats = None
    if include_stats:
        stats = {**(result.cache.to_dict() if result.cache else {"cache_enabled": False}),
                 "seeds": result.seeds, "inference_seconds": round(result.inference_seconds, 4)}
    return GenerateResponse(
        images=images, video=video, stats=stats, time_cost=round(result.inference_seconds, 4),
        inference_start_time=iso_time(result.started_at), inference_end_time=iso_time(result.finished_at),
        seeds=result.seeds,
    )
