"""Handling of the native API (`/generate`, `/get_model_info`, `/flush_cache`)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from ..adapters import native as adapter
from ..config import ServerConfig
from ..errors import InvalidRequest
from ..media import MediaPolicy, decode_mask, encode_image, encode_video, load_image_bytes, to_base64
from ..protocol.native import FlushCacheResponse, GenerateRequest, GenerateResponse, ModelInfoResponse
from ..runner import Runner
from ..types import GenerationRequest, GenerationResult, Task
from .inputs import check_mask_size, fit_image, load_images

__all__ = ["NativeService"]

_SUBDIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,3}$")


class NativeService:
    def __init__(self, runner: Runner, config: ServerConfig, policy: MediaPolicy) -> None:
        self.runner = runner
        self.config = config
        self.policy = policy

    def _output_folder(self, body: GenerateRequest) -> Path:
        if not self.config.output_dir:
            raise InvalidRequest("output_format 'path' needs the server to be started with --output-dir.",
                                 param="output_format")
        root = Path(self.config.output_dir).resolve()
        if body.output_dir is None:
            return root
        sub = body.output_dir.rstrip("/")
        if not _SUBDIR.match(sub) or ".." in sub.split("/"):
            raise InvalidRequest("output_dir must be a relative subfolder name (letters, digits, '.', '_', '-') "
                                 "inside the server's output folder.", param="output_dir")
        if not _inside(root / sub, root):  # a symlink planted inside the output folder leads out of it
            raise InvalidRequest("output_dir leads outside the server's output folder.", param="output_dir")
        return root / sub

    async def generate(self, body: GenerateRequest, request_id: str) -> GenerateResponse:
        caps = self.runner.capabilities()
        task = adapter.check_request(body, caps, self.config.model_name)
        folder = self._output_folder(body) if body.output_format == "path" else None
        images = []
        if body.image_urls:
            images = await load_images(body.image_urls, self.policy, self.config.max_image_pixels, "image_urls",
                                       caps)
        mask = await self._mask(body.mask, images[0].size) if body.mask is not None else None
        request = adapter.to_generation_request(body, task, caps, images, mask, request_id=request_id)
        if caps.sizes and task is Task.IMAGE_TO_VIDEO:  # a bucketed model picks its size from the input image
            request.images = [await asyncio.to_thread(fit_image, images[0], (request.width, request.height))]

        done = await self.runner.submit(request, encode=lambda result, report: self._encode(
            result, request, folder, request_id)).done()
        encoded_images, video = done.output
        return adapter.to_response(done.result, request, images=encoded_images, video=video,
                                   include_stats=body.include_stats)

    async def _mask(self, reference: str, size: tuple[int, int]):
        """The mask, fetched and decoded like the images; it must be the first image's size."""
        data = await load_image_bytes(reference, self.policy, param="mask")
        mask = await asyncio.to_thread(decode_mask, data, max_pixels=self.config.max_image_pixels, param="mask",
                                       luminance=True)
        check_mask_size(mask.size, size)
        return mask

    def _encode(self, result: GenerationResult, request: GenerationRequest, folder: Path | None,
                request_id: str) -> tuple[list[str] | None, str | None]:
        """Runs on an encoder thread, so the generation thread is already on the next request."""
        if folder is not None:
            assert self.config.output_dir  # a folder is only chosen under --output-dir
            folder.mkdir(parents=True, exist_ok=True)
            if not _inside(folder, Path(self.config.output_dir).resolve()):  # swapped for a symlink meanwhile
                raise InvalidRequest("output_dir leads outside the server's output folder.", param="output_dir")
        if result.videos is not None:
            data = encode_video(result.videos[0], request.fps or 16, audio=result.audio_track(0))
            if folder is None:
                return None, to_base64(data)
            path = folder / f"{request_id}.mp4"
            _write_new(path, data)
            return None, str(path)
        outputs = []
        for index, pixels in enumerate(result.image_list):
            data = encode_image(pixels, "png", png_compress_level=self.config.png_compress_level)
            if folder is None:
                outputs.append(to_base64(data))
            else:
                path = folder / f"{request_id}-{index}.png"
                _write_new(path, data)
                outputs.append(str(path))
        return outputs, None

    def model_info(self) -> ModelInfoResponse:
        loaded_caps = self.runner.loaded_capabilities
        loaded = loaded_caps is not None
        described = self.runner.describe() or {}
        caps = loaded_caps.to_dict() if loaded_caps is not None else {}
        return ModelInfoResponse(
            model_path=self.config.model_path,
            device=described.get("device"),
            torch_dtype=described.get("dtype"),
            enable_cache=self.config.cache,
            is_loaded=loaded and self.runner.ready,
            tasks=caps.get("tasks", []),
            max_input_images=caps.get("max_input_images", 0),
            size_multiple=caps.get("size_multiple"),
            default_size=caps.get("default_size"),
            frame_multiple=caps.get("frame_multiple"),
            default_num_frames=caps.get("default_num_frames"),
            parameters=caps.get("parameters", []),
            cache=described.get("cache"),
            compile=self.config.compile,
            parallel_type=self.config.parallel_type,
            world_size=described.get("world_size", 1),
            parallel=described.get("parallel"),
            queued_requests=self.runner.queued,
        )

    async def flush_cache(self) -> FlushCacheResponse:
        self.runner.capabilities()  # 503 while loading
        await self.runner.call(lambda engine: engine.flush())
        return FlushCacheResponse(message="Cache flushed successfully")


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, its symlinks resolved, is `root` or below it."""
    return path.resolve().is_relative_to(root)


def _write_new(path: Path, data: bytes) -> None:
    """A new file (request ids name them), never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
