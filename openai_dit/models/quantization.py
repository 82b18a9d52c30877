"""Quantization: cache-dit's online (torchao) quantization by name, diffusers' PipelineQuantizationConfig files,
and how LoRA weights meet them.

`--quantize-type` takes cache-dit's own names (`float8_per_row`, `float8_weight_only`, ...); the old server's names
are aliases (`float8_wo` -> `float8_weight_only`, `float8` -> `float8_per_row`, ...). Names are checked at launch.
Online quantization runs after LoRA loading, so the LoRA is fused first (its own layers would otherwise be
quantized); with `--disable-fuse-lora` the LoRA layers are excluded from quantization. Only weights quantized
while loading (a PipelineQuantizationConfig that covers the transformer, e.g. bitsandbytes nf4) keep the LoRA
separate: nothing can be fused into them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Any

__all__ = [
    "ALIASES",
    "LORA_LAYER_NAMES",
    "check_quantize_type",
    "canonical_quantize_type",
    "load_quantization_config",
    "online_quantize_config",
    "quantize_types",
    "quantizes_transformer_at_load",
]

logger = logging.getLogger("openai_dit.loader")

# The old cache-dit server's names (and torchao's short ones) -> cache-dit's names.
ALIASES = {
    "float8": "float8_per_row",
    "fp8": "float8_per_row",
    "float8_wo": "float8_weight_only",
    "fp8_wo": "float8_weight_only",
    "float8_blockwise": "float8_per_block",
    "int8": "int8_per_row",
    "int8_wo": "int8_weight_only",
    "int4_wo": "int4_weight_only",
}
# torchao float8 kernels need compute capability 8.9 (Ada/Hopper) or newer; NVFP4 needs Blackwell (10.0).
_MIN_CAPABILITY = {"float8": (8, 9), "nvfp4": (10, 0)}
# Sub-module names of an unfused LoRA (peft): never quantized.
LORA_LAYER_NAMES = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
_DTYPE_NAMES = ("bfloat16", "float16", "float32")


def torchao_missing() -> bool:
    return importlib.util.find_spec("torchao") is None


def quantize_types() -> list[str]:
    """cache-dit's accepted online quantization types (its torchao backend's list)."""
    from cache_dit.quantization.torchao.quantize_ao import _ALLOWED_QUANTIZE_TYPES

    return list(_ALLOWED_QUANTIZE_TYPES)


def canonical_quantize_type(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def check_quantize_type(name: str, device: str) -> str | None:
    """A launch problem with --quantize-type on `device` (None when sound)."""
    canonical = canonical_quantize_type(name)
    if torchao_missing():
        return "--quantize-type needs torchao: pip install 'openai-dit[quantization]'"
    accepted = quantize_types()
    if canonical not in accepted:
        aliases = ", ".join(f"{old} ({new})" for old, new in ALIASES.items())
        return (f"--quantize-type {name}: not a quantization type of cache-dit; use one of {', '.join(accepted)} "
                f"(the old names are aliases: {aliases})")
    if not device.startswith("cuda"):
        return (f"--quantize-type {name}: cache-dit's torchao quantization runs on CUDA only; this server runs on "
                f"{device}")
    import torch

    capability = torch.cuda.get_device_capability(torch.device(device))
    for prefix, needed in _MIN_CAPABILITY.items():
        if canonical.startswith(prefix) and capability < needed:
            return (f"--quantize-type {name} needs compute capability {needed[0]}.{needed[1]}+; this GPU has "
                    f"{capability[0]}.{capability[1]}. Try int8_weight_only instead")
    return None


def online_quantize_config(name: str, *, keep_lora_layers: bool):
    """cache-dit's QuantizeConfig for `--quantize-type name`; `keep_lora_layers`: an unfused LoRA stays in full
    precision (its layers are excluded, beside cache-dit's own exclusions)."""
    from cache_dit import QuantizeConfig

    config = QuantizeConfig(quant_type=canonical_quantize_type(name))
    if keep_lora_layers:
        config.exclude_layers = [*config.exclude_layers, *LORA_LAYER_NAMES]
    return config


def load_quantization_config(path: str):
    """A diffusers PipelineQuantizationConfig from a JSON file (declarative) or a Python file (executed)."""
    from diffusers.quantizers import PipelineQuantizationConfig

    from .startup import StartupError

    if not os.path.isfile(path):
        raise StartupError(f"--pipeline-quant-config-path: no such file: {path}")
    if path.endswith(".py"):
        logger.warning("executing %s to get its pipeline quantization config", path)
        spec = importlib.util.spec_from_file_location("openai_dit_quant_config", path)
        if spec is None or spec.loader is None:
            raise StartupError(f"--pipeline-quant-config-path: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_pipeline_quant_config()
    with open(path) as f:
        data = json.load(f)
    kwargs: dict[str, Any] = data.get("quant_kwargs") or {}
    import torch

    for key, value in list(kwargs.items()):
        if isinstance(value, str) and value in _DTYPE_NAMES:
            kwargs[key] = getattr(torch, value)
    return PipelineQuantizationConfig(quant_backend=data["quant_backend"], quant_kwargs=kwargs,
                                      components_to_quantize=data.get("components_to_quantize"))


def quantizes_transformer_at_load(quant_config) -> bool:
    """Whether a PipelineQuantizationConfig quantizes the transformer(s) while loading (no LoRA can be fused into
    those weights afterwards). A config naming no components quantizes every supported one."""
    if quant_config is None:
        return False
    components = getattr(quant_config, "components_to_quantize", None)
    if components is None:
        mapping = getattr(quant_config, "quant_mapping", None)
        return mapping is None or any(name.startswith("transformer") for name in mapping)
    if isinstance(components, str):
        components = [components]
    return any(name.startswith("transformer") for name in components)
