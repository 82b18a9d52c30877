"""Model-loading flags that cannot work together or on this machine, found at launch (exit code 2) before the
port is bound or anything loads."""

from __future__ import annotations

from ..config import ServerConfig
from .attention import check_attention_backend
from .devices import check_device, rank_device
from .quantization import check_quantize_type

__all__ = ["check_model_options"]


def check_model_options(config: ServerConfig, world_size: int = 1) -> str | None:
    """The first problem with the model flags, or None."""
    problem = check_device(config.device, world_size)
    if problem:
        return problem
    device = rank_device(config.device, world_size=world_size)
    if config.enable_cpu_offload and not device.startswith("cuda"):
        return "--enable-cpu-offload moves components to a GPU while they run; it needs CUDA"
    if config.enable_cpu_offload and config.device_map:
        return "--enable-cpu-offload and --device-map cannot be combined: each places the whole model"
    if world_size > 1 and (config.enable_cpu_offload or config.device_map):
        return ("--enable-cpu-offload and --device-map place one model over devices; with several ranks each rank "
                "holds its share through --parallel-type instead")
    if config.quantize_type:
        problem = check_quantize_type(config.quantize_type, device)
        if problem:
            return problem
    if config.attn:
        problem = check_attention_backend(config.attn, device)
        if problem:
            return problem
    if config.cache:
        return _cache_problem(config.model_path)
    return None


def _cache_problem(model_path: str) -> str | None:
    """--cache on a family cache-dit fails on, where the model folder already says which family it is (otherwise
    loading refuses it)."""
    from .families import family_for
    from .loader import cache_refusal, pipeline_class_of

    try:
        pipeline_class = pipeline_class_of(model_path)
    except KeyError:
        return None  # an unknown built-in name: loading says so
    family = family_for(pipeline_class) if pipeline_class else None
    return cache_refusal(family.cache_refused) if family and family.cache_refused else None
