"""What a loaded pipeline can do: its family table entry (`families`), or for a class the table does not know,
what its call signature and config say (then the capabilities are marked inferred)."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import InvalidRequest
from ..types import Task
from .families import AudioOutput, Family, FrameRule, family_for

__all__ = ["ModelCapabilities", "capabilities_of", "derived_size_multiple", "inferred_family"]

logger = logging.getLogger("openai_dit.loader")

# Pipelines whose `image` input is required (they cannot generate from text alone), for classes not in the table.
_IMAGE_REQUIRED_MARKERS = ("Edit", "Img2Img", "Inpaint", "Fill", "ImageToVideo", "I2V", "Variation", "Image2Video")
_INPAINT_MARKERS = ("Inpaint", "Fill")
# Beyond this aspect ratio, pipelines that resize inputs to a fixed area round a side down to zero.
MAX_INPUT_ASPECT_RATIO = 20
# Keywords the server sets itself; never taken from clients as pipeline extras.
_RESERVED = {
    "self", "prompt", "image", "height", "width", "num_inference_steps", "generator", "output_type",
    "return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs", "num_images_per_prompt",
    "num_videos_per_prompt", "latents", "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds", "prompt_embeds_mask", "negative_prompt_embeds_mask", "image_embeds",
    "ip_adapter_image", "ip_adapter_image_embeds", "negative_ip_adapter_image", "negative_ip_adapter_image_embeds",
    "joint_attention_kwargs", "attention_kwargs", "cross_attention_kwargs", "last_image", "mask_image",
}


@dataclass(frozen=True)
class ModelCapabilities:
    pipeline_class: str
    tasks: frozenset[Task]
    max_input_images: int
    call_parameters: frozenset[str]
    size_multiple: int
    frame_multiple: int | None = None  # video: valid frame counts are frame_multiple * k + frame_offset
    frame_offset: int = 1
    default_num_frames: int | None = None
    default_fps: int | None = None
    default_width: int = 1024
    default_height: int = 1024
    batch_keyword: str = "num_images_per_prompt"
    min_input_side: int = 1
    default_steps: int = 28
    previews: bool = False  # partial images can be decoded from its intermediate latents
    preview_layout: str | None = None  # how (see `previews.decode_preview`)
    family: str = ""  # the family's name, e.g. "FLUX.1 Kontext"
    inferred: bool = False  # not in the family table: read from the pipeline's signature and config
    fps_keyword: str | None = None  # the call keyword of the frame rate (LTX: frame_rate)
    mask_keyword: str | None = None  # inpainting: the call keyword of the mask
    mask_required: bool = False  # inpainting only
    audio: AudioOutput | None = None
    audio_sample_rate: int | None = None
    default_guidance: float | None = None
    exact_size: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    area_keyword: str | None = None
    cache_refused: str | None = None
    min_steps: int = 1
    max_input_aspect_ratio: float = MAX_INPUT_ASPECT_RATIO
    separate_cfg: str | None = None  # when a call runs separate guidance passes (see `families.Family`)
    vae_slicing: bool = False
    sizes: tuple[tuple[int, int], ...] = ()  # the only sizes it makes (width, height); empty: any multiple
    max_job_pixels: int | None = None  # the work budget: width x height x frames x outputs per job; None: no limit

    def accepts(self, parameter: str) -> bool:
        return parameter in self.call_parameters

    @property
    def frames(self) -> FrameRule | None:
        return FrameRule(self.frame_multiple, self.frame_offset) if self.frame_multiple else None

    @property
    def inpaints(self) -> bool:
        return self.mask_keyword is not None

    def nearest_size(self, width: int, height: int) -> tuple[int, int]:
        """Of the sizes a bucketed model makes, the one nearest in aspect ratio (then in area) to width x height."""
        ratio = width / height
        return min(self.sizes, key=lambda s: (abs(s[0] / s[1] - ratio), abs(s[0] * s[1] - width * height)))

    def default_size(self, reference: tuple[int, int] | None = None) -> tuple[int, int]:
        """The size used when a request names none: the model's default, or for image inputs the first
        input's aspect ratio at the model's default pixel count, rounded to `size_multiple` (a bucketed model: the
        bucket nearest to that)."""
        if self.sizes:
            return self.nearest_size(*(reference or (self.default_width, self.default_height)))
        if reference is None:
            return self.default_width, self.default_height
        m = self.size_multiple
        area = self.default_width * self.default_height
        ratio = reference[0] / reference[1]
        width = max(m, round((area * ratio) ** 0.5 / m) * m)
        height = max(m, round((area / ratio) ** 0.5 / m) * m)
        return width, height

    def size_arguments(self, width: int, height: int) -> dict[str, Any]:
        """Call keywords that make the pipeline produce exactly width x height (no resizing or binning). A bucketed
        model takes no size: its input image, already fitted to the bucket, decides."""
        arguments = {k: v for k, v in (("width", width), ("height", height)) if self.accepts(k)}
        arguments.update({k: v for k, v in self.exact_size.items() if self.accepts(k)})
        if self.area_keyword and self.accepts(self.area_keyword):
            arguments[self.area_keyword] = width * height
        return arguments

    def check_input_image(self, width: int, height: int, param: str) -> None:
        """Refuse, before any model work, an input image this pipeline would fail on."""
        if min(width, height) < self.min_input_side:
            raise InvalidRequest(f"'{param}' is {width}x{height}; this model needs input images of at least "
                                 f"{self.min_input_side} pixels a side.", param=param, code="image_too_small")
        if max(width, height) > self.max_input_aspect_ratio * min(width, height):
            raise InvalidRequest(f"'{param}' is {width}x{height}; input images may be at most "
                                 f"{self.max_input_aspect_ratio:g}:1 for this model.", param=param,
                                 code="invalid_aspect_ratio")

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline_class,
            "family": self.family,
            "capabilities_inferred": self.inferred,
            "tasks": sorted(t.value for t in self.tasks),
            "max_input_images": self.max_input_images,
            "parameters": sorted(self.call_parameters - _RESERVED),
            "size_multiple": self.size_multiple,
            "default_size": [self.default_width, self.default_height],
            "default_num_frames": self.default_num_frames,
            "frame_multiple": self.frame_multiple,
            "frame_rule": str(self.frames) if self.frames else None,
            "default_fps": self.default_fps,
            "default_num_inference_steps": self.default_steps,
            "default_guidance_scale": self.default_guidance,
            "inpainting": self.inpaints,
            "mask_required": self.mask_required,
            "audio": self.audio is not None,
            "audio_sample_rate": self.audio_sample_rate,
            "partial_images": self.previews,
            "cache": "refused" if self.cache_refused else "supported",
            "min_num_inference_steps": self.min_steps,
            "sizes": [f"{w}x{h}" for w, h in self.sizes] or None,
        }


def _patch(module, name: str, default: int) -> int:
    """A transformer's (spatial) patch size, whether its config holds an int or a (t, h, w) tuple."""
    value = getattr(getattr(module, "config", None), name, None)
    if isinstance(value, (list, tuple)):
        return int(value[-1])
    return int(value) if isinstance(value, int) and value > 0 else default


def derived_size_multiple(pipe) -> int:
    """For a class the table does not know: what width and height must be multiples of, from its VAE stride and
    its transformer's patch size (latents that are not patchified are taken to be packed 2x2, as FLUX does)."""
    transformer = getattr(pipe, "transformer", None)
    for stride in ("vae_scale_factor_spatial", "vae_spatial_compression_ratio"):  # video VAEs
        if isinstance(getattr(pipe, stride, None), int):
            return int(getattr(pipe, stride)) * _patch(transformer, "patch_size", 1)
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    return factor * max(2, _patch(transformer, "patch_size", 2))


def _temporal_factor(pipe) -> int:
    for name in ("vae_scale_factor_temporal", "vae_temporal_scale_factor", "vae_temporal_compression_ratio"):
        value = getattr(pipe, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 4


def _signature_default(params, name: str):
    default = params[name].default if name in params else None
    return default if isinstance(default, (int, float)) and not isinstance(default, bool) else None


def inferred_family(pipe) -> Family:
    """A family entry for a class the table does not know, read from its call signature and config."""
    cls = type(pipe)
    params = inspect.signature(cls.__call__).parameters
    name = cls.__name__
    is_video = "num_frames" in params
    takes_image = "image" in params
    image_required = takes_image and any(marker in name for marker in _IMAGE_REQUIRED_MARKERS)
    tasks: set[Task] = set()
    if takes_image:
        tasks.add(Task.IMAGE_TO_VIDEO if is_video else Task.IMAGE_EDIT)
    if not image_required:
        tasks.add(Task.TEXT_TO_VIDEO if is_video else Task.TEXT_TO_IMAGE)
    inpaints = "mask_image" in params
    sample_size, factor = getattr(pipe, "default_sample_size", None), getattr(pipe, "vae_scale_factor", None)
    side = sample_size * factor if isinstance(sample_size, int) and isinstance(factor, int) else None
    width, height = _signature_default(params, "width") or side, _signature_default(params, "height") or side
    return Family(
        name=f"{name} (inferred)", tasks=frozenset(tasks), max_input_images=1 if takes_image else 0,
        size_multiple=derived_size_multiple(pipe), frames=FrameRule(_temporal_factor(pipe)) if is_video else None,
        fps_keyword=next((k for k in ("frame_rate", "fps") if k in params), None) if is_video else None,
        mask_keyword="mask_image" if inpaints else None,
        mask_required=inpaints and any(marker in name for marker in _INPAINT_MARKERS),
        default_size=(int(width), int(height)) if width and height else None,
        default_frames=_signature_default(params, "num_frames") if is_video else None,
    )


def _resolve(pipe, path: str) -> Any:
    value = pipe
    for part in path.split("."):
        value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
    return value


def _buckets(pipe, name: str | None) -> tuple[tuple[int, int], ...]:
    """The sizes (width, height) a bucketed pipeline makes."""
    if name is None:
        return ()
    if name == "hunyuan-video-1.5":  # its image processor's crop-size list for the transformer's target size
        from diffusers.pipelines.hunyuan_video1_5.image_processor import generate_crop_size_list

        stride = pipe.video_processor.config.vae_scale_factor
        crops = generate_crop_size_list(base_size=pipe.target_size, patch_size=stride)
        return tuple(sorted((int(w), int(h)) for h, w in crops))
    raise ValueError(f"no size buckets known as {name!r}")


def _unusable(pipe, needs_config: Mapping[str, str]) -> frozenset[str]:
    """Keywords the pipeline's config disables (Wan 2.1: no boundary_ratio, so no guidance_scale_2)."""
    config = getattr(pipe, "config", {}) or {}
    return frozenset(k for k, entry in needs_config.items() if config.get(entry) is None)


def capabilities_of(pipe, hints: dict | None = None) -> ModelCapabilities:
    """What `pipe` can do. `hints` (the model folder's openai_dit.json) may set default_width / default_height /
    default_num_frames / default_num_inference_steps / default_fps (the built-in tiny models' small defaults)."""
    hints = hints or {}
    name = type(pipe).__name__
    params = inspect.signature(type(pipe).__call__).parameters
    family = family_for(name)
    inferred = family is None
    if family is None:
        family = inferred_family(pipe)
    is_video = family.frames is not None
    width, height = family.default_size or (1024, 1024)
    steps = family.default_steps or _signature_default(params, "num_inference_steps") or 28
    frames = family.default_frames or (_signature_default(params, "num_frames") if is_video else None)
    audio_rate = _resolve(pipe, family.audio.sample_rate) if family.audio else None
    caps = ModelCapabilities(
        pipeline_class=name, tasks=family.tasks, max_input_images=family.max_input_images,
        call_parameters=frozenset(params) - family.unsupported - _unusable(pipe, family.needs_config),
        size_multiple=family.size_multiple,
        frame_multiple=family.frames.multiple if family.frames else None,
        frame_offset=family.frames.offset if family.frames else 1,
        default_num_frames=int(frames) if frames else None,
        default_fps=(family.default_fps or 16) if is_video else None,
        default_width=int(width), default_height=int(height),
        batch_keyword="num_videos_per_prompt" if "num_videos_per_prompt" in params else "num_images_per_prompt",
        min_input_side=family.min_input_side, default_steps=int(steps),
        previews=family.previews is not None and not is_video, preview_layout=family.previews,
        family=family.name, inferred=inferred, fps_keyword=family.fps_keyword, mask_keyword=family.mask_keyword,
        mask_required=family.mask_required, audio=family.audio,
        audio_sample_rate=int(audio_rate) if isinstance(audio_rate, (int, float)) else None,
        default_guidance=family.default_guidance, exact_size=family.exact_size, area_keyword=family.area_keyword,
        cache_refused=family.cache_refused, min_steps=family.min_steps,
        max_input_aspect_ratio=family.max_input_aspect_ratio,
        separate_cfg=family.separate_cfg, vae_slicing=family.vae_slicing, sizes=_buckets(pipe, family.size_buckets),
    )
    overrides = {field_name: hints[key] for key, field_name in _HINTED.items() if isinstance(hints.get(key), int)}
    return dataclasses.replace(caps, **overrides) if overrides else caps


_HINTED = {"default_width": "default_width", "default_height": "default_height",
           "default_num_frames": "default_num_frames", "default_num_inference_steps": "default_steps",
           "default_fps": "default_fps"}
