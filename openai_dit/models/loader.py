"""Loading a diffusers pipeline as the operator asked: dtype, device, offload, LoRA, quantization, compile, cache."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ServerConfig
from .cache import CacheController, CacheSettings
from .capabilities import ModelCapabilities, capabilities_of
from .tiny import HINTS_FILE, builtin_model_dir, is_builtin

__all__ = ["LoadedModel", "StartupError", "load_model", "resolve_device", "resolve_dtype"]

logger = logging.getLogger("openai_dit.loader")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# torchao float8 kernels need compute capability 8.9 (Ada/Hopper) or newer.
_FLOAT8_MIN_CAPABILITY = (8, 9)


class StartupError(RuntimeError):
    """The server cannot start as configured; the message says why and what to change."""


@dataclass
class LoadedModel:
    pipe: Any
    capabilities: ModelCapabilities
    device: str
    dtype: torch.dtype
    cache: CacheController
    compile: bool
    hints: dict


def resolve_device(requested: str | None) -> str:
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise StartupError(f"--device {requested} was asked for, but CUDA is not available on this machine.")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return _DTYPES[name]


def _resolve_source(model_path: str) -> tuple[str, dict]:
    if is_builtin(model_path):
        try:
            directory = builtin_model_dir(model_path)
        except KeyError as exc:
            raise StartupError(str(exc.args[0])) from None
        return str(directory), json.loads((directory / HINTS_FILE).read_text())
    hints_file = Path(model_path) / HINTS_FILE
    return model_path, json.loads(hints_file.read_text()) if hints_file.is_file() else {}


def _quantization_config(path: str):
    """A PipelineQuantizationConfig from a JSON file (declarative) or a Python file (executed)."""
    from diffusers.quantizers import PipelineQuantizationConfig

    if not os.path.isfile(path):
        raise StartupError(f"--pipeline-quant-config-path: no such file: {path}")
    if path.endswith(".py"):
        logger.warning("executing %s to get its pipeline quantization config", path)
        spec = importlib.util.spec_from_file_location("openai_dit_quant_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_pipeline_quant_config()
    with open(path) as f:
        data = json.load(f)
    kwargs = data.get("quant_kwargs") or {}
    for key, value in list(kwargs.items()):
        if isinstance(value, str) and value in _DTYPES:
            kwargs[key] = _DTYPES[value]
    return PipelineQuantizationConfig(quant_backend=data["quant_backend"], quant_kwargs=kwargs,
                                      components_to_quantize=data.get("components_to_quantize"))


def _processor_override(source: str) -> dict:
    """Qwen2-VL processors need torchvision in transformers 5; without it, load the image-only processor."""
    index_file = Path(source) / "model_index.json"
    if not index_file.is_file() or importlib.util.find_spec("torchvision") is not None:
        return {}
    index = json.loads(index_file.read_text())
    entry = index.get("processor")
    if isinstance(entry, list) and entry[-1] == "Qwen2VLProcessor":
        from .qwen_processor import Qwen2VLImageOnlyProcessor

        return {"processor": Qwen2VLImageOnlyProcessor.from_pretrained(str(Path(source) / "processor"))}
    return {}


def _apply_hints(pipe, hints: dict) -> None:
    """Model-folder hints: QwenImageEditPlus input areas (module constants upstream, ~1 MP)."""
    if "vae_image_area" in hints or "condition_image_area" in hints:
        module = importlib.import_module(type(pipe).__module__)
        if "vae_image_area" in hints and hasattr(module, "VAE_IMAGE_SIZE"):
            module.VAE_IMAGE_SIZE = int(hints["vae_image_area"])
        if "condition_image_area" in hints and hasattr(module, "CONDITION_IMAGE_SIZE"):
            module.CONDITION_IMAGE_SIZE = int(hints["condition_image_area"])


def _check_quantize_type(quantize_type: str, device: str) -> None:
    if not device.startswith("cuda"):
        raise StartupError(f"--quantize-type {quantize_type}: cache-dit's torchao quantization runs on CUDA only; "
                           f"this server runs on {device}.")
    if "float8" in quantize_type or "fp8" in quantize_type:
        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < _FLOAT8_MIN_CAPABILITY:
            raise StartupError(f"--quantize-type {quantize_type} needs compute capability 8.9+; this GPU has "
                               f"{capability[0]}.{capability[1]}. Try int8_wo instead.")
    if importlib.util.find_spec("torchao") is None:
        raise StartupError("--quantize-type needs torchao: pip install 'openai-dit[quantization]'")


def _load_lora(pipe, config: ServerConfig, quantized: bool) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise StartupError(f"{type(pipe).__name__} does not support LoRA weights.")
    kwargs = {"weight_name": config.lora_name} if config.lora_name else {}
    pipe.load_lora_weights(config.lora_path, adapter_name="default", **kwargs)
    if config.disable_fuse_lora or quantized:
        if quantized and not config.disable_fuse_lora:
            logger.info("LoRA kept separate: it is never fused into a quantized transformer")
        return
    pipe.fuse_lora()
    pipe.unload_lora_weights()


def _enable_parallelism(pipe, config: ServerConfig, world_size: int) -> None:
    """cache-dit's parallelism over the torchrun ranks: the transformer(s), and optionally the main text encoder
    and the VAE."""
    if importlib.util.find_spec("einops") is None:  # without it cache-dit registers no parallel planners
        raise StartupError("--parallel-type needs cache-dit's parallelism extra: pip install 'cache-dit[parallelism]'")
    from cache_dit.distributed import ParallelismConfig, enable_parallelism

    size = {"ulysses": "ulysses_size", "ring": "ring_size", "tp": "tp_size"}[config.parallel_type]
    extra = []
    if config.parallel_text_encoder:
        extra.append(getattr(pipe, "text_encoder_2", None) or getattr(pipe, "text_encoder", None))
    if config.parallel_vae:
        extra.append(getattr(pipe, "vae", None))
    parallelism = ParallelismConfig(**{size: world_size}, extra_parallel_modules=[m for m in extra if m is not None])
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            setattr(pipe, name, enable_parallelism(module, parallelism))
    logger.info("%s parallelism over %d ranks", config.parallel_type, world_size)


def load_model(config: ServerConfig, *, world_size: int = 1, local_rank: int = 0) -> LoadedModel:
    """Load, place, adapt and accelerate the pipeline (on this rank's device, parallelized over `world_size`
    ranks). Raises StartupError with a clear message."""
    from diffusers import DiffusionPipeline

    device = resolve_device(config.device)
    if world_size > 1 and device == "cuda":
        device = f"cuda:{local_rank}"
    dtype = resolve_dtype(config.dtype, device)
    if config.enable_cpu_offload and not device.startswith("cuda"):
        raise StartupError("--enable-cpu-offload moves components to a GPU while they run; it needs CUDA.")
    if config.enable_cpu_offload and config.device_map:
        raise StartupError("--enable-cpu-offload and --device-map cannot be combined.")
    if world_size > 1 and (config.enable_cpu_offload or config.device_map):
        raise StartupError("--enable-cpu-offload and --device-map place one model over devices; with several "
                           "ranks each rank holds its share through --parallel-type instead.")
    if config.quantize_type:
        _check_quantize_type(config.quantize_type, device)
    source, hints = _resolve_source(config.model_path)
    kwargs: dict[str, Any] = {"dtype": dtype, **_processor_override(source)}
    if config.pipeline_quant_config_path:
        kwargs["quantization_config"] = _quantization_config(config.pipeline_quant_config_path)
    if config.device_map:
        kwargs["device_map"] = config.device_map
    logger.info("loading %s (%s, %s)", config.model_path, device, dtype)
    try:
        pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loading failure is a start-up error, logged in full
        raise StartupError(f"could not load model {config.model_path!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    _apply_hints(pipe, hints)

    quantized = bool(config.quantize_type) or bool(config.pipeline_quant_config_path)
    if config.lora_path:
        _load_lora(pipe, config, quantized)
    if config.enable_cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    elif not config.device_map:
        pipe.to(device)
    if world_size > 1:
        _enable_parallelism(pipe, config, world_size)  # before quantization, which then quantizes the shards
    if config.quantize_type:
        import cache_dit
        from cache_dit import QuantizeConfig

        for name in ("transformer", "transformer_2"):
            if getattr(pipe, name, None) is not None:
                setattr(pipe, name, cache_dit.quantize(getattr(pipe, name),
                                                       QuantizeConfig(quant_type=config.quantize_type)))

    settings = None
    if config.cache:
        settings = CacheSettings(
            Fn=config.Fn, Bn=config.Bn, rdt=config.rdt, max_warmup_steps=config.max_warmup_steps,
            max_cached_steps=config.max_cached_steps, max_continuous_cached_steps=config.max_continuous_cached_steps,
            taylorseer=config.taylorseer, taylorseer_order=config.taylorseer_order, scm_policy=config.scm,
        )
    cache = CacheController(pipe, settings, fixed=world_size > 1)
    if config.compile:
        import cache_dit

        cache_dit.set_compile_configs()  # cache-dit's recommended inductor settings for its hooks
        for name in ("transformer", "transformer_2"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.compile()
    return LoadedModel(pipe=pipe, capabilities=capabilities_of(pipe, hints), device=device, dtype=dtype, cache=cache,
                       compile=config.compile, hints=hints)
