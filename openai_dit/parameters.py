"""The parameter table: every optional generation parameter, as data. No torch here.

Each entry names a `GenerationRequest` field (also its name on the wire, in every API), the pipeline call keyword it
becomes, how it shapes batching, and which capability it needs. The same table drives validation
(`check_parameters`: a parameter the served pipeline cannot take is a 400 naming it, in every API), batch keys
(`batch_key_part`) and pipeline arguments (`call_arguments`), so a parameter cannot be checked in one API and
silently dropped in another. Structural inputs (prompt, size, steps, seeds, input images) are the executor's own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import InvalidRequest

__all__ = ["PARAMETERS", "Batching", "Capable", "Parameter", "batch_key_part", "call_arguments", "check_parameters"]


class Batching(enum.Enum):
    SAME = "requests share a call only with the same value"
    PER_OUTPUT = "a value per output: requests share a call when all or none of them give one"
    ALONE = "a request that gives it runs alone"
    FREE = "does not reach the pipeline: any values share a call"


class Capable(Protocol):
    """What the table reads of a model's capabilities (`models.capabilities.ModelCapabilities`)."""

    @property
    def fps_keyword(self) -> str | None: ...

    @property
    def mask_keyword(self) -> str | None: ...

    def accepts(self, parameter: str) -> bool: ...


# Keywords that come from the model's family rather than being fixed: the frame rate and the mask.
FAMILY_FPS = "<the family's frame-rate keyword>"
FAMILY_MASK = "<the family's mask keyword>"


@dataclass(frozen=True)
class Parameter:
    name: str  # the GenerationRequest field, and the name clients send
    keyword: str | None  # the pipeline's call keyword (FAMILY_*: the family's; None: never passed)
    batching: Batching
    required: bool = True  # a model whose pipeline lacks the keyword refuses the parameter (else: not passed)

    def keyword_for(self, caps: Capable) -> str | None:
        if self.keyword == FAMILY_FPS:
            return caps.fps_keyword
        if self.keyword == FAMILY_MASK:
            return caps.mask_keyword
        return self.keyword


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("negative_prompt", "negative_prompt", Batching.PER_OUTPUT),
    Parameter("guidance_scale", "guidance_scale", Batching.SAME),
    Parameter("guidance_scale_2", "guidance_scale_2", Batching.SAME),  # Wan 2.2: the low-noise expert's
    Parameter("true_cfg_scale", "true_cfg_scale", Batching.SAME),
    Parameter("sigmas", "sigmas", Batching.SAME),
    Parameter("max_sequence_length", "max_sequence_length", Batching.SAME),
    Parameter("num_frames", "num_frames", Batching.SAME),
    # A frame rate reaches the pipeline only where it takes one (LTX: frame_rate); it always sets the MP4's rate.
    Parameter("fps", FAMILY_FPS, Batching.SAME, required=False),
    Parameter("mask", FAMILY_MASK, Batching.ALONE),
)
_BY_NAME = {p.name: p for p in PARAMETERS}


def _value(request: Any, parameter: Parameter) -> Any:
    return getattr(request, parameter.name)


def check_parameters(values: Mapping[str, Any], caps: Capable, model_name: str) -> None:
    """Refuse (400, naming it) each given parameter that the served pipeline cannot take. `values`: what the client
    sent (absent or None: not given)."""
    for name, value in values.items():
        parameter = _BY_NAME[name]
        if value is None or not parameter.required:
            continue
        keyword = parameter.keyword_for(caps)
        if keyword is None or not caps.accepts(keyword):
            what = "cannot inpaint: send the edit without a mask" if name == "mask" else f"does not take {name}"
            raise InvalidRequest(f"Model '{model_name}' {what}.", param=name, code="unsupported_parameter")


def batch_key_part(request: Any) -> tuple | None:
    """The table's share of a request's batch key; None: the request runs alone."""
    part: list[Any] = []
    for parameter in PARAMETERS:
        value = _value(request, parameter)
        if parameter.batching is Batching.ALONE:
            if value is not None:
                return None
        elif parameter.batching is Batching.SAME:
            part.append(tuple(value) if isinstance(value, list) else value)
        elif parameter.batching is Batching.PER_OUTPUT:
            part.append(value is None)
    return tuple(part)


def call_arguments(requests: Sequence[Any], caps: Capable) -> dict[str, Any]:
    """The pipeline keywords of the table's parameters for one call of `requests` (which share a batch key): one
    value for the call, or one per output where the parameter has a value per output."""
    first = requests[0]
    arguments: dict[str, Any] = {}
    for parameter in PARAMETERS:
        keyword = parameter.keyword_for(caps)
        value = _value(first, parameter)
        if keyword is None or value is None or not caps.accepts(keyword):
            continue
        if parameter.batching is Batching.PER_OUTPUT and len(requests) > 1:
            value = [_value(r, parameter) for r in requests for _ in range(r.num_outputs)]
        arguments[keyword] = value
    return arguments
