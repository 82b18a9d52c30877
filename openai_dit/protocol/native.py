"""The native API of the old cache-dit server (`POST /generate` and friends), field for field."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["FlushCacheResponse", "GenerateRequest", "GenerateResponse", "ModelInfoResponse"]

MAX_IMAGE_URLS = 16


OLD_GUIDANCE_SCALE = 7.5  # the old server's default guidance_scale, kept for its clients


class GenerateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Request body of `POST /generate`: every field of the old server, and the mask. Any other field is a 400
    naming it (the old server ignored it)."""

    prompt: Annotated[str, Meta(min_length=1, max_length=100_000, description="What to generate.")]
    negative_prompt: Annotated[str, Meta(max_length=100_000)] = ""
    width: Annotated[int, Meta(ge=64, le=4096, description="Rounded down to the model's size multiple, as the "
                               "old server's pipelines did; the response says the size made. Absent: the model's "
                               "default (1024 for FLUX); for image inputs, the first input's aspect ratio at that "
                               "pixel count.")] | None = None
    height: Annotated[int, Meta(ge=64, le=4096)] | None = None
    num_inference_steps: Annotated[int, Meta(ge=1, le=200)] = 50
    guidance_scale: Annotated[float, Meta(ge=0, le=30, description="Absent: 7.5, the old server's default (pass "
                                          "the model's own, e.g. 3.5 for FLUX.1-dev).")] | None = None
    guidance_scale_2: Annotated[float, Meta(ge=0, le=30, description="Wan 2.2: the low-noise expert's "
                                            "guidance.")] | None = None
    true_cfg_scale: Annotated[float, Meta(ge=0, le=20)] | None = None
    max_sequence_length: Annotated[int, Meta(ge=1, le=4096)] | None = None
    sigmas: Annotated[list[float], Meta(max_length=1000)] | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1,
                              description="Seed of the first image; image i uses seed + i. Absent or negative: "
                              "random (reported back in `seeds`).")] | None = None
    num_images: Annotated[int, Meta(ge=1, le=4)] = 1
    image_urls: Annotated[list[str], Meta(max_length=MAX_IMAGE_URLS,
                                          description="data: URIs, raw base64, http(s) URLs, or local paths "
                                          "under the server's --allowed-local-media-path.")] | None = None
    mask: Annotated[str, Meta(max_length=30_000_000, description="Inpainting: the mask (white = repaint), in any "
                              "form image_urls takes; needs image_urls and a model that inpaints.")] | None = None
    num_frames: Annotated[int, Meta(ge=1, le=200)] | None = None
    fps: Annotated[int, Meta(ge=1, le=60, description="Absent: the model's frame rate (16 for Wan, 24 for LTX); "
                             "passed to pipelines that take one (LTX's frame_rate).")] | None = None
    include_stats: bool = False
    output_format: Literal["base64", "path"] = "base64"
    output_dir: Annotated[str, Meta(max_length=255, description="Subfolder of the server's --output-dir.")] | None = (
        None
    )


class GenerateResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    images: list[str] | None = None
    video: str | None = None
    stats: dict | None = None
    time_cost: float = 0.0
    inference_start_time: str | None = None
    inference_end_time: str | None = None
    seeds: list[int] | None = None
    width: int | None = None  # the size made
    height: int | None = None


class ModelInfoResponse(msgspec.Struct, kw_only=True):
    model_path: str
    device: str | None
    torch_dtype: str | None
    enable_cache: bool
    is_loaded: bool
    tasks: list[str] = msgspec.field(default_factory=list)
    max_input_images: int = 0
    size_multiple: int | None = None
    default_size: list[int] | None = None
    frame_multiple: int | None = None
    default_num_frames: int | None = None
    parameters: list[str] = msgspec.field(default_factory=list)
    cache: dict | None = None
    compile: bool = False
    parallel_type: str | None = None
    world_size: int = 1
    parallel: dict | None = None  # several ranks: {"type", "world_size", "text_encoder", "vae"}
    queued_requests: int = 0


class FlushCacheResponse(msgspec.Struct):
    message: str
