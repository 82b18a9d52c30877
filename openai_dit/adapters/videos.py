"""OpenAI Videos API <-> the internal request. Pure functions: no I/O, no torch.

Duration: `seconds` is turned into frames with the request's `fps` (default: the model's) and rounded to a frame
count the model's frame rule accepts: frames = m * round(seconds * fps / m) + k for a rule mj+k (Wan 4j+1, whose
81 frames at 16 fps are its usual 5 seconds; Mochi 6j+1; LTX 8j+1). `num_frames` sets the count exactly instead.
Neither: the model's default frame count.
"""

from __future__ import annotations

import math
import re

from ..errors import InvalidRequest
from ..jobs.records import VideoSettings
from ..models.capabilities import ModelCapabilities
from ..parameters import check_parameters
from ..protocol.models import ModelNames
from ..protocol.videos import VideoCreateRequest
from ..types import GenerationRequest, Task
from .checks import (
    check_frames,
    check_job_size,
    check_model,
    check_steps,
    check_task,
    requested_size,
    resolve_seed,
)

__all__ = ["MAX_FRAMES", "MAX_SECONDS", "frames_for_seconds", "plan_video", "to_generation_request"]

MAX_SECONDS = 120.0
MAX_FRAMES = 1000


def _format_seconds(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


_SECONDS = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,6})?")  # plain decimals: no "4_0", "1e1", "inf" or whitespace


def _parse_seconds(value: str | float) -> float:
    if isinstance(value, str):
        seconds = float(value) if _SECONDS.fullmatch(value) else math.nan
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise InvalidRequest(f"seconds must be a number of seconds above 0 and at most {MAX_SECONDS:g}, e.g. \"4\"; "
                             f"got '{str(value)[:20]}'.", param="seconds", code="invalid_seconds")
    return seconds


def frames_for_seconds(seconds: float, fps: int, caps: ModelCapabilities) -> int:
    """m * round(seconds * fps / m) + offset frames (at least m + offset): the nearest count the model accepts
    (Wan 4k+1, Mochi 6k+1, LTX 8k+1)."""
    m, offset = (caps.frames.multiple, caps.frames.offset) if caps.frames else (1, 1)
    return m * max(1, round(seconds * fps / m)) + offset


def plan_video(body: VideoCreateRequest, task: Task, caps: ModelCapabilities, names: ModelNames,
               reference_param: str) -> tuple[VideoSettings, bool]:
    """Check everything refusable before reading the reference image or touching the model. Returns the job's
    settings (the model's default size when none was named) and whether the client named a size."""
    check_model(body.model, names, "videos")
    model_name = names.primary
    check_task(task, caps, model_name, param=reference_param)  # the input image is what selects the task
    size = requested_size(body.size, body.width, body.height, caps)
    fps = body.fps or caps.default_fps or 16
    if body.num_frames is not None:
        if body.seconds is not None:
            raise InvalidRequest("Give seconds or num_frames, not both.", param="num_frames")
        check_frames(body.num_frames, caps)
        frames = body.num_frames
        seconds = _format_seconds(frames / fps)
    elif body.seconds is not None:
        value = _parse_seconds(body.seconds)
        frames = frames_for_seconds(value, fps, caps)
        seconds = _format_seconds(value)
    else:
        frames = caps.default_num_frames or frames_for_seconds(4, fps, caps)
        seconds = _format_seconds(frames / fps)
    if frames > MAX_FRAMES:
        raise InvalidRequest(f"That is {frames} frames at {fps} fps; at most {MAX_FRAMES} frames are allowed.",
                             param="seconds" if body.num_frames is None else "num_frames", code="too_many_frames")
    check_steps(body.num_inference_steps, caps, model_name)
    check_parameters({"negative_prompt": body.negative_prompt or None, "guidance_scale": body.guidance_scale,
                      "guidance_scale_2": body.guidance_scale_2, "true_cfg_scale": body.true_cfg_scale,
                      "max_sequence_length": body.max_sequence_length}, caps, model_name)
    width, height = size or caps.default_size()
    check_job_size(width, height, frames, 1, caps, param="num_frames" if body.num_frames is not None else
                   "seconds" if body.seconds is not None else "size")
    guidance = body.guidance_scale if body.guidance_scale is not None else caps.default_guidance
    settings = VideoSettings(
        task=task.value, prompt=body.prompt, width=width, height=height, num_frames=frames, fps=fps,
        seconds=seconds, seed=resolve_seed(body.seed), num_inference_steps=body.num_inference_steps or
        caps.default_steps, negative_prompt=body.negative_prompt or None,
        guidance_scale=guidance if caps.accepts("guidance_scale") else None,
        guidance_scale_2=body.guidance_scale_2, true_cfg_scale=body.true_cfg_scale,
        max_sequence_length=body.max_sequence_length, has_reference=task is Task.IMAGE_TO_VIDEO,
    )
    return settings, size is not None


def to_generation_request(settings: VideoSettings, reference, *, request_id: str) -> GenerationRequest:
    """The runner's request for a job; `reference` is the input image (already fitted to the size) or None."""
    return GenerationRequest(
        task=Task(settings.task),
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        width=settings.width,
        height=settings.height,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        guidance_scale_2=settings.guidance_scale_2,
        true_cfg_scale=settings.true_cfg_scale,
        max_sequence_length=settings.max_sequence_length,
        seed=settings.seed,
        num_frames=settings.num_frames,
        fps=settings.fps,
        images=[reference] if reference is not None else [],
        request_id=request_id,
    )
