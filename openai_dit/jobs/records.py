"""What a video job is, as stored: its settings (everything it needs to run again: a resumed job, a remix), its
record, the files beside it, and its id. No I/O here."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import msgspec

from ..protocol.videos import VideoStatus

__all__ = ["ARTIFACTS", "FINISHED", "REFERENCE_FILE", "VideoRecord", "VideoSettings", "is_video_id", "new_video_id"]

ARTIFACTS = {"video": ("video.mp4", "video/mp4"), "thumbnail": ("thumbnail.webp", "image/webp"),
             "spritesheet": ("spritesheet.jpg", "image/jpeg")}
REFERENCE_FILE = "reference.png"  # the input image, kept for remixes and resumed jobs
FINISHED: tuple[VideoStatus, ...] = ("completed", "failed")  # the statuses a job ends in
_ID = re.compile(r"video_[0-9a-f]{32}")


def new_video_id() -> str:
    return "video_" + secrets.token_hex(16)  # 128 random bits: unguessable


def is_video_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


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
    guidance_scale_2: float | None = None
    true_cfg_scale: float | None = None
    max_sequence_length: int | None = None
    has_reference: bool = False

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class VideoRecord:
    id: str
    model: str
    status: VideoStatus
    created_at: int
    settings: VideoSettings
    storage: str  # the job folder's name: random, chosen by the server, never from a client
    completed_at: int | None = None
    expires_at: int | None = None
    remixed_from_video_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    bytes: int = 0
    seq: int = 0
    owner: str | None = None  # the replica running it (a shared store); None: any replica may claim it
    attempts: int = 0  # times it started running
    progress: int = 0  # as its owner last stored it (what other replicas report)
