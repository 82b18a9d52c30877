"""The internal request, result and progress types: all the runner ever sees. No torch here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .parameters import batch_key_part

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["AudioTrack", "CacheStats", "GenerationRequest", "GenerationResult", "Progress", "Task"]


class Task(str, enum.Enum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_EDIT = "image-edit"
    TEXT_TO_VIDEO = "text-to-video"
    IMAGE_TO_VIDEO = "image-to-video"

    @property
    def is_video(self) -> bool:
        return self in (Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO)


@dataclass
class GenerationRequest:
    """One validated request: everything the pipeline call needs, nothing about the wire format."""

    task: Task
    prompt: str
    width: int
    height: int
    num_inference_steps: int
    seed: int
    num_outputs: int = 1
    # The optional parameters of the parameter table (`parameters.PARAMETERS`): None = not given.
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    guidance_scale_2: float | None = None
    true_cfg_scale: float | None = None
    sigmas: list[float] | None = None
    max_sequence_length: int | None = None
    num_frames: int | None = None
    fps: float | None = None  # a video's frame rate: the MP4's, and the pipeline's where it takes one (LTX)
    mask: Image | None = None  # mode "L", white = repaint; only for pipelines that inpaint
    images: list[Image] = field(default_factory=list)
    partial_images: int = 0  # previews to decode from the intermediate latents, spread over the steps
    cache: dict[str, Any] | None = None  # per-request cache-dit settings over the server's (see CacheController)
    request_id: str = ""

    @property
    def batch_key(self) -> tuple | None:
        """Requests with equal keys can share one pipeline call (prompts, negative prompts, seeds and the number of
        outputs may differ); None: this one runs alone (its input images, or a mask, shape the call)."""
        part = batch_key_part(self)
        if self.images or part is None:
            return None
        cache = tuple(sorted(self.cache.items())) if self.cache else None
        return (self.task, self.width, self.height, self.num_inference_steps, self.partial_images, cache, *part)

    @property
    def seeds(self) -> list[int]:
        """One seed per output: seed, seed+1, ... so output i is reproducible on its own."""
        return [(self.seed + i) % 2**63 for i in range(self.num_outputs)]


@dataclass
class CacheStats:
    enabled: bool
    cached_steps: int = 0
    total_steps: int = 0
    cached_step_indices: list[int] = field(default_factory=list)
    options: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cache_enabled": self.enabled, "cached_steps": self.cached_steps, "total_steps": self.total_steps,
                "cached_step_indices": self.cached_step_indices, "cache_options": self.options}


@dataclass
class GenerationResult:
    """Outputs normalised to uint8: `images` (N, H, W, 3) or `videos` (N, T, H, W, 3)."""

    seeds: list[int]
    started_at: float
    finished_at: float
    images: np.ndarray | None = None
    videos: np.ndarray | None = None
    audio: np.ndarray | None = None  # the videos' soundtracks (N, channels, samples) float32 in [-1, 1] (LTX-2)
    audio_sample_rate: int | None = None
    cache: CacheStats | None = None
    prompt_tokens: int = 0  # the prompt through the model's tokenizer, for usage reports

    @property
    def inference_seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def image_list(self) -> list[np.ndarray]:
        """The images, one (H, W, 3) array each; none for a video."""
        return list(self.images) if self.images is not None else []

    def audio_track(self, index: int) -> AudioTrack | None:
        """The soundtrack of video `index`, or None."""
        if self.audio is None or self.audio_sample_rate is None:
            return None
        return AudioTrack(self.audio[index], self.audio_sample_rate)


@dataclass(frozen=True)
class AudioTrack:
    samples: np.ndarray  # (channels, samples) float32 in [-1, 1]
    sample_rate: int


@dataclass
class Progress:
    """After a denoising step; `previews` (N, H, W, 3 uint8) when a partial image was decoded at this step."""

    step: int
    total_steps: int
    previews: np.ndarray | None = None
    preview_index: int | None = None
