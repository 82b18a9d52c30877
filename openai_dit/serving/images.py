"""Handling of the OpenAI Images API: generations, edits, variations, with or without streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..adapters import images as adapter
from ..adapters.forms import FormFields, convert_form
from ..config import ServerConfig
from ..errors import InvalidRequest
from ..media import IMAGE_MIME_TYPES, MediaPolicy, decode_mask, encode_image, load_image_bytes, to_base64
from ..models.capabilities import ModelCapabilities
from ..protocol.images import (
    ImageData,
    ImageEditRequest,
    ImageGenerationRequest,
    ImagesResponse,
    ImageStreamEvent,
    ImageVariationRequest,
)
from ..runner import Done, Preview, Runner
from ..types import GenerationRequest, GenerationResult, Task
from .inputs import check_mask_size, checked_image, load_images
from .output_store import OutputStore

if TYPE_CHECKING:
    from ..storage.images import ObjectImageStore

__all__ = ["FILE_FIELDS", "TEXT_OR_FILE_FIELDS", "ImagesService"]

FILE_FIELDS = frozenset({"image", "mask", "mask_image", "markup"})  # markup: OpenAI's, accepted and unused
TEXT_OR_FILE_FIELDS = frozenset({"mask_image"})  # vLLM-Omni sends it as a file or as a URL


class ImagesService:
    def __init__(self, runner: Runner, config: ServerConfig, policy: MediaPolicy,
                 store: OutputStore | ObjectImageStore) -> None:
        self.runner = runner
        self.config = config
        self.policy = policy
        self.store = store
        self.quality_steps = adapter.parse_quality_steps(config.quality_steps)

    # --- the three calls -------------------------------------------------------------------------------------
    async def generate(self, body: ImageGenerationRequest, *, request_id: str,
                       base_url: str) -> ImagesResponse | AsyncIterator[ImageStreamEvent]:
        caps = self.runner.capabilities()
        size = self._check(body, Task.TEXT_TO_IMAGE, caps) or caps.default_size()
        return await self._start(body, Task.TEXT_TO_IMAGE, caps, size, [], None, request_id, base_url,
                                 "image_generation")

    async def edit(self, form: FormFields, *, request_id: str,
                   base_url: str) -> ImagesResponse | AsyncIterator[ImageStreamEvent]:
        caps = self.runner.capabilities()
        fields = dict(form.fields)
        if isinstance(fields.get("url"), str):  # `url` once, or `url[]` repeated (vLLM-Omni, SGLang)
            fields["url"] = [fields["url"]]
        body = convert_form(fields, ImageEditRequest)
        masks = form.files.get("mask", []) + form.files.get("mask_image", [])
        if body.mask_image is not None:
            masks.append(body.mask_image)  # a URL or data URL, fetched under the same limits
        requested_size = self._check(body, Task.IMAGE_EDIT, caps, param="image", mask=bool(masks))
        uploads, links = form.files.get("image", []), body.url or []
        if not uploads and not links:
            raise InvalidRequest("image is required: send one or more image files as 'image' or 'image[]' (or "
                                 "their URLs as 'url').", param="image")
        if len(uploads) + len(links) > caps.max_input_images:
            raise InvalidRequest(f"This model takes at most {caps.max_input_images} input image(s); got "
                                 f"{len(uploads) + len(links)}.", param="image", code="too_many_images")
        if len(masks) > 1:
            raise InvalidRequest("Send at most one mask.", param="mask")
        images = await self._decode_images(uploads, caps)
        if links:
            images += await load_images(links, self.policy, self.config.max_image_pixels, "url", caps)
        mask = await self._decode_mask(masks[0], images[0].size) if masks else None
        width, height = images[0].size
        size = requested_size or adapter.size_for_input(width, height, caps)
        return await self._start(body, Task.IMAGE_EDIT, caps, size, images, mask, request_id, base_url, "image_edit")

    async def variation(self, form: FormFields, *, request_id: str, base_url: str) -> ImagesResponse:
        caps = self.runner.capabilities()
        body = convert_form(form.fields, ImageVariationRequest)
        requested_size = self._check(body, Task.IMAGE_EDIT, caps, param="image")
        uploads = form.files.get("image", [])
        if len(uploads) != 1:
            raise InvalidRequest(f"A variation takes exactly one image; got {len(uploads)}.", param="image")
        if form.files.get("mask"):
            raise InvalidRequest("Variations take no mask.", param="mask")
        images = await self._decode_images(uploads, caps)
        width, height = images[0].size
        size = requested_size or adapter.size_for_input(width, height, caps)
        return await self._start(body, Task.IMAGE_EDIT, caps, size, images, None, request_id, base_url, None)

    # --- shared steps ----------------------------------------------------------------------------------------
    def _check(self, body, task: Task, caps: ModelCapabilities, param: str | None = None,
               mask: bool = False) -> tuple[int, int] | None:
        return adapter.check_request(body, task, caps, self.config.model_names, cache_enabled=self.config.cache,
                                     cache_fixed=self.config.compile or bool(self.config.parallel_type),
                                     param=param, mask=mask)

    async def _decode_images(self, uploads: list[bytes], caps: ModelCapabilities) -> list:
        def decode(index: int, data: bytes):
            return checked_image(data, policy=self.policy, max_pixels=self.config.max_image_pixels, caps=caps,
                                 param="image" if len(uploads) == 1 else f"image[{index}]")

        return await asyncio.to_thread(lambda: [decode(i, data) for i, data in enumerate(uploads)])

    async def _decode_mask(self, data: bytes | str, size: tuple[int, int]):
        if isinstance(data, str):
            data = await load_image_bytes(data, self.policy, param="mask_image")
        mask = await asyncio.to_thread(decode_mask, data, max_pixels=self.config.max_image_pixels, param="mask")
        check_mask_size(mask.size, size)
        return mask

    async def _start(self, body, task: Task, caps: ModelCapabilities, size: tuple[int, int], images: list, mask,
                     request_id: str, base_url: str, stream_prefix: str | None):
        """Admit the request now (so refusals keep their status); a stream or an awaitable response."""
        steps, quality = adapter.resolve_steps(body, caps, self.quality_steps)
        request = adapter.to_generation_request(body, task, caps, size=size, steps=steps, images=images, mask=mask,
                                                request_id=request_id)
        spec = adapter.OutputSpec(body, size, quality, self.config.default_response_format)
        if stream_prefix is not None and getattr(body, "stream", False):
            return self._stream(request, spec, caps, stream_prefix)
        return await self._respond(request, spec, caps, base_url)

    def _encode(self, pixels, spec: adapter.OutputSpec) -> bytes:
        return encode_image(pixels, spec.format, quality=spec.compression,
                            png_compress_level=self.config.png_compress_level)

    async def _respond(self, request: GenerationRequest, spec: adapter.OutputSpec, caps: ModelCapabilities,
                       base_url: str) -> ImagesResponse:
        def encode(result: GenerationResult, report) -> list[ImageData]:  # the runner's encode stage
            data = []
            for pixels in result.image_list:
                encoded = self._encode(pixels, spec)
                if spec.as_url:
                    name = self.store.put(encoded, spec.format, IMAGE_MIME_TYPES[spec.format])
                    data.append(ImageData(url=self.store.url_for(name) or f"{base_url}/v1/images/files/{name}"))
                else:
                    data.append(ImageData(b64_json=to_base64(encoded)))
            return data

        done = await self.runner.submit(request, encode=encode).done()
        return spec.response(int(time.time()), done.output, adapter.usage_of(done.result, request, caps))

    def _stream(self, request: GenerationRequest, spec: adapter.OutputSpec, caps: ModelCapabilities,
                prefix: str) -> AsyncIterator[ImageStreamEvent]:
        """Admit now (a full queue is still an HTTP 429), then the stream's events: each partial image as the call
        makes it, then the completed images. The server frames them as server-sent events."""
        def encode(result: GenerationResult, report) -> list[str]:  # the runner's encode stage
            return [to_base64(self._encode(pixels, spec)) for pixels in result.image_list]

        submission = self.runner.submit(request, encode=encode)

        def event(kind: str, b64: str, **extra) -> ImageStreamEvent:
            return ImageStreamEvent(type=f"{prefix}.{kind}", b64_json=b64, background=spec.background,
                                    created_at=int(time.time()), output_format=spec.format, quality=spec.quality,
                                    size=spec.size, **extra)

        async def events() -> AsyncIterator[ImageStreamEvent]:
            try:
                async for item in submission:
                    if isinstance(item, Preview):
                        for pixels in item.images:
                            b64 = to_base64(await asyncio.to_thread(self._encode, pixels, spec))
                            yield event("partial_image", b64, partial_image_index=item.index)
                    elif isinstance(item, Done):
                        usage = adapter.usage_of(item.result, request, caps)
                        for b64 in item.output:
                            yield event("completed", b64, usage=usage)
            finally:
                submission.cancel()  # the client left mid-stream: stop the generation (no-op once done)

        return events()
