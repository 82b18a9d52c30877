"""The OpenAI Videos API wire format: create (multipart or JSON), the Video job object, lists, remix. No torch.

Diffusion settings the API lacks arrive as extra keys (the SDK's `extra_body`), named as vLLM-Omni and SGLang name
them: `width` and `height` (instead of `size`), `negative_prompt`, `num_inference_steps`, `guidance_scale`,
`guidance_scale_2`, `true_cfg_scale`, `max_sequence_length`, `seed`, `fps`, `num_frames`, `n` (1), and the input
image as vLLM-Omni's `image_reference` ({"image_url": ...}) or SGLang's `reference_url`. Any other field is a 400
naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "InputReference",
    "Video",
    "VideoCreateRequest",
    "VideoDeleted",
    "VideoError",
    "VideoList",
    "VideoRemixRequest",
    "VideoStatus",
]

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
Prompt = Annotated[str, Meta(min_length=1, max_length=100_000)]


class InputReference(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`input_reference` as an object: `{"image_url": ...}` (an http(s) URL or a data URL)."""

    image_url: Annotated[str, Meta(max_length=30_000_000)] | None = None
    file_id: Annotated[str, Meta(max_length=200)] | None = None


class VideoCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/videos`. The image file of `input_reference`, when uploaded, travels beside it."""

    prompt: Prompt
    model: str | None = None
    seconds: Annotated[str, Meta(max_length=16)] | float | None = None
    size: Annotated[str, Meta(max_length=32, description='"WxH"')] | None = None
    width: Annotated[int, Meta(ge=1, le=65536, description="With height, instead of size (vLLM-Omni / SGLang).")] \
        | None = None
    height: Annotated[int, Meta(ge=1, le=65536)] | None = None
    input_reference: InputReference | Annotated[str, Meta(max_length=30_000_000)] | None = None
    image_reference: InputReference | Annotated[str, Meta(max_length=30_000_000, description="vLLM-Omni's form of "
                                                          "input_reference: JSON {\"image_url\": ...}.")] | None = None
    reference_url: Annotated[str, Meta(max_length=30_000_000, description="SGLang's form of input_reference: an "
                                       "image URL.")] | None = None
    n: Annotated[int, Meta(ge=1, le=1, description="Videos per job: 1.")] = 1
    negative_prompt: Annotated[str, Meta(max_length=100_000)] | None = None
    num_inference_steps: Annotated[int, Meta(ge=1, le=200)] | None = None
    guidance_scale: Annotated[float, Meta(ge=0, le=30)] | None = None
    guidance_scale_2: Annotated[float, Meta(ge=0, le=30, description="Wan 2.2: the low-noise expert's "
                                            "guidance.")] | None = None
    true_cfg_scale: Annotated[float, Meta(ge=0, le=30)] | None = None
    max_sequence_length: Annotated[int, Meta(ge=1, le=4096)] | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1, description="Absent or negative: random; the seed "
                              "used is reported on the Video object.")] | None = None
    fps: Annotated[int, Meta(ge=1, le=60, description="Frames per second of the MP4 (default: the model's).")] \
        | None = None
    num_frames: Annotated[int, Meta(ge=2, le=1000, description="Exact frame count; instead of `seconds`.")] \
        | None = None


class VideoRemixRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/videos/{id}/remix`: the source's settings (seed and input image included), a new prompt."""

    prompt: Prompt


class VideoError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class Video(msgspec.Struct, kw_only=True):
    """The Video job object. `seed`, `fps` and `num_frames` are this server's additions."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str
    seconds: str
    remixed_from_video_id: str | None = None
    error: VideoError | None = None
    seed: int | None = None
    fps: int | None = None
    num_frames: int | None = None


class VideoList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True
