"""Safe media input (fetching and decoding under limits) and output encoders."""

from .decode import ALLOWED_FORMATS, decode_image, decode_mask
from .encode import IMAGE_MIME_TYPES, encode_image, encode_spritesheet, encode_video, to_base64
from .fetch import MediaPolicy, check_byte_limit, load_image_bytes

__all__ = [
    "ALLOWED_FORMATS",
    "IMAGE_MIME_TYPES",
    "MediaPolicy",
    "check_byte_limit",
    "decode_image",
    "decode_mask",
    "encode_image",
    "encode_spritesheet",
    "encode_video",
    "load_image_bytes",
    "to_base64",
]
