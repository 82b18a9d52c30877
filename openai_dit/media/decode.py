"""Safe image decoding: a format allowlist, the pixel count checked from the header before decoding,
EXIF orientation applied, every mode converted to RGB."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from ..errors import InvalidRequest

__all__ = ["ALLOWED_FORMATS", "decode_image", "decode_mask"]

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF"})


def _open(data: bytes, *, max_pixels: int, param: str) -> Image.Image:
    """Open and load one image, the pixel count checked from its header first; any problem is a 400."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"'{param}' is not a supported image (allowed: PNG, JPEG, WebP, BMP, GIF).",
                             param=param, code="invalid_image") from None
    except Exception:  # noqa: BLE001 - a malformed header of any kind
        raise InvalidRequest(f"'{param}' could not be read as an image.", param=param,
                             code="invalid_image") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise InvalidRequest(f"'{param}' is {width}x{height}; at most {max_pixels} pixels are accepted.",
                             param=param, code="image_too_large")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)  # type: ignore[assignment]  # an Image, not an ImageFile
    except Exception:  # noqa: BLE001 - truncated or corrupt pixel data
        raise InvalidRequest(f"'{param}' is truncated or corrupt.", param=param, code="invalid_image") from None
    return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def decode_image(data: bytes, *, max_pixels: int, param: str) -> Image.Image:
    """Decode one image to RGB (transparency composited on white); any problem is a 400 naming `param`."""
    image = _open(data, max_pixels=max_pixels, param=param)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def decode_mask(data: bytes, *, max_pixels: int, param: str, luminance: bool = False) -> Image.Image:
    """An edit mask -> mode "L", white where the pipeline repaints. OpenAI's form: an image with an alpha channel
    whose fully transparent pixels mark the area to repaint. With `luminance` (the native API), an opaque mask in
    diffusers' form is taken too: white repaints, black keeps."""
    image = _open(data, max_pixels=max_pixels, param=param)
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        return alpha.point(lambda a: 255 if a == 0 else 0)
    if luminance:
        return image.convert("L")
    raise InvalidRequest(f"'{param}' must be an image with an alpha channel: its fully transparent pixels mark "
                         "the area to edit.", param=param, code="invalid_mask")
