"""Input images for every API: bytes (uploaded or fetched) to a decoded image the model can take."""

from __future__ import annotations

import asyncio

from PIL import Image, ImageOps

from ..errors import InvalidRequest
from ..media import MediaPolicy, check_byte_limit, decode_image, load_image_bytes
from ..models.capabilities import ModelCapabilities

__all__ = ["check_mask_size", "checked_image", "fit_image", "load_images"]


def checked_image(data: bytes, *, policy: MediaPolicy, max_pixels: int, param: str, caps: ModelCapabilities):
    """Size limit, safe decode, and the model's own input checks; each refusal is a 400 naming `param`. CPU-bound:
    call off the event loop."""
    check_byte_limit(len(data), policy.max_bytes, param)
    image = decode_image(data, max_pixels=max_pixels, param=param)
    caps.check_input_image(*image.size, param=param)
    return image


async def load_images(references: list[str], policy: MediaPolicy, max_pixels: int, param: str,
                      caps: ModelCapabilities) -> list:
    """Fetch and decode every reference (URL, data URI, base64, allowed path) concurrently; the first bad one is a
    400 naming it."""
    async def one(index: int, reference: str):
        name = f"{param}[{index}]"
        data = await load_image_bytes(reference, policy, param=name)
        return await asyncio.to_thread(checked_image, data, policy=policy, max_pixels=max_pixels, param=name,
                                       caps=caps)

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(references))))


def check_mask_size(mask: tuple[int, int], image: tuple[int, int]) -> None:
    if mask != image:
        raise InvalidRequest(f"mask is {mask[0]}x{mask[1]} but the first image is {image[0]}x{image[1]}; they must "
                             "match.", param="mask", code="invalid_mask")


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scaled and centre-cropped to exactly `size`, never stretched. CPU-bound: call off the event loop."""
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
