"""Native `/generate` <-> the internal request and result. Pure functions: no I/O, no torch."""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import InvalidRequest
from ..models.capabilities import ModelCapabilities
from ..parameters import check_parameters
from ..protocol.native import OLD_GUIDANCE_SCALE, GenerateRequest, GenerateResponse
from ..types import GenerationRequest, GenerationResult, Task
from .checks import check_frames, check_job_size, check_mask, check_steps, check_task, resolve_seed, round_down_size

__all__ = [
    "check_request",
    "iso_time",
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


def _given(body: GenerateRequest) -> dict:
    """The table's parameters as the client sent them (not the old defaults)."""
    return {"negative_prompt": body.negative_prompt or None, "guidance_scale": body.guidance_scale,
            "guidance_scale_2": body.guidance_scale_2, "true_cfg_scale": body.true_cfg_scale, "sigmas": body.sigmas,
            "max_sequence_length": body.max_sequence_length, "mask": body.mask}


def check_request(body: GenerateRequest, caps: ModelCapabilities, model_name: str) -> Task:
    """Everything that can be refused before any I/O or model work. Returns the task."""
    task = select_task(body, caps)
    needs_image = not (caps.tasks & {Task.TEXT_TO_IMAGE, Task.TEXT_TO_VIDEO})
    check_task(task, caps, model_name, param="image_urls" if body.image_urls or needs_image else
               "num_frames" if body.num_frames else None)
    n_images = len(body.image_urls or [])
    if n_images > max(caps.max_input_images, 1) or (task is Task.IMAGE_TO_VIDEO and n_images > 1):
        limit = 1 if task is Task.IMAGE_TO_VIDEO else caps.max_input_images
        raise InvalidRequest(f"Model '{model_name}' takes at most {limit} input image(s) for {task.value}; got "
                             f"{n_images}.", param="image_urls", code="too_many_images")
    check_mask(body.mask is not None, task, caps, model_name)
    check_steps(body.num_inference_steps, caps, model_name)
    if task.is_video:
        if body.num_frames is not None:
            check_frames(body.num_frames, caps)
        if body.num_images > 1:
            raise InvalidRequest("num_images must be 1 for video: the response carries one video.",
                                 param="num_images")
    check_parameters(_given(body), caps, model_name)
    if body.sigmas is not None and len(body.sigmas) != body.num_inference_steps:
        raise InvalidRequest("sigmas must have num_inference_steps entries.", param="sigmas")
    return task


def to_generation_request(body: GenerateRequest, task: Task, caps: ModelCapabilities, images: list, mask=None,
                          *, request_id: str) -> GenerationRequest:
    """Sizes as the old server served them: any width/height in range, rounded down to the model's multiple (what
    the pipelines themselves do); absent, the model's default (for image inputs, the first one's aspect ratio)."""
    num_frames = body.num_frames if task.is_video else None
    if task.is_video and num_frames is None:
        num_frames = caps.default_num_frames
    default_width, default_height = caps.default_size(images[0].size if images else None)
    width, height = round_down_size(body.width or default_width, body.height or default_height, caps)
    check_job_size(width, height, num_frames, body.num_images, caps, size_param="width",
                   param="num_frames" if task.is_video else "num_images")
    guidance = body.guidance_scale if body.guidance_scale is not None else OLD_GUIDANCE_SCALE
    return GenerationRequest(
        task=task,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt or None,
        width=width,
        height=height,
        num_inference_steps=body.num_inference_steps,
        guidance_scale=guidance if caps.accepts("guidance_scale") else None,
        guidance_scale_2=body.guidance_scale_2,
        true_cfg_scale=body.true_cfg_scale,
        sigmas=body.sigmas,
        max_sequence_length=body.max_sequence_length,
        seed=resolve_seed(body.seed),
        num_outputs=body.num_images,
        num_frames=num_frames,
        fps=(body.fps or caps.default_fps) if task.is_video else None,
        images=images,
        mask=mask,
        request_id=request_id,
    )


def iso_time(timestamp: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as the old server wrote it."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_response(result: GenerationResult, request: GenerationRequest, *, images: list[str] | None,
                video: str | None, include_stats: bool) -> GenerateResponse:
    stats = None
    if include_stats:
        stats = {**(result.cache.to_dict() if result.cache else {"cache_enabled": False}),
                 "seeds": result.seeds, "inference_seconds": round(result.inference_seconds, 4)}
    return GenerateResponse(
        images=images, video=video, stats=stats, time_cost=round(result.inference_seconds, 4),
        inference_start_time=iso_time(result.started_at), inference_end_time=iso_time(result.finished_at),
        seeds=result.seeds, width=request.width, height=request.height,
    )
