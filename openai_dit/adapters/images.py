"""OpenAI Images API <-> the internal request and result. Pure functions: no I/O, no torch."""

from __future__ import annotations

import math

from ..errors import InvalidRequest
from ..models.capabilities import ModelCapabilities
from ..parameters import check_parameters
from ..protocol.images import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImagesResponse,
    ImageVariationRequest,
    Usage,
    UsageDetails,
)
from ..protocol.models import ModelNames
from ..types import GenerationRequest, GenerationResult, Task
from .checks import (
    MAX_SIDE,
    check_job_size,
    check_mask,
    check_model,
    check_steps,
    check_task,
    nearest_side,
    requested_size,
    resolve_seed,
)

__all__ = [
    "OutputSpec",
    "response_format",
    "check_request",
    "parse_quality_steps",
    "resolve_steps",
    "size_for_input",
    "to_generation_request",
    "usage_of",
]

QUALITY_LEVELS = ("low", "medium", "high")
_QUALITY_ALIASES = {"standard": "medium", "hd": "high", "xhigh": "high", "max": "high"}  # DALL-E 3's, GPT image's
# OpenAI's default response_format: links for the DALL-E models, base64 for everything else (GPT image models).
_URL_BY_DEFAULT = ("dall-e-2", "dall-e-3")
_QUALITY_FRACTIONS = {"low": 0.25, "medium": 0.5, "high": 1.0}

AnyImageRequest = ImageGenerationRequest | ImageEditRequest | ImageVariationRequest


def parse_quality_steps(text: str | None) -> dict[str, int]:
    """`low=8,medium=16,high=28` -> {"low": 8, ...}; levels left out keep the default rule. ValueError if bad."""
    table: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        digits = value.strip()
        if name not in QUALITY_LEVELS or not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= 200:
            raise ValueError(f"'{item}': expected low|medium|high=STEPS with 1 <= STEPS <= 200")
        table[name] = int(value)
    return table


def resolve_steps(body: AnyImageRequest, caps: ModelCapabilities, table: dict[str, int]) -> tuple[int, str]:
    """(steps, quality reported back). `num_inference_steps` wins over `quality`; auto = the model's default."""
    quality = getattr(body, "quality", None) or "auto"
    level = _QUALITY_ALIASES.get(quality, quality)
    if level == "auto":
        steps = caps.default_steps
    else:
        steps = table.get(level) or max(1, math.ceil(caps.default_steps * _QUALITY_FRACTIONS[level]))
    return body.num_inference_steps or steps, level


def size_for_input(width: int, height: int, caps: ModelCapabilities) -> tuple[int, int]:
    """size=auto on an edit: the first input's size, scaled down to fit MAX_SIDE and rounded to the multiple."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    m = caps.size_multiple
    return nearest_side(int(width * scale), m), nearest_side(int(height * scale), m)


def _given(body: AnyImageRequest) -> dict:
    """The parameter table's entries the client sent."""
    return {"negative_prompt": body.negative_prompt or None, "guidance_scale": body.guidance_scale,
            "guidance_scale_2": body.guidance_scale_2, "true_cfg_scale": body.true_cfg_scale,
            "max_sequence_length": body.max_sequence_length}


def check_request(body: AnyImageRequest, task: Task, caps: ModelCapabilities, names: ModelNames, *,
                  cache_enabled: bool, cache_fixed: bool, param: str | None = None,
                  mask: bool = False) -> tuple[int, int] | None:
    """Everything refusable before reading images or touching the model. Returns the size the client named
    (None for auto)."""
    check_model(body.model, names, "images")
    model_name = names.primary
    check_task(task, caps, model_name, param=param)
    if task is Task.IMAGE_EDIT:
        check_mask(mask, task, caps, model_name)
    size = requested_size(body.size, body.width, body.height, caps)
    check_steps(body.num_inference_steps, caps, model_name)
    if getattr(body, "background", None) == "transparent":
        raise InvalidRequest("background 'transparent' is not supported: this model generates opaque RGB images.",
                             param="background", code="unsupported_background")
    if body.output_compression is not None and (body.output_format or "png") == "png" \
            and body.output_compression < 100:
        raise InvalidRequest("output_compression applies to jpeg and webp; png output is lossless.",
                             param="output_compression")
    if getattr(body, "stream", False) and getattr(body, "partial_images", None) and not caps.previews:
        raise InvalidRequest(f"Model '{model_name}' cannot preview partial images; use partial_images=0.",
                             param="partial_images", code="unsupported_parameter")
    check_parameters(_given(body), caps, model_name)
    if body.cache is not None:
        if not cache_enabled:
            raise InvalidRequest("Per-request cache settings need the server to run with --cache.", param="cache")
        if cache_fixed:
            raise InvalidRequest("Per-request cache settings are refused with --compile or several ranks: changing "
                                 "them would recompile the model or re-apply cache-dit on every rank.", param="cache")
    return size


def _cache_overrides(body: AnyImageRequest) -> dict | None:
    if body.cache is None:
        return None
    c = body.cache
    return {"enabled": c.enabled, "rdt": c.rdt, "max_warmup_steps": c.max_warmup_steps,
            "max_cached_steps": c.max_cached_steps, "max_continuous_cached_steps": c.max_continuous_cached_steps,
            "scm_policy": c.scm}


def to_generation_request(body: AnyImageRequest, task: Task, caps: ModelCapabilities, *, size: tuple[int, int],
                          steps: int, images: list, mask=None, request_id: str) -> GenerationRequest:
    check_job_size(*size, None, body.n, caps, param="n")
    return GenerationRequest(
        task=task,
        prompt=getattr(body, "prompt", ""),
        negative_prompt=body.negative_prompt or None,
        width=size[0],
        height=size[1],
        num_inference_steps=steps,
        guidance_scale=body.guidance_scale if body.guidance_scale is not None else caps.default_guidance,
        guidance_scale_2=body.guidance_scale_2,
        true_cfg_scale=body.true_cfg_scale,
        max_sequence_length=body.max_sequence_length,
        seed=resolve_seed(body.seed),
        num_outputs=body.n,
        images=images,
        mask=mask,
        partial_images=(getattr(body, "partial_images", None) or 0) if getattr(body, "stream", False) else 0,
        cache=_cache_overrides(body),
        request_id=request_id,
    )


def usage_of(result: GenerationResult, request: GenerationRequest, caps: ModelCapabilities) -> Usage:
    """Tokens as the transformer sees them: one per size_multiple x size_multiple patch of each input and
    output image; text tokens from the model's tokenizer."""
    m = caps.size_multiple
    image_tokens = sum(math.ceil(img.size[0] / m) * math.ceil(img.size[1] / m) for img in request.images)
    output_tokens = request.num_outputs * (request.width // m) * (request.height // m)
    input_tokens = result.prompt_tokens + image_tokens
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens,
                 input_tokens_details=UsageDetails(image_tokens=image_tokens, text_tokens=result.prompt_tokens))


def response_format(body: AnyImageRequest, default: str) -> str:
    """The request's response_format; absent, the server's `default` ("auto": OpenAI's rule by model name)."""
    if body.response_format:
        return body.response_format
    if default != "auto":
        return default
    return "url" if body.model in _URL_BY_DEFAULT else "b64_json"


class OutputSpec:
    """How results leave: image format and quality, links or inline, and the fields echoed back."""

    def __init__(self, body: AnyImageRequest, size: tuple[int, int], quality: str, default_format: str) -> None:
        self.format = body.output_format or "png"
        self.compression = body.output_compression
        self.as_url = response_format(body, default_format) == "url"
        self.size = f"{size[0]}x{size[1]}"
        self.quality = quality
        self.background = "opaque"

    def response(self, created: int, data: list, usage: Usage) -> ImagesResponse:
        return ImagesResponse(created=created, data=data, background=self.background, output_format=self.format,
                              quality=self.quality, size=self.size, usage=usage)
