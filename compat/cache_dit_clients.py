"""Replay the client scripts of the old cache-dit server (cache-dit v1.3.5 `tests/serving/*.py`) against a running
openai-dit server's `/generate`, scaled to the tiny models.

    python compat/cache_dit_clients.py --url http://127.0.0.1:8000 [--api-key K] [--steps 2]
        [--local-media-dir DIR] [--http-images]

Each request keeps its script's shape (the same fields, odd sizes such as 724x1080, raw base64 without a `data:`
prefix, `output_format: "path"` with `output_dir`, `include_stats`, `sigmas` lists, `num_frames`/`fps`), with sizes
divided down to the tiny models (1024 -> 64, 832x480 -> 112x64, ...), step counts cut to `--steps`, and frame counts
to Wan's 4k+1. What the scripts read back is checked: `images[i]` bare base64 PNGs (or, with `output_format: "path"`,
paths that exist on this machine), `video` a bare base64 MP4 (or a path), `time_cost`, `inference_start_time` /
`inference_end_time` (ISO 8601), `stats` when cache-dit is on, and `/get_model_info`'s `enable_cache`. Which
scripts run follows `/get_model_info` `tasks`.

- `output_format: "path"` needs the server's `--output-dir`.
- `--local-media-dir DIR`: the Qwen-Image-Edit LoRA script sends server-side file paths; DIR must be (below) the
  server's `--allowed-local-media-path`. Without it that script is skipped.
- `--http-images`: the FLUX.2 edit and Wan i2v scripts send http(s) image URLs; this serves the inputs from a
  loopback HTTP server started here (the server needs `--allow-private-urls`). Without it they send data URIs.

The old scripts send no API key; `--api-key` adds `Authorization: Bearer K` for a server that requires one.
One line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from PIL import Image

# tests/serving/test_flux2_turbo_lora_serving.py: pre-shifted sigmas for 8-step turbo inference
TURBO_SIGMAS = [1.0, 0.6509, 0.4374, 0.2932, 0.1893, 0.1108, 0.0495, 0.00031]
NEGATIVE = ("Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
            "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
            "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
            "picture, messy background, three legs, many people in the background, walking backwards")


def encoded(width: int, height: int, color, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


class ImageHost:
    """A loopback HTTP server for input images, standing in for the scripts' modelscope / huggingface URLs."""

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body, ctype = files.get(self.path.lstrip("/"), (None, None))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


class Scripts:
    def __init__(self, args) -> None:
        self.url = args.url.rstrip("/")
        self.steps = args.steps
        self.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        self.info = requests.get(f"{self.url}/get_model_info", headers=self.headers, timeout=30).json()
        self.tasks = self.info.get("tasks", ["text-to-image"])
        self.multiple = self.info.get("size_multiple") or 16
        self.frame_multiple = self.info.get("frame_multiple") or 4
        self.local_dir = Path(args.local_media_dir).resolve() if args.local_media_dir else None
        self.dog, self.frisbee = encoded(64, 64, (200, 150, 90)), encoded(64, 64, (230, 30, 30))
        self.i2v_jpeg = encoded(112, 64, (30, 120, 220), "JPEG")
        self.host = ImageHost({"Dog.png": (self.dog, "image/png"), "Frisbee.png": (self.frisbee, "image/png"),
                               "i2v_input.JPG": (self.i2v_jpeg, "image/jpeg")}) if args.http_images else None

    # -- helpers ---------------------------------------------------------------------------------------------------

    def frames(self, wanted: int) -> int:
        """A frame count of the form m*k+1 near `wanted` (the scripts' 49 and 25 scaled down)."""
        return self.frame_multiple * max(1, round((wanted - 1) / self.frame_multiple)) + 1

    def round_down(self, side: int) -> int:
        return side // self.multiple * self.multiple

    def post(self, payload: dict, timeout: float = 600) -> dict:
        response = requests.post(f"{self.url}/generate", json=payload, headers=self.headers, timeout=timeout)
        # the scripts call response.raise_for_status(); say what the server said
        assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:400]}"
        return response.json()

    def image_input(self, name: str) -> str:
        """What the FLUX.2 edit script sends as image_urls for the dog or frisbee."""
        if self.host:
            return f"{self.host.base}/{name}"
        return "data:image/png;base64," + base64.b64encode(self.dog if name == "Dog.png" else self.frisbee).decode()

    @staticmethod
    def images_of(result: dict, count: int = 1) -> list[Image.Image]:
        assert "images" in result and len(result["images"]) == count, \
            f"expected {count} images, got keys {list(result)} {len(result.get('images') or [])}"
        out = []
        for b64 in result["images"]:
            assert not b64.startswith("data:"), "images[] must be bare base64 (no data: prefix), as the old server"
            image = Image.open(io.BytesIO(base64.b64decode(b64)))
            assert image.format == "PNG", image.format
            out.append(image)
        return out

    @staticmethod
    def path_of(result: dict, key: str, subdir: str | None, suffix: str) -> Path:
        value = result[key][0] if key == "images" else result[key]
        path = Path(value)
        assert path.is_absolute() and path.exists(), f"{key} is not an existing path on this machine: {value!r}"
        assert path.suffix == suffix, path
        assert subdir is None or path.parent.name == subdir, f"output_dir {subdir!r} not used: {path}"
        return path

    def video_of(self, result: dict, frames: int, size: tuple[int, int], fps: int | None = None) -> str:
        import av

        b64 = result.get("video")
        assert b64, f"no video in the response: keys {list(result)}"
        assert not b64.startswith("data:"), "video must be bare base64, as the old server"
        mp4 = base64.b64decode(b64)
        assert mp4[4:8] == b"ftyp", f"not an MP4: {mp4[:16]!r}"
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(decoded) == frames, f"num_frames={frames} asked, {len(decoded)} frames in the MP4"
        assert decoded[0].shape[:2] == (size[1], size[0]), f"frames {decoded[0].shape[1::-1]}, expected {size}"
        assert fps is None or abs(float(rate) - fps) < 0.01, f"fps={fps} asked, the MP4 runs at {rate}"
        return f"MP4 {len(decoded)} frames {size[0]}x{size[1]}" + (f" @ {rate} fps" if fps else "")

    @staticmethod
    def timing(result: dict) -> None:
        assert isinstance(result.get("time_cost"), (int, float)) and result["time_cost"] >= 0, result.get("time_cost")
        for key in ("inference_start_time", "inference_end_time"):
            assert isinstance(result.get(key), str), f"{key} missing: keys {list(result)}"
        start, end = (datetime.fromisoformat(result[k]) for k in ("inference_start_time", "inference_end_time"))
        assert start <= end, (start, end)

    # -- tests/serving/test_text_to_image_serving.py -----------------------------------------------------------

    def text_to_image_serving(self) -> str:
        result = self.post({"prompt": "A beautiful sunset over the ocean", "width": 64, "height": 64,
                            "num_inference_steps": self.steps})
        [image] = self.images_of(result)
        assert image.size == (64, 64), image.size
        return "images[0] bare base64 PNG 64x64"

    # -- tests/serving/test_concurrent_requests.py (aiohttp x3 at once; threads here) --------------------------

    def concurrent_requests(self) -> str:
        def send(request_id: int) -> dict:
            return self.post({"prompt": f"test prompt {request_id}", "width": 64, "height": 64,
                              "num_inference_steps": self.steps, "guidance_scale": 3.5, "seed": request_id,
                              "num_images": 1})

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(send, range(3)))
        assert all(isinstance(r.get("time_cost"), (int, float)) for r in results), [r.get("time_cost") for r in results]
        assert len({r["images"][0] for r in results}) == 3, "seeds 0, 1, 2 gave identical images"
        return "3 at once: 200 each, time_cost " + ", ".join(f"{r['time_cost']:.2f}s" for r in results)

    # -- tests/serving/test_inference_timestamps.py ----------------------------------------------------------

    def inference_timestamps(self) -> str:
        result = self.post({"prompt": "timestamp test prompt", "width": 64, "height": 64,
                            "num_inference_steps": self.steps, "guidance_scale": 1.0, "seed": 0,
                            "output_format": "path"})
        self.timing(result)
        path = self.path_of(result, "images", None, ".png")
        return f"inference_start_time {result['inference_start_time']}, end, time_cost; image at {path}"

    # -- tests/serving/test_qwen_image_lightning_serving.py (its shapes fit any text-to-image model) ------------

    def lightning_call(self, **kwargs) -> dict:
        payload = {"prompt": kwargs.pop("prompt", "A beautiful landscape with mountains and a lake, high quality"),
                   "width": kwargs.get("width", 64), "height": kwargs.get("height", 64),
                   "num_inference_steps": kwargs.get("num_inference_steps", self.steps),
                   "guidance_scale": kwargs.get("guidance_scale", 1.0), "seed": kwargs.get("seed", 0),
                   "num_images": kwargs.get("num_images", 1)}
        for key in ("include_stats", "negative_prompt"):
            if key in kwargs:
                payload[key] = kwargs[key]
        return self.post(payload, timeout=300)

    def lightning_basic(self) -> str:
        result = self.lightning_call()
        self.images_of(result)
        assert "time_cost" in result
        return "8-step shape (steps cut), guidance 1.0, seed 0"

    def lightning_include_stats(self) -> str:
        enable_cache = bool(self.info.get("enable_cache", False))
        result = self.lightning_call(prompt="A cute puppy playing in the garden", seed=456, include_stats=True)
        if enable_cache:
            stats = result.get("stats")
            assert stats and {"cached_steps", "total_steps"} <= set(stats), f"include_stats with cache: {stats}"
            return f"enable_cache true: stats {stats['cached_steps']}/{stats['total_steps']} cached"
        return "enable_cache false: stats not required"

    def lightning_resolution(self) -> str:
        result = self.lightning_call(prompt="A wide panoramic view of a mountain range at dawn", width=96, height=64,
                                     seed=123)
        [image] = self.images_of(result)
        assert image.size == (96, 64), image.size
        return "1536x1024 scaled to 96x64"

    def lightning_batch(self) -> str:
        result = self.lightning_call(prompt="A cute puppy playing in the garden", num_images=4, seed=456)
        images = self.images_of(result, 4)
        assert len(set(result["images"])) == 4, "num_images=4 gave identical images"
        return f"num_images=4 -> 4 distinct PNGs {images[0].size}"

    # -- tests/serving/test_flux2_turbo_lora_serving.py ------------------------------------------------------

    def turbo_sigmas(self) -> str:
        result = self.post({"prompt": "Industrial product shot of a chrome turbocharger", "width": 64, "height": 64,
                            "num_inference_steps": 8, "guidance_scale": 2.5, "sigmas": TURBO_SIGMAS, "seed": 0,
                            "num_images": 1})
        self.images_of(result)
        plain = self.post({"prompt": "Industrial product shot of a chrome turbocharger", "width": 64, "height": 64,
                           "num_inference_steps": 8, "guidance_scale": 2.5, "seed": 0, "num_images": 1})
        assert plain["images"] != result["images"], "the sigmas list changed nothing"
        return f"sigmas {len(TURBO_SIGMAS)} values with 8 steps (differs from the default schedule)"

    # -- tests/serving/test_flux2_image_edit_serving.py ------------------------------------------------------

    def flux2_call(self, prompt: str, image_urls=None, **kwargs) -> dict:
        payload = {"prompt": prompt, "width": kwargs.get("width", 64), "height": kwargs.get("height", 64),
                   "num_inference_steps": kwargs.get("num_inference_steps", self.steps),
                   "guidance_scale": kwargs.get("guidance_scale", 4.0), "seed": kwargs.get("seed", 0)}
        for key in ("output_format", "output_dir"):
            if key in kwargs:
                payload[key] = kwargs[key]
        if image_urls:
            payload["image_urls"] = image_urls
        return self.post(payload, timeout=300)

    def flux2_single(self) -> str:
        result = self.flux2_call("Put a birthday hat on the dog in the image", [self.image_input("Dog.png")])
        [image] = self.images_of(result)
        return f"one image ({'http URL' if self.host else 'data URI'}) -> {image.size}"

    def flux2_multi(self) -> str:
        result = self.flux2_call("Realistic style, dog chases frisbee",
                                 [self.image_input("Dog.png"), self.image_input("Frisbee.png")])
        self.images_of(result)
        return "two images"

    def flux2_base64(self) -> str:
        raw = base64.b64encode(self.dog).decode("utf-8")
        first = self.flux2_call("Put a birthday hat on the dog", [raw])
        second = self.flux2_call("Put a birthday hat on the dog", [f"data:image/png;base64,{raw}"])
        self.images_of(first), self.images_of(second)
        assert first["images"] == second["images"], "raw base64 and the same data URI gave different images"
        return "raw base64 (no prefix) and data URI: the same image"

    def flux2_text(self) -> str:
        result = self.flux2_call("A beautiful landscape with mountains and lakes", num_inference_steps=self.steps)
        self.images_of(result)
        return "text only (28 steps cut)"

    def flux2_724x1080(self, image_urls=None) -> str:
        """The "ulysses bad resolution" regression: 724x1080, which no multiple of 16 fits; made at the size
        rounded down to the model's multiple, and the answer says so."""
        result = self.flux2_call("A beautiful landscape with mountains and lakes", image_urls, width=724,
                                 height=1080, num_inference_steps=self.steps, seed=0)
        [image] = self.images_of(result)
        expected = (self.round_down(724), self.round_down(1080))
        assert image.size == expected, f"724x1080 made {image.size}, expected {expected}"
        assert (result.get("width"), result.get("height")) == expected, \
            f"the answer's width/height {result.get('width')}x{result.get('height')} != {expected}"
        return f"724x1080 -> {expected[0]}x{expected[1]} (image and width/height)"

    def flux2_724x1080_edit(self) -> str:
        return self.flux2_724x1080([self.image_input("Dog.png")]) + " with image_urls"

    def flux2_path_output(self) -> str:
        result = self.flux2_call("A beautiful landscape with mountains and lakes", num_inference_steps=self.steps,
                                 output_format="path", output_dir="outputs_test")
        path = self.path_of(result, "images", "outputs_test", ".png")
        Image.open(path).verify()
        return f"output_format path, output_dir outputs_test -> {path}"

    # -- tests/serving/test_qwen_image_edit_lora.py: server-side local paths ---------------------------------

    def edit_local_paths(self) -> str:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        paths = [self.local_dir / "input_0.png", self.local_dir / "input_1.png"]
        Image.new("RGB", (96, 64), (10, 200, 120)).save(paths[0])
        Image.new("RGB", (96, 64), (250, 250, 250)).save(paths[1])
        width, height = Image.open(paths[0]).size
        count = min(2, self.info.get("max_input_images") or 1)
        result = self.post({"prompt": "erase all texts from the image", "width": width, "height": height,
                            "num_inference_steps": self.steps, "guidance_scale": 4.0, "seed": 1, "num_images": 1,
                            "image_urls": [str(p) for p in paths[:count]]}, timeout=1800)
        [image] = self.images_of(result)
        assert image.size == (width, height), f"output {image.size} != input {(width, height)}"
        return f"{count} local paths -> output size == input size {width}x{height}"

    # -- tests/serving/test_wan_t2v_serving.py / test_wan_i2v_serving.py --------------------------------------

    def wan_call(self, prompt: str, image_url: str | None = None, **kwargs) -> dict:
        payload = {"prompt": prompt, "width": kwargs.get("width", 112), "height": kwargs.get("height", 64),
                   "num_inference_steps": kwargs.get("num_inference_steps", self.steps),
                   "guidance_scale": kwargs.get("guidance_scale", 5.0 if image_url is None else 3.5),
                   "seed": kwargs.get("seed", 1234), "num_frames": kwargs.get("num_frames", self.frames(9)),
                   "fps": kwargs.get("fps", 16)}
        if image_url is not None:
            payload["image_urls"] = [image_url]
        for key in ("output_format", "output_dir", "negative_prompt"):
            if key in kwargs:
                payload[key] = kwargs[key]
        return self.post(payload)

    def i2v_image(self) -> str | None:
        if "image-to-video" not in self.tasks:
            return None
        if self.host:
            return f"{self.host.base}/i2v_input.JPG"
        return "data:image/jpeg;base64," + base64.b64encode(self.i2v_jpeg).decode()

    def wan_basic(self) -> str:
        result = self.wan_call("A cat walks on the grass, realistic", self.i2v_image())
        return "832x480/49 frames scaled: " + self.video_of(result, self.frames(9), (112, 64), fps=16)

    def wan_seed_zero(self) -> str:
        result = self.wan_call("A beautiful sunset over the ocean with waves crashing on the shore",
                               self.i2v_image(), seed=0)
        self.video_of(result, self.frames(9), (112, 64))
        assert result.get("seeds", [0]) == [0], f"seed 0 must be kept: seeds {result.get('seeds')}"
        return "seed 0 kept"

    def wan_path_output(self) -> str:
        result = self.wan_call("A cat walks on the grass, realistic", self.i2v_image(), output_format="path",
                               output_dir="outputs_test")
        path = self.path_of(result, "video", "outputs_test", ".mp4")
        assert path.read_bytes()[4:8] == b"ftyp", "the file is not an MP4"
        return f"output_format path -> {path}"

    def wan_negative(self) -> str:
        result = self.wan_call("A dog running in a park, high quality, realistic", self.i2v_image(),
                               negative_prompt=NEGATIVE, seed=999)
        self.video_of(result, self.frames(9), (112, 64))
        return "negative_prompt, seed 999"

    def wan_short(self) -> str:
        frames = self.frames(5)
        result = self.wan_call("A bird flying in the sky", self.i2v_image(), num_frames=frames,
                               num_inference_steps=self.steps, seed=777)
        return "25 frames scaled: " + self.video_of(result, frames, (112, 64))

    def wan_resolution(self) -> str:
        """1024x576 scaled by 8 is 128x72: made at the size rounded down to the model's multiple."""
        result = self.wan_call("A car driving on a highway", self.i2v_image(), width=128, height=72, seed=555)
        expected = (self.round_down(128), self.round_down(72))
        assert (result.get("width"), result.get("height")) == expected, \
            f"the answer's width/height {result.get('width')}x{result.get('height')} != {expected}"
        return "128x72 -> " + self.video_of(result, self.frames(9), expected)

    # -- every script: /health and /get_model_info ----------------------------------------------------------------

    def health_and_info(self) -> str:
        health = requests.get(f"{self.url}/health", timeout=10)
        assert health.status_code == 200 and health.text.strip('"') == "OK", health.text
        for key in ("model_path", "device", "torch_dtype", "enable_cache", "is_loaded"):
            assert key in self.info, f"/get_model_info lacks {key}"
        return f"{self.info['model_path']}, tasks {self.tasks}, enable_cache {self.info['enable_cache']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://{os.environ.get('CACHE_DIT_HOST', 'localhost')}:"
                                         f"{os.environ.get('CACHE_DIT_PORT', '8000')}")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--local-media-dir", default=None)
    parser.add_argument("--http-images", action="store_true")
    parser.add_argument("--only", default="", help="run only the checks whose name contains one of these "
                                                    "comma-separated words")
    args = parser.parse_args()
    s = Scripts(args)
    checks = [s.health_and_info]
    if "text-to-image" in s.tasks:
        checks += [s.text_to_image_serving, s.concurrent_requests, s.inference_timestamps, s.lightning_basic,
                   s.lightning_include_stats, s.lightning_resolution, s.lightning_batch]
        if "sigmas" in (s.info.get("parameters") or []):
            checks += [s.turbo_sigmas]
        checks += [s.flux2_text, s.flux2_724x1080, s.flux2_path_output]
    if "image-edit" in s.tasks:
        checks += [s.flux2_single, s.flux2_base64]
        if (s.info.get("max_input_images") or 1) >= 2:
            checks += [s.flux2_multi]
        checks += [s.flux2_724x1080_edit]
        if s.local_dir is not None:
            checks += [s.edit_local_paths]
        else:
            print("skip edit_local_paths: no --local-media-dir (the server's --allowed-local-media-path)")
    if {"text-to-video", "image-to-video"} & set(s.tasks):
        checks += [s.wan_basic, s.wan_seed_zero, s.wan_path_output, s.wan_negative, s.wan_short, s.wan_resolution]
    if args.only:
        checks = [c for c in checks if any(word in c.__name__ for word in args.only.split(","))]
    for check in checks:
        try:
            detail = check()
        except Exception as exc:  # noqa: BLE001 - report the first failure clearly, then stop
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}")
            return 1
        print(f"ok   {check.__name__}: {detail}")
    print(f"cache-dit v1.3.5 client scripts: all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
