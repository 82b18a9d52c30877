"""What a submission yields, in order, on the event loop: Queued, Started, then StepDone (with Preview where
partial images were asked for) per denoising step, EncodeProgress while the encode stage reports it, and Done
with the result. A failure is raised from the iteration instead (the request's APIError, RequestCancelled, ...).
No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..types import GenerationResult

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Done", "EncodeProgress", "Event", "Preview", "Queued", "Started", "StepDone"]


@dataclass(frozen=True)
class Queued:
    """Admitted: waiting for the pipeline behind `ahead` other requests."""

    ahead: int


@dataclass(frozen=True)
class Started:
    """Its pipeline call started (it may share the call with other requests)."""

    total_steps: int


@dataclass(frozen=True)
class StepDone:
    step: int
    total_steps: int


@dataclass(frozen=True)
class Preview:
    """A partial image of each of this request's outputs (N, H, W, 3 uint8), the `index`-th preview."""

    index: int
    images: np.ndarray


@dataclass(frozen=True)
class EncodeProgress:
    """The encode stage's own progress, 0 to 1 (e.g. a video's MP4, then its thumbnail, then its spritesheet)."""

    fraction: float


@dataclass(frozen=True)
class Done:
    """The last event: the result, and the encode stage's output (None without one)."""

    result: GenerationResult
    output: Any = None


Event = Queued | Started | StepDone | Preview | EncodeProgress | Done
