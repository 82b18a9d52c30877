"""Output encoders: uint8 arrays -> PNG / JPEG / WebP bytes, frames -> MP4 (H.264). CPU-bound: call off the
event loop and off the generation thread."""

from __future__ import annotations

import base64
import io
import math
from fractions import Fraction

import numpy as np
from PIL import Image

from ..types import AudioTrack

__all__ = ["IMAGE_MIME_TYPES", "encode_image", "encode_spritesheet", "encode_video", "to_base64"]

IMAGE_MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def encode_image(pixels: np.ndarray, fmt: str = "png", *, quality: int | None = None,
                 png_compress_level: int = 1) -> bytes:
    """One (H, W, 3) uint8 image -> bytes. PNG level 1 is several times faster than the default 6."""
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=png_compress_level)
    elif fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality if quality is not None else 90)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=quality if quality is not None else 90, method=0)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buffer.getvalue()


def encode_video(frames: np.ndarray, fps: float, *, crf: int = 18, audio: AudioTrack | None = None) -> bytes:
    """(T, H, W, 3) uint8 frames -> MP4 bytes (H.264, yuv420p; odd sizes padded by one pixel), with `audio` as an
    AAC stream at its own sample rate, padded with silence (or trimmed) to the frames' duration so that both
    streams end together."""
    import av

    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        sound = container.add_stream("aac", rate=audio.sample_rate, layout="stereo") if audio is not None else None
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None and audio is not None:
            samples = _stereo_for(audio, round(len(frames) * audio.sample_rate / rate))
            track = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            track.sample_rate, track.pts, track.time_base = audio.sample_rate, 0, Fraction(1, audio.sample_rate)
            for packet in sound.encode(track):  # re-chunked into AAC frames by PyAV
                container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return buffer.getvalue()


def _stereo_for(audio: AudioTrack, length: int) -> np.ndarray:
    """(2, length) float32 in [-1, 1]: mono doubled, extra channels dropped, padded with silence or trimmed."""
    samples = np.asarray(audio.samples, dtype=np.float32)
    samples = samples[None] if samples.ndim == 1 else samples
    samples = np.repeat(samples, 2, axis=0) if samples.shape[0] == 1 else samples[:2]
    samples = samples[:, :length]
    return np.ascontiguousarray(np.clip(np.pad(samples, ((0, 0), (0, length - samples.shape[1]))), -1.0, 1.0))


def encode_spritesheet(frames: np.ndarray, *, max_tiles: int = 25, tile_width: int = 256) -> bytes:
    """(T, H, W, 3) frames -> one JPEG grid of up to `max_tiles` frames spread evenly, left to right, top to
    bottom, each scaled to at most `tile_width` pixels wide."""
    count = min(max_tiles, len(frames))
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    height, width = frames.shape[1:3]
    scale = min(1.0, tile_width / width)
    tile = (max(1, round(width * scale)), max(1, round(height * scale)))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    sheet = Image.new("RGB", (columns * tile[0], rows * tile[1]))
    for position, index in enumerate(picks):
        frame = Image.fromarray(frames[index]).resize(tile, Image.Resampling.BILINEAR)
        sheet.paste(frame, ((position % columns) * tile[0], (position // columns) * tile[1]))
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
