"""OpenAI Videos API <-> the internal request. Pure functions: no I/O, no torch.

Duration: `seconds` is turned into frames with the request's `fps` (default: the model's) and rounded to a frame
count the model accepts: frames = m * round(seconds * fps / m) + 1, where m is the model's frame multiple (4 for
Wan, whose 81 frames at 16 fps are its usual 5 seconds). `num_frames` sets the count exactly instead. Neither:
the model's default frame count.
"""

from __future__ import annotations

import math

import msgspec

from ..errors import InvalidRequest
from ..models.capabilities import ModelCapabilities
from ..protocol.videos import VideoCreateRequest
from ..types import GenerationRequest, Task
from .images import check_model, parse_size
from .native import check_frames, check_task, resolve_seed

__all__ = ["MAX_FRAMES", "MAX_SECONDS", "VideoSettings", "frames_for_seconds", "plan_video", "to_generation_request"]

MAX_SECONDS = 120.0
MAX_FRAMES = 1000


class VideoSettings(msgspec.Struct, kw_only=True):
    """Everything a video job needs to run again (a resumed job, a remix), stored with the job as JSON."""

    task: str
    prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    seconds: str  # as reported on the Video object
    seed: int
    num_inference_steps: int
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    has_reference: bool = False

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _format_seconds(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _parse_seconds(value: str | float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise InvalidRequest(f"seconds must be a number of seconds above 0 and at most {MAX_SECONDS:g}, e.g. \"4\"; "
                             f"got '{str(value)[:20]}'.", param="seconds", code="invalid_seconds")
    return seconds


def frames_for_seconds(seconds: float, fps: int, caps: ModelCapabilities) -> int:
    """m * round(seconds * fps / m) + 1 frames (at least m + 1): the nearest count the model accepts."""
    m = caps.frame_multiple or 1
    return m * max(1, round(seconds * fps / m)) + 1


def plan_video(body: VideoCreateRequest, task: Task, caps: ModelCapabilities, model_name: str,
               reference_param: str) -> tuple[VideoSettings, bool]:
    """Check everything refusable before reading the reference image or touching the model. Returns the job's
    settings (the model's default size when none was named) and whether the client named a size."""
    check_model(body.model, model_name)
    check_task(task, caps, model_name, param=reference_param)  # the input image is what selects the task
    size = parse_size(body.size, caps)
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
    if body.negative_prompt and not caps.accepts("negative_prompt"):
        raise InvalidRequest(f"Model '{model_name}' does not take negative_prompt.", param="negative_prompt")
    if body.guidance_scale is not None and not caps.accepts("guidance_scale"):
        raise InvalidRequest(f"Model '{model_name}' does not take guidance_scale.", param="guidance_scale")
    width, height = size or caps.default_size()
    settings = VideoSettings(
        task=task.value, prompt=body.prompt, width=width, height=height, num_frames=frames, fps=fps,
        seconds=seconds, seed=resolve_seed(body.seed), num_inference_steps=body.num_inference_steps or
        caps.default_steps, negative_prompt=body.negative_prompt or None, guidance_scale=body.guidance_scale,
        has_reference=task is Task.IMAGE_TO_VIDEO,
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
        seed=settings.seed,
        num_frames=settings.num_frames,
        fps=settings.fps,
        images=[reference] if reference is not None else [],
        request_id=request_id,
    )
