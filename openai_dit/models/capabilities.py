"""What a loaded pipeline can do, read from the pipeline itself (its call signature and components)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..errors import InvalidRequest
from ..types import Task
from .previews import preview_family

__all__ = ["ModelCapabilities", "capabilities_of"]

# Pipelines whose `image` input is required (they cannot generate from text alone).
_IMAGE_REQUIRED_MARKERS = ("Edit", "Img2Img", "Inpaint", "ImageToVideo", "I2V", "Variation")
# How many input images a pipeline takes as a list; others take one.
_MULTI_IMAGE_LIMITS = {
    "QwenImageEditPlusPipeline": 3,
    "Flux2KleinPipeline": 4,
    "Flux2Pipeline": 10,
}
# Smallest input image side a pipeline accepts (Flux.2 refuses reference images under 64 px).
_MIN_INPUT_SIDE = {"Flux2KleinPipeline": 64, "Flux2Pipeline": 64}
# Frames per second a video family is trained at (used when a request names none); others: 16.
_DEFAULT_FPS = {"Wan": 16, "LTX": 24, "HunyuanVideo": 24, "CogVideoX": 8, "Mochi": 30, "SkyReels": 24}
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
    frame_multiple: int | None = None
    default_num_frames: int | None = None
    default_fps: int | None = None
    default_width: int = 1024
    default_height: int = 1024
    batch_keyword: str = "num_images_per_prompt"
    min_input_side: int = 1
    default_steps: int = 28
    previews: bool = False  # partial images can be decoded from its intermediate latents

    def accepts(self, parameter: str) -> bool:
        return parameter in self.call_parameters

    def default_size(self, reference: tuple[int, int] | None = None) -> tuple[int, int]:
        """The size used when a request names none: the model's default, or for image inputs the first
        input's aspect ratio at the model's default pixel count, rounded to `size_multiple`."""
        if reference is None:
            return self.default_width, self.default_height
        m = self.size_multiple
        area = self.default_width * self.default_height
        ratio = reference[0] / reference[1]
        width = max(m, round((area * ratio) ** 0.5 / m) * m)
        height = max(m, round((area / ratio) ** 0.5 / m) * m)
        return width, height

    def check_input_image(self, width: int, height: int, param: str) -> None:
        """Refuse, before any model work, an input image this pipeline would fail on."""
        if min(width, height) < self.min_input_side:
            raise InvalidRequest(f"'{param}' is {width}x{height}; this model needs input images of at least "
                                 f"{self.min_input_side} pixels a side.", param=param, code="image_too_small")
        if max(width, height) > MAX_INPUT_ASPECT_RATIO * min(width, height):
            raise InvalidRequest(f"'{param}' is {width}x{height}; input images may be at most "
                                 f"{MAX_INPUT_ASPECT_RATIO}:1.", param=param, code="invalid_aspect_ratio")

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline_class,
            "tasks": sorted(t.value for t in self.tasks),
            "max_input_images": self.max_input_images,
            "parameters": sorted(self.call_parameters - _RESERVED),
            "size_multiple": self.size_multiple,
            "default_size": [self.default_width, self.default_height],
            "default_num_frames": self.default_num_frames,
            "frame_multiple": self.frame_multiple,
            "default_fps": self.default_fps,
            "default_num_inference_steps": self.default_steps,
            "inpainting": self.accepts("mask_image"),
            "partial_images": self.previews,
        }


def _size_multiple(pipe) -> int:
    if hasattr(pipe, "vae_scale_factor_spatial"):  # Wan and other video DiTs: VAE stride x patch size
        patch = getattr(getattr(pipe, "transformer", None), "config", None)
        patch_size = getattr(patch, "patch_size", None) or (1, 2, 2)
        return int(pipe.vae_scale_factor_spatial) * int(patch_size[-1])
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    return factor * 2  # latents are packed into 2x2 patches (Flux, Qwen-Image, SD3, ...)


def _default_dimension(pipe, params, name: str, hints: dict) -> int:
    """The hints file, else the pipeline's own default, else its default sample size (Flux: 128 x 8)."""
    if isinstance(hints.get(f"default_{name}"), int):
        return hints[f"default_{name}"]
    default = params[name].default if name in params else None
    if isinstance(default, int):
        return default
    sample_size = getattr(pipe, "default_sample_size", None)
    factor = getattr(pipe, "vae_scale_factor", None)
    if isinstance(sample_size, int) and isinstance(factor, int):
        return sample_size * factor
    return 1024


def _default_steps(params, hints: dict) -> int:
    """The hints file, else the pipeline's own default step count."""
    if isinstance(hints.get("default_num_inference_steps"), int):
        return hints["default_num_inference_steps"]
    default = params["num_inference_steps"].default if "num_inference_steps" in params else None
    return default if isinstance(default, int) else 28


def _default_fps(name: str, hints: dict) -> int:
    if isinstance(hints.get("default_fps"), int):
        return hints["default_fps"]
    return next((fps for prefix, fps in _DEFAULT_FPS.items() if name.startswith(prefix)), 16)


def capabilities_of(pipe, hints: dict | None = None) -> ModelCapabilities:
    """Read what `pipe` can do; `hints` (from the model folder) may set default_width/height/num_frames."""
    hints = hints or {}
    cls = type(pipe)
    params = inspect.signature(cls.__call__).parameters
    names = frozenset(params)
    name = cls.__name__
    is_video = "num_frames" in names
    takes_image = "image" in names
    image_required = takes_image and any(m in name for m in _IMAGE_REQUIRED_MARKERS)
    tasks: set[Task] = set()
    if is_video:
        if takes_image:
            tasks.add(Task.IMAGE_TO_VIDEO)
        if not image_required:
            tasks.add(Task.TEXT_TO_VIDEO)
    else:
        if takes_image:
            tasks.add(Task.IMAGE_EDIT)
        if not image_required:
            tasks.add(Task.TEXT_TO_IMAGE)
    default_frames = hints.get("default_num_frames", params["num_frames"].default) if is_video else None
    frame_multiple = int(getattr(pipe, "vae_scale_factor_temporal", 4)) if is_video else None
    return ModelCapabilities(
        pipeline_class=name,
        tasks=frozenset(tasks),
        max_input_images=_MULTI_IMAGE_LIMITS.get(name, 1) if takes_image else 0,
        call_parameters=names,
        size_multiple=_size_multiple(pipe),
        frame_multiple=frame_multiple,
        default_num_frames=default_frames if isinstance(default_frames, int) else None,
        default_fps=_default_fps(name, hints) if is_video else None,
        batch_keyword="num_videos_per_prompt" if "num_videos_per_prompt" in names else "num_images_per_prompt",
        min_input_side=_MIN_INPUT_SIDE.get(name, 1),
        default_width=_default_dimension(pipe, params, "width", hints),
        default_height=_default_dimension(pipe, params, "height", hints),
        default_steps=_default_steps(params, hints),
        previews=preview_family(name) is not None and not is_video,
    )
