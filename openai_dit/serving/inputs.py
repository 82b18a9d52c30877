"""Input images for every API: bytes (uploaded or fetched) to a decoded image the model can take."""

from __future__ import annotations

import asyncio

from ..media import MediaPolicy, check_byte_limit, decode_image, load_image_bytes
from ..models.capabilities import ModelCapabilities

__all__ = ["checked_image", "load_images"]


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
