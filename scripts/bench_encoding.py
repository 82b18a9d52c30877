"""Output encoding settings: time and size of each candidate, for a 1024x1024 image and a 33-frame 512x512 video.

    python scripts/bench_encoding.py [--rounds 5]

The content is synthetic but image-like (smooth gradients, shapes and mild noise, as a generated image has), so
that compressors do realistic work; pure noise would favour no compression at all. The settings the server uses
are marked with *.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openai_dit.media import encode_video  # noqa: E402


def image_like(width: int, height: int, phase: float = 0.0, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 90 + phase) * np.cos(y / 130)
    g = 128 + 90 * np.sin((x + y) / 160 + 2 * phase)
    b = 128 + 80 * np.cos(np.hypot(x - width / 2, y - height / 2) / 70 - phase)
    pixels = np.stack([r, g, b], axis=-1)
    pixels += np.random.default_rng(seed).normal(0, 6, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def timed(fn, rounds: int) -> tuple[float, int]:
    fn()
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, size


def save(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def mp4(frames: np.ndarray, preset: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(16))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": preset}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    image = Image.fromarray(image_like(1024, 1024))
    raw = 1024 * 1024 * 3
    rows = [(f"PNG level {level}", {"format": "PNG", "compress_level": level}, level == 1) for level in (0, 1, 3, 6, 9)]
    rows += [("JPEG quality 90", {"format": "JPEG", "quality": 90}, True)]
    rows += [(f"WebP quality 90 method {m}", {"format": "WEBP", "quality": 90, "method": m}, m == 0) for m in (0, 2, 4)]
    print(f"1024x1024 image ({raw / 2**20:.1f} MiB raw), median of {args.rounds}:")
    for name, options, chosen in rows:
        ms, size = timed(lambda options=options: save(image, **options), args.rounds)
        print(f" {'*' if chosen else ' '} {name:<26} {ms:8.1f} ms {size / 1024:9.0f} KiB")
    frames = np.stack([image_like(512, 512, phase=i / 8, seed=i) for i in range(33)])
    print("33 frames of 512x512 to H.264 MP4 (CRF 18):")
    for preset in ("ultrafast", "veryfast", "medium"):
        ms, size = timed(lambda preset=preset: mp4(frames, preset), max(1, args.rounds // 2))
        print(f" {'*' if preset == 'veryfast' else ' '} preset {preset:<19} {ms:8.1f} ms {size / 1024:9.0f} KiB")
    ms, size = timed(lambda: encode_video(frames, 16), max(1, args.rounds // 2))
    print(f"   the server's encode_video      {ms:8.1f} ms {size / 1024:9.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
