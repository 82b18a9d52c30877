"""The OpenAI Images API wire format (generations, edits, variations, stream events). No torch here.

Fields the official API defines keep its names and values (those this server has no use for are accepted and do
nothing: `user`, `moderation`, `style`, `safety_identifier`, `complexity`, `frame_count`, `frame_duration_ms`, `svg`,
`input_fidelity`, an edit's `markup` file). Diffusion settings the API lacks arrive as extra keys (the SDK's
`extra_body`), named as vLLM-Omni and SGLang name them: `width` and `height` (instead of `size`),
`negative_prompt`, `num_inference_steps`, `guidance_scale`, `guidance_scale_2`, `true_cfg_scale`,
`max_sequence_length`, `seed`, and this server's `cache`. Any other field is a 400 naming it, as OpenAI answers.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "CacheOverrides",
    "ImageData",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageStreamEvent",
    "ImageVariationRequest",
    "ImagesResponse",
    "Usage",
    "UsageDetails",
]

Quality = Literal["low", "medium", "high", "auto", "standard", "hd", "xhigh", "max"]
OutputFormat = Literal["png", "jpeg", "webp"]


class CacheOverrides(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-request cache-dit settings (the `cache` extension). Only settings that change which steps are cached;
    refused when the server runs without --cache or with --compile."""

    enabled: bool | None = None
    rdt: Annotated[float, Meta(ge=0, le=100)] | None = None
    max_warmup_steps: Annotated[int, Meta(ge=0, le=200)] | None = None
    max_cached_steps: Annotated[int, Meta(ge=-1, le=200)] | None = None
    max_continuous_cached_steps: Annotated[int, Meta(ge=-1, le=200)] | None = None
    scm: Literal["slow", "medium", "fast", "ultra", "none"] | None = None


class _Extensions(msgspec.Struct, kw_only=True):
    """Diffusion settings beyond the OpenAI contract; the pipeline's default where absent."""

    negative_prompt: Annotated[str, Meta(max_length=100_000)] | None = None
    num_inference_steps: Annotated[int, Meta(ge=1, le=200, description="Overrides the step count of `quality`.")] \
        | None = None
    guidance_scale: Annotated[float, Meta(ge=0, le=30)] | None = None
    guidance_scale_2: Annotated[float, Meta(ge=0, le=30)] | None = None
    true_cfg_scale: Annotated[float, Meta(ge=0, le=30)] | None = None
    max_sequence_length: Annotated[int, Meta(ge=1, le=4096)] | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1, description="Seed of the first image; image i uses "
                              "seed + i. Absent or negative: random.")] | None = None
    cache: CacheOverrides | None = None


class _Outputs(_Extensions, kw_only=True, forbid_unknown_fields=True):
    model: str | None = None
    n: Annotated[int, Meta(ge=1, le=10)] = 1
    size: Annotated[str, Meta(max_length=32, description='"auto" or "WxH"')] | None = None
    width: Annotated[int, Meta(ge=1, le=65536, description="With height, instead of size (vLLM-Omni / SGLang).")] \
        | None = None
    height: Annotated[int, Meta(ge=1, le=65536)] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: Annotated[str, Meta(max_length=1000)] | None = None


class ImageGenerationRequest(_Outputs, kw_only=True):
    """`POST /v1/images/generations` (JSON)."""

    prompt: Annotated[str, Meta(min_length=1, max_length=100_000)]
    quality: Quality | None = None
    output_format: OutputFormat | None = None
    output_compression: Annotated[int, Meta(ge=0, le=100)] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    moderation: Literal["low", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    stream: bool = False
    partial_images: Annotated[int, Meta(ge=0, le=3)] | None = None
    # OpenAI fields that change nothing here (documented no-ops).
    safety_identifier: Annotated[str, Meta(max_length=1000)] | None = None
    complexity: Literal["low", "medium", "high"] | None = None
    frame_count: Annotated[int, Meta(ge=1, le=100)] | None = None
    frame_duration_ms: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    svg: dict | None = None


class ImageEditRequest(ImageGenerationRequest, kw_only=True):
    """`POST /v1/images/edits` (multipart): the non-file fields; files travel beside it (`image`/`image[]`, `mask`
    or vLLM-Omni's `mask_image`, OpenAI's `markup`, ignored). `url`: input images by URL (vLLM-Omni, SGLang)."""

    input_fidelity: Literal["high", "low"] | None = None
    url: Annotated[list[Annotated[str, Meta(max_length=30_000_000)]], Meta(max_length=16)] | None = None
    mask_image: Annotated[str, Meta(max_length=30_000_000, description="The mask as a URL or data URL (or a "
                                    "file part).")] | None = None


class ImageVariationRequest(_Outputs, kw_only=True):
    """`POST /v1/images/variations` (multipart): the non-file fields. Extensions as for generations."""

    output_format: OutputFormat | None = None
    output_compression: Annotated[int, Meta(ge=0, le=100)] | None = None


class ImageData(msgspec.Struct, kw_only=True, omit_defaults=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class UsageDetails(msgspec.Struct, kw_only=True):
    image_tokens: int
    text_tokens: int


class Usage(msgspec.Struct, kw_only=True):
    """Text tokens: the prompt through the model's tokenizer; image tokens: transformer patches of the inputs
    and outputs (one per size_multiple x size_multiple pixels)."""

    input_tokens: int
    input_tokens_details: UsageDetails
    output_tokens: int
    total_tokens: int


class ImagesResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    created: int
    data: list[ImageData]
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    usage: Usage | None = None


class ImageStreamEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One `data:` payload of a stream: `<prefix>.partial_image` (with partial_image_index) or `<prefix>.completed`
    (with usage)."""

    type: str
    b64_json: str
    background: str
    created_at: int
    output_format: str
    quality: str
    size: str
    partial_image_index: int | None = None
    usage: Usage | None = None
