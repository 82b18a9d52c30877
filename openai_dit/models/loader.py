"""Loading a diffusers pipeline as the operator asked: dtype, device, offload, LoRA, quantization, compile, cache."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ServerConfig
from .attention import apply_attention_backend
from .cache import CacheController, CacheSettings
from .capabilities import ModelCapabilities, capabilities_of
from .devices import default_job_pixels, rank_device, resolve_dtype
from .load_timing import LoadTimes, component_times
from .quantization import load_quantization_config, online_quantize_config, quantizes_transformer_at_load
from .startup import StartupError
from .tiny import HINTS_FILE, builtin_model_dir, is_builtin

__all__ = ["LoadedModel", "StartupError", "cache_refusal", "load_model", "pipeline_class_of"]

logger = logging.getLogger("openai_dit.loader")

_TRANSFORMERS = ("transformer", "transformer_2")


@dataclass
class LoadedModel:
    pipe: Any
    capabilities: ModelCapabilities
    device: str
    dtype: torch.dtype
    cache: CacheController
    compile: bool
    hints: dict
    offloaded: bool = False  # --enable-cpu-offload: components move to the GPU while they run


def cache_refusal(reason: str) -> str:
    """A family's reason to refuse --cache, naming the installed cache-dit."""
    from importlib.metadata import version

    return "--cache: " + reason.format(version=version("cache-dit"))


def pipeline_class_of(model_path: str) -> str | None:
    """The pipeline class a local model folder (or an already built tiny model) names, without loading it."""
    folder = builtin_model_dir(model_path, build=False) if is_builtin(model_path) else Path(model_path)
    index = folder / "model_index.json" if folder is not None else None
    if index is None or not index.is_file():
        return None
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError):
        return None
    return name if isinstance(name, str) else None


def _resolve_source(model_path: str) -> tuple[str, dict]:
    if is_builtin(model_path):
        try:
            directory = builtin_model_dir(model_path)
        except KeyError as exc:
            raise StartupError(str(exc.args[0])) from None
        return str(directory), json.loads((directory / HINTS_FILE).read_text())
    hints_file = Path(model_path) / HINTS_FILE
    return model_path, json.loads(hints_file.read_text()) if hints_file.is_file() else {}


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


_ONE_MEGAPIXEL = 1024 * 1024


def _apply_hints(pipe, hints: dict) -> None:
    """Model-folder hints (the built-in tiny models'): the areas the Qwen-Image edit pipelines resize their inputs
    to, ~1 MP upstream (module constants of Edit-Plus; an inline constant of Edit, through `calculate_dimensions`)."""
    if "vae_image_area" not in hints and "condition_image_area" not in hints:
        return
    module: Any = importlib.import_module(type(pipe).__module__)
    if "vae_image_area" in hints and hasattr(module, "VAE_IMAGE_SIZE"):
        module.VAE_IMAGE_SIZE = int(hints["vae_image_area"])
    elif "vae_image_area" in hints and hasattr(module, "calculate_dimensions") and \
            not getattr(module.calculate_dimensions, "hinted", False):
        upstream, area = module.calculate_dimensions, int(hints["vae_image_area"])

        def calculate_dimensions(target_area, ratio):
            return upstream(area if target_area == _ONE_MEGAPIXEL else target_area, ratio)

        calculate_dimensions.hinted = True  # type: ignore[attr-defined]
        module.calculate_dimensions = calculate_dimensions
    if "condition_image_area" in hints and hasattr(module, "CONDITION_IMAGE_SIZE"):
        module.CONDITION_IMAGE_SIZE = int(hints["condition_image_area"])


def _load_lora(pipe, config: ServerConfig, keep_separate: bool) -> None:
    """Load the LoRA, and fuse it into the weights unless it must stay separate."""
    if not hasattr(pipe, "load_lora_weights"):
        raise StartupError(f"{type(pipe).__name__} does not support LoRA weights.")
    kwargs = {"weight_name": config.lora_name} if config.lora_name else {}
    pipe.load_lora_weights(config.lora_path, adapter_name="default", **kwargs)
    if keep_separate:
        if not config.disable_fuse_lora:
            logger.info("LoRA kept separate: the transformer was quantized while loading, nothing can be fused in")
        return
    pipe.fuse_lora()
    pipe.unload_lora_weights()


def _enable_parallelism(pipe, config: ServerConfig, world_size: int) -> None:
    """cache-dit's parallelism over the torchrun ranks: the transformer(s), and optionally the main text encoder
    and the VAE."""
    if importlib.util.find_spec("einops") is None:  # without it cache-dit registers no parallel planners
        raise StartupError("--parallel-type needs cache-dit's parallelism extra: pip install 'cache-dit[parallelism]'")
    from cache_dit.distributed import ParallelismConfig, enable_parallelism

    assert config.parallel_type is not None
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
    ranks). The flags were checked at launch (`options.check_model_options`); raises StartupError with a clear
    message for what only loading can find."""
    from diffusers import DiffusionPipeline

    device = rank_device(config.device, local_rank=local_rank, world_size=world_size)
    dtype = resolve_dtype(config.dtype, device)
    source, hints = _resolve_source(config.model_path)
    quant_config = load_quantization_config(config.pipeline_quant_config_path) \
        if config.pipeline_quant_config_path else None
    kwargs: dict[str, Any] = {"dtype": dtype, **_processor_override(source)}
    if quant_config is not None:
        kwargs["quantization_config"] = quant_config
    if config.device_map:
        kwargs["device_map"] = config.device_map
    logger.info("loading %s (%s, %s)", config.model_path, device, dtype)
    times = LoadTimes()
    try:
        with times.phase("pipeline"), component_times(times):
            pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loading failure is a start-up error, logged in full
        raise StartupError(f"could not load model {config.model_path!r}: {exc}") from exc
    times.phases["files"] = max(0.0, times.phases.pop("pipeline") - sum(times.components.values()))
    pipe.set_progress_bar_config(disable=True)
    _apply_hints(pipe, hints)

    lora_separate = config.disable_fuse_lora or quantizes_transformer_at_load(quant_config)
    if config.lora_path:
        with times.phase("lora"):
            _load_lora(pipe, config, keep_separate=lora_separate)
    if world_size > 1:
        # Before placing: tensor parallelism moves each rank's shards to its GPU itself, so no rank ever holds the
        # whole transformer there (context parallelism replicates it either way).
        with times.phase("parallelism"):
            _enable_parallelism(pipe, config, world_size)
    with times.phase(f"to {device}"):
        if config.enable_cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        elif not config.device_map:
            pipe.to(device)
    if config.attn:
        logger.info("attention backend %s on %s", config.attn, ", ".join(apply_attention_backend(pipe, config.attn)))
    if config.quantize_type:  # after the LoRA: fused into the weights, or excluded from quantization
        import cache_dit

        quantize = online_quantize_config(config.quantize_type, keep_lora_layers=bool(config.lora_path) and
                                          lora_separate)
        with times.phase("quantize"):
            for name in _TRANSFORMERS:
                if getattr(pipe, name, None) is not None:
                    setattr(pipe, name, cache_dit.quantize(getattr(pipe, name), quantize))

    capabilities = dataclasses.replace(capabilities_of(pipe, hints),
                                       max_job_pixels=config.max_pixels_per_job or default_job_pixels(device))
    if capabilities.vae_slicing and hasattr(pipe.vae, "enable_slicing"):
        pipe.vae.enable_slicing()  # several videos in one call are decoded one by one
    if config.cache and capabilities.cache_refused:
        raise StartupError(cache_refusal(capabilities.cache_refused))
    settings = None
    if config.cache:
        settings = CacheSettings(
            Fn=config.Fn, Bn=config.Bn, rdt=config.rdt, max_warmup_steps=config.max_warmup_steps,
            max_cached_steps=config.max_cached_steps, max_continuous_cached_steps=config.max_continuous_cached_steps,
            taylorseer=config.taylorseer, taylorseer_order=config.taylorseer_order, scm_policy=config.scm,
        )
    with times.phase("cache-dit"):
        cache = CacheController(pipe, settings, fixed=world_size > 1)
    if config.compile:
        import cache_dit

        cache_dit.set_compile_configs()  # cache-dit's recommended inductor settings for its hooks
        for name in _TRANSFORMERS:
            module = getattr(pipe, name, None)
            if module is not None:
                module.compile()
    times.log(config.model_path)
    return LoadedModel(pipe=pipe, capabilities=capabilities, device=device, dtype=dtype, cache=cache,
                       compile=config.compile, hints=hints, offloaded=config.enable_cpu_offload)
