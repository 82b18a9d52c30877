"""The family table: what differs between model families, as data. One entry per pipeline class.

Each entry says what a checkpoint of that class can do and what the server must do to serve it as asked: its
tasks and input images, the size multiple and frame rule, the call keywords of the frame rate, mask and audio,
the defaults users of the real checkpoint expect, the call keywords that stop the pipeline's own resizing or
binning (so that the requested size is what comes back), whether partial images can be previewed, and whether
cache-dit works on it. A class that is not here is read from its call signature and config instead
(`capabilities.inferred_family`), and `/v1/models` says so. Adding a family is adding an entry here and its tiny
model in `models/tiny/`. No torch here: this module is data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..types import Task

__all__ = ["FAMILIES", "AudioOutput", "Family", "FrameRule", "family_for"]

_T2I, _EDIT, _T2V, _I2V = Task.TEXT_TO_IMAGE, Task.IMAGE_EDIT, Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO


@dataclass(frozen=True)
class FrameRule:
    """Valid frame counts: multiple * k + offset (Wan 4k+1, Mochi 6k+1, LTX 8k+1)."""

    multiple: int
    offset: int = 1

    def accepts(self, frames: int) -> bool:
        return frames >= self.offset and (frames - self.offset) % self.multiple == 0

    def around(self, frames: int) -> tuple[int, int]:
        """The valid counts just below (at least the smallest) and above `frames`."""
        below = max(self.offset, (frames - self.offset) // self.multiple * self.multiple + self.offset)
        return below, below + self.multiple

    def nearest(self, frames: int) -> int:
        """The valid count nearest to `frames` (ties go up), at least `multiple + offset`."""
        k = max(1, round((frames - self.offset) / self.multiple))
        return self.multiple * k + self.offset

    def __str__(self) -> str:
        return f"{self.multiple}k+{self.offset}"


@dataclass(frozen=True)
class AudioOutput:
    """A soundtrack beside the frames: the output attribute that holds it, and where the pipeline keeps its sample
    rate (an attribute path on the pipeline)."""

    attribute: str = "audio"
    sample_rate: str = "vocoder.config.output_sampling_rate"


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Family:
    """One pipeline class. `None` defaults are read from the pipeline's own call signature."""

    name: str  # as users know it, e.g. "FLUX.1 Kontext"
    tasks: frozenset[Task]
    max_input_images: int = 0  # input images the image tasks take (a list when more than 1)
    min_input_side: int = 1  # smallest input image side the pipeline accepts
    size_multiple: int = 16  # width and height: multiples of this (VAE stride x patch size)
    frames: FrameRule | None = None
    fps_keyword: str | None = None  # the call keyword of the frame rate, where the pipeline takes one
    mask_keyword: str | None = None  # inpainting: the call keyword of the mask
    mask_required: bool = False  # inpainting only: an edit without a mask is refused
    audio: AudioOutput | None = None
    default_size: tuple[int, int] | None = None
    default_frames: int | None = None
    default_fps: int | None = None  # the frame rate it is trained at (and encoded at by default)
    default_steps: int | None = None
    default_guidance: float | None = None  # guidance_scale for requests that name none (OpenAI routes)
    exact_size: Mapping[str, Any] = field(default_factory=_frozen)  # call keywords that stop its own resizing
    area_keyword: str | None = None  # a call keyword given width*height (FLUX.1 Kontext's max_area)
    previews: str | None = None  # the latent layout `previews.decode_preview` knows, or None: no partial images
    cache_refused: str | None = None  # why --cache is refused at start-up (cache-dit fails on it), or None
    unsupported: frozenset[str] = frozenset()  # call keywords in its signature that fail with its real components
    min_steps: int = 1  # fewer denoising steps fail (LTX: its shifted schedule needs two)
    max_input_aspect_ratio: float = 20.0  # wider input images fail (pipelines that resize inputs to an area)
    # When a call runs separate guidance passes (what cache-dit's adapter must be told, where it assumes otherwise):
    # "negative_prompt" (Qwen-Image: true CFG needs one), "guidance" (guidance_scale > 1), "true_cfg"
    # (true_cfg_scale > 1 with a negative prompt), "guider" (the pipeline's guider object's scale > 1).
    separate_cfg: str | None = None
    vae_slicing: bool = False  # several outputs in one call need the VAE to decode them one by one
    needs_config: Mapping[str, str] = field(default_factory=_frozen)  # a keyword usable only when a config entry is set
    size_buckets: str | None = None  # the only sizes it makes come from this pipeline's buckets (see capabilities)


def _entries(*families: tuple[tuple[str, ...], Family]) -> Mapping[str, Family]:
    table: dict[str, Family] = {}
    for classes, family in families:
        for name in classes:
            table[name] = family
    return MappingProxyType(table)


_LTX_FRAMES = FrameRule(8)
_LTX2_CACHE = ("cache-dit {version} cannot cache LTX-2: its LTX adapter patches an outdated transformer forward "
               "(it lacks LTX-2's `sigma` argument, so every cached call fails), and the pipeline's three transformer "
               "passes per step (classifier-free, spatio-temporal and modality guidance) would share one cache "
               "context. Serve LTX-2 without --cache.")
_WAN_FRAMES = FrameRule(4)
_LTX2 = Family(
    "LTX-2", frozenset({_T2V}), size_multiple=32, frames=_LTX_FRAMES, fps_keyword="frame_rate", audio=AudioOutput(),
    default_size=(768, 512), default_frames=121, default_fps=24, default_steps=40, default_guidance=4.0,
    min_steps=2, min_input_side=2, cache_refused=_LTX2_CACHE)

FAMILIES: Mapping[str, Family] = _entries(
    # --- images
    (("FluxPipeline",), Family(
        "FLUX.1", frozenset({_T2I}), default_size=(1024, 1024), default_steps=28, default_guidance=3.5,
        previews="flux")),
    # Kontext rescales every output to `max_area` (1 MP by default): given width*height, the size is honoured. Its
    # `_auto_resize` (the conditioning image at ~1 MP) is left on, as the model expects.
    (("FluxKontextPipeline",), Family(
        "FLUX.1 Kontext", frozenset({_T2I, _EDIT}), max_input_images=1, default_size=(1024, 1024), default_steps=28,
        default_guidance=2.5, area_keyword="max_area", previews="flux")),
    (("FluxFillPipeline",), Family(
        "FLUX.1 Fill", frozenset({_EDIT}), max_input_images=1, mask_keyword="mask_image", mask_required=True,
        default_size=(1024, 1024), default_steps=50, default_guidance=30.0, previews="flux")),
    (("Flux2Pipeline",), Family(
        "FLUX.2", frozenset({_T2I, _EDIT}), max_input_images=10, min_input_side=64, max_input_aspect_ratio=8,
        default_size=(1024, 1024), default_steps=50, default_guidance=4.0, previews="flux2")),
    (("Flux2KleinPipeline",), Family(
        "FLUX.2 Klein", frozenset({_T2I, _EDIT}), max_input_images=4, min_input_side=64, max_input_aspect_ratio=8,
        default_size=(1024, 1024), previews="flux2")),
    # Qwen-Image: true CFG (true_cfg_scale) runs only with a negative prompt; the edit pipelines resize their input
    # to ~1 MP themselves.
    (("QwenImagePipeline",), Family(
        "Qwen-Image", frozenset({_T2I}), default_size=(1328, 1328), default_steps=50, previews="qwen-image",
        separate_cfg="negative_prompt")),
    (("QwenImageEditPipeline",), Family(
        "Qwen-Image-Edit", frozenset({_EDIT}), max_input_images=1, default_size=(1024, 1024), default_steps=50,
        previews="qwen-image", separate_cfg="negative_prompt")),
    (("QwenImageEditPlusPipeline",), Family(
        "Qwen-Image-Edit-Plus", frozenset({_EDIT}), max_input_images=3, default_size=(1024, 1024),
        default_steps=40, previews="qwen-image", separate_cfg="negative_prompt")),
    (("CogView3PlusPipeline",), Family(
        "CogView3-Plus", frozenset({_T2I}), default_size=(1024, 1024), default_steps=50, default_guidance=7.0)),
    (("CogView4Pipeline",), Family(
        "CogView4", frozenset({_T2I}), default_size=(1024, 1024), default_steps=50, default_guidance=3.5)),
    # Binning snaps sizes to its 10 standard shapes and does not resize back: off, it rounds down to 16.
    (("HunyuanDiTPipeline",), Family(
        "HunyuanDiT", frozenset({_T2I}), default_size=(1024, 1024), default_steps=50, default_guidance=5.0,
        exact_size=_frozen({"use_resolution_binning": False}))),
    (("StableDiffusion3Pipeline",), Family(
        "Stable Diffusion 3", frozenset({_T2I}), default_size=(1024, 1024), default_steps=28)),
    (("ChromaPipeline",), Family(
        "Chroma", frozenset({_T2I}), default_size=(1024, 1024), default_steps=35, default_guidance=5.0)),
    # Binning computes at ~1 MP and resizes back: off, the requested size is computed (multiples of 32, the DC-AE).
    # Its DPM-Solver scheduler takes no custom sigmas.
    (("SanaPipeline",), Family(
        "Sana", frozenset({_T2I}), size_multiple=32, default_size=(1024, 1024), default_steps=20,
        default_guidance=4.5, exact_size=_frozen({"use_resolution_binning": False}),
        unsupported=frozenset({"sigmas"}))),
    (("ZImagePipeline",), Family(
        "Z-Image", frozenset({_T2I}), default_size=(1024, 1024))),
    # --- videos
    # Wan: one class for 2.1 and 2.2 (2.2: a second expert split at the config's boundary_ratio, which alone takes
    # guidance_scale_2). cache-dit's adapter expects separate guidance passes: with guidance <= 1 there is one.
    (("WanPipeline",), Family(
        "Wan 2.1 / 2.2 text-to-video", frozenset({_T2V}), frames=_WAN_FRAMES, default_size=(832, 480),
        default_frames=81, default_fps=16, default_steps=50, default_guidance=5.0, separate_cfg="guidance",
        needs_config=_frozen({"guidance_scale_2": "boundary_ratio"}))),
    (("WanImageToVideoPipeline",), Family(
        "Wan 2.1 / 2.2 image-to-video", frozenset({_I2V}), max_input_images=1, frames=_WAN_FRAMES,
        default_size=(832, 480), default_frames=81, default_fps=16, default_steps=50, default_guidance=5.0,
        separate_cfg="guidance", needs_config=_frozen({"guidance_scale_2": "boundary_ratio"}))),
    # HunyuanVideo: guidance_scale is the distilled (embedded) guidance; true CFG runs separate passes, which
    # cache-dit's adapter must be told.
    (("HunyuanVideoPipeline",), Family(
        "HunyuanVideo", frozenset({_T2V}), frames=FrameRule(4), default_size=(1280, 720), default_frames=129,
        default_fps=24, default_steps=50, default_guidance=6.0, separate_cfg="true_cfg")),
    # HunyuanVideo 1.5: guidance is its guider object (no keyword), no step callback; several prompts in one call
    # need the VAE to decode them one by one. Image-to-video picks its size from buckets of the input's aspect ratio
    # (no width/height keywords): those buckets are the sizes it can make.
    (("HunyuanVideo15Pipeline",), Family(
        "HunyuanVideo 1.5", frozenset({_T2V}), frames=FrameRule(4), default_size=(848, 480), default_frames=121,
        default_fps=24, default_steps=50, separate_cfg="guider", vae_slicing=True)),
    (("HunyuanVideo15ImageToVideoPipeline",), Family(
        "HunyuanVideo 1.5 image-to-video", frozenset({_I2V}), max_input_images=1, frames=FrameRule(4),
        default_size=(848, 480), default_frames=121, default_fps=24, default_steps=50, separate_cfg="guider",
        vae_slicing=True, size_buckets="hunyuan-video-1.5")),
    # Mochi: 6k+1 frames (`vae_temporal_scale_factor`); its pipeline checks multiples of 8, its transformer needs 16;
    # one step fails.
    (("MochiPipeline",), Family(
        "Mochi", frozenset({_T2V}), frames=FrameRule(6), default_size=(848, 480), default_frames=85,
        default_fps=30, default_steps=64, default_guidance=4.5, min_steps=2)),
    # LTX: sizes multiples of 32 and 8k+1 frames (its VAE's strides); the frame rate is a call argument (it scales
    # the temporal RoPE); one step fails (the schedule's terminal shift needs two).
    (("LTXPipeline",), Family(
        "LTX-Video", frozenset({_T2V}), size_multiple=32, frames=_LTX_FRAMES, fps_keyword="frame_rate",
        default_size=(704, 512), default_frames=161, default_fps=24, default_steps=50, default_guidance=3.0,
        min_steps=2)),
    (("LTXImageToVideoPipeline",), Family(
        "LTX-Video image-to-video", frozenset({_I2V}), max_input_images=1, size_multiple=32, frames=_LTX_FRAMES,
        fps_keyword="frame_rate", default_size=(704, 512), default_frames=161, default_fps=24, default_steps=50,
        default_guidance=3.0, min_steps=2)),
    # LTX-2: a soundtrack beside the frames. cache-dit's LTX adapter patches an outdated transformer forward (no
    # `sigma`), and the pipeline's three transformer passes per step (CFG, STG, modality guidance) would share one
    # cache context: caching is sound only without STG and modality guidance, which changes what the model makes.
    (("LTX2Pipeline",), _LTX2),
    (("LTX2ImageToVideoPipeline",), replace(_LTX2, name="LTX-2 image-to-video", tasks=frozenset({_I2V}),
                                            max_input_images=1)),
)


def family_for(pipeline_class: str) -> Family | None:
    return FAMILIES.get(pipeline_class)
