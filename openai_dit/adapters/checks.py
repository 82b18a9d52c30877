"""Request checks every API shares: the model asked for, the task, sizes, frame counts, the mask, seeds. Pure
functions: no I/O, no torch. Each refusal is a 400 (or 404) in the OpenAI shape naming the parameter."""

from __future__ import annotations

import math
import re
import secrets

from ..errors import InvalidRequest, NotFound, UnsupportedTask
from ..models.capabilities import ModelCapabilities
from ..protocol.models import ModelNames
from ..types import Task

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "check_frames",
    "check_job_size",
    "check_mask",
    "check_model",
    "check_steps",
    "check_task",
    "nearest_side",
    "parse_size",
    "requested_size",
    "resolve_seed",
    "round_down_size",
]

MIN_SIDE = 64
MAX_SIDE = 4096
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


def check_model(requested: str | None, names: ModelNames, route: str | None) -> None:
    """A `model` the client named must be one of the served names, or an OpenAI name of this route (`route`:
    "images", "videos", or None for any)."""
    if requested and not names.accepts(requested, route):
        raise NotFound(f"The model '{requested[:200]}' does not exist; this server serves '{names.primary}'.",
                       param="model", code="model_not_found")


def requested_size(size: str | None, width: int | None, height: int | None,
                   caps: ModelCapabilities) -> tuple[int, int] | None:
    """OpenAI's `size`, or the peers' `width` and `height` (both, and matching `size` when it is given too), held
    to the same exact rule; None: auto."""
    if width is None and height is None:
        return parse_size(size, caps)
    if width is None or height is None:
        raise InvalidRequest("Give width and height together (or size).", param="width" if width is None else
                             "height")
    try:
        exact = parse_size(f"{width}x{height}", caps)
    except InvalidRequest as exc:  # the same rule, named as the client named it
        raise InvalidRequest(exc.message.replace("size ", "width x height ", 1), param="width", code=exc.code) \
            from None
    if size not in (None, "auto") and parse_size(size, caps) != exact:
        raise InvalidRequest(f"size {size[:32]} and width x height {width}x{height} disagree: give one.",
                             param="size")
    return exact


def check_task(task: Task, caps: ModelCapabilities, model_name: str, *, param: str | None = None) -> None:
    if task not in caps.tasks:
        can = ", ".join(sorted(t.value for t in caps.tasks)) or "nothing"
        raise UnsupportedTask(f"Model '{model_name}' cannot do {task.value} (it does: {can}).", param=param)


def check_frames(num_frames: int, caps: ModelCapabilities, *, param: str = "num_frames") -> None:
    rule = caps.frames
    if rule is not None and not rule.accepts(num_frames):
        low, high = rule.around(num_frames)
        raise InvalidRequest(f"{param} must be {rule} for this model (e.g. {low} or {high}); got {num_frames}.",
                             param=param, code="invalid_num_frames")


def check_steps(steps: int | None, caps: ModelCapabilities, model_name: str) -> None:
    if steps is not None and steps < caps.min_steps:
        raise InvalidRequest(f"Model '{model_name}' needs at least {caps.min_steps} denoising steps; got {steps}.",
                             param="num_inference_steps", code="invalid_value")


def check_mask(given: bool, task: Task, caps: ModelCapabilities, model_name: str) -> None:
    """A mask needs a model that inpaints and an edit; an inpainting-only model (FLUX.1 Fill) needs one."""
    if given and not caps.inpaints:
        raise InvalidRequest(f"Model '{model_name}' cannot inpaint: send the edit without a mask.", param="mask",
                             code="unsupported_parameter")
    if given and task is not Task.IMAGE_EDIT:
        raise InvalidRequest("A mask goes with an input image to edit.", param="mask")
    if not given and caps.mask_required and task is Task.IMAGE_EDIT:
        raise InvalidRequest(f"Model '{model_name}' inpaints: send a mask (white where the image is repainted).",
                             param="mask", code="mask_required")


def check_job_size(width: int, height: int, frames: int | None, outputs: int, caps: ModelCapabilities, *,
                   param: str, size_param: str = "size") -> None:
    """The work budget: pixels x frames x outputs of one job, within the model's largest (--max-pixels-per-job;
    by default from the device's memory). The 400 names `size_param` when one frame alone is over it, else
    `param` (the frame count or the number of outputs)."""
    limit = caps.max_job_pixels
    work = width * height * (frames or 1) * outputs
    if limit is not None and work > limit:
        param = size_param if width * height > limit else param
        shape = f"{width}x{height}" + (f" x {frames} frames" if frames else "") + \
            (f" x {outputs} outputs" if outputs > 1 else "")
        raise InvalidRequest(f"This job is {shape} = {work:,} pixels; this server takes at most {limit:,} per job "
                             "(--max-pixels-per-job).", param=param, code="job_too_large")


def resolve_seed(seed: int | None) -> int:
    """Absent or negative (-1 in many UIs) means random; the seed used is reported back."""
    if seed is None or seed < 0:
        return secrets.randbits(63)
    return seed % 2**63


def nearest_side(value: int, multiple: int) -> int:
    """The multiple of `multiple` nearest to `value` within [MIN_SIDE, MAX_SIDE]."""
    return min(MAX_SIDE // multiple * multiple, max(math.ceil(MIN_SIDE / multiple) * multiple,
                                                    round(value / multiple) * multiple))


def round_down_size(width: int, height: int, caps: ModelCapabilities) -> tuple[int, int]:
    """What the pipelines themselves make of any size: each side rounded down to the model's multiple (at least
    one multiple); a bucketed model makes its bucket nearest in aspect ratio."""
    if caps.sizes:
        return caps.nearest_size(width, height)
    m = caps.size_multiple
    return max(m, width // m * m), max(m, height // m * m)


def _constraint(caps: ModelCapabilities) -> str:
    return (f"both sides multiples of {caps.size_multiple} between {MIN_SIDE} and {MAX_SIDE} pixels, e.g. "
            f"{caps.default_width}x{caps.default_height}")


def parse_size(size: str | None, caps: ModelCapabilities) -> tuple[int, int] | None:
    """"WxH" -> (W, H), exactly as asked or a 400 stating the constraint and the nearest size; None for "auto" or
    absent."""
    if size is None or size == "auto":
        return None
    match = _SIZE.fullmatch(size)
    if not match:
        raise InvalidRequest(f"size must be \"auto\" or \"WxH\" with {_constraint(caps)}; got '{size[:32]}'.",
                             param="size", code="invalid_size")
    width, height = int(match.group(1)), int(match.group(2))
    if caps.sizes:
        if (width, height) not in caps.sizes:
            nearest = caps.nearest_size(width, height)
            raise InvalidRequest(f"size {size} cannot be produced by this model: it makes only "
                                 f"{', '.join(f'{w}x{h}' for w, h in caps.sizes)}; nearest: {nearest[0]}x{nearest[1]}.",
                                 param="size", code="invalid_size")
        return width, height
    m = caps.size_multiple
    if width % m or height % m or not (MIN_SIDE <= min(width, height) and max(width, height) <= MAX_SIDE):
        raise InvalidRequest(f"size {size} cannot be produced exactly by this model: it needs {_constraint(caps)}"
                             f"; nearest: {nearest_side(width, m)}x{nearest_side(height, m)}.", param="size",
                             code="invalid_size")
    return width, height
