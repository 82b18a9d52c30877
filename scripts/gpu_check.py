#!/usr/bin/env python3
"""The CUDA paths on a real GPU, with the built-in tiny models (no download): one PASS/FAIL/SKIP line per check,
timings with CUDA synchronisation, and a last line `gpu: N/M pass`.

    python scripts/gpu_check.py               # on a machine with one NVIDIA GPU; about 5 minutes
    python scripts/gpu_check.py --only compile,float8
    python scripts/gpu_check.py --dry-run     # anywhere: validates the plan (flags, models, checks) on the CPU

Every check loads its model through the server's own loader (`models.loader.load_model`) with the flags a user
would pass, and calls it as the server does (`PipelineExecutor`, and the `Runner` for batching). Exit code 0 when
nothing failed (SKIPs are allowed: e.g. float8 on a GPU older than Ada, nf4 without bitsandbytes).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai_dit.config import ServerConfig  # noqa: E402
from openai_dit.types import GenerationRequest, Task  # noqa: E402

IMAGE_MODEL = "tiny:flux"
VIDEO_MODEL = "tiny:wan-t2v"


class Skip(Exception):
    """The check cannot run here (missing package or GPU feature); not a failure."""


@dataclass
class Check:
    name: str
    summary: str
    configs: list[dict]  # the ServerConfig overrides it loads (validated by --dry-run)
    run: Callable[[], str]
    models: list[str] = field(default_factory=list)


# --- helpers ---------------------------------------------------------------------------------------------------
def cuda_timed(fn: Callable[[], object]) -> tuple[object, float]:
    import torch

    torch.cuda.synchronize()
    started = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return value, time.perf_counter() - started


def executor_for(**overrides):
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    return PipelineExecutor(load_model(ServerConfig(**{"model_path": IMAGE_MODEL, "device": "cuda", **overrides})))


def image_request(seed: int = 1, size: int = 64, steps: int = 4, prompt: str = "a lighthouse at dusk",
                  **extra) -> GenerationRequest:
    return GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt=prompt, width=size, height=size,
                             num_inference_steps=steps, seed=seed, **extra)


def run_one(executor, request: GenerationRequest, on_progress=None):
    return executor.run(request, threading.Event(), on_progress)


def assert_image(result, size: int) -> None:
    import numpy as np

    images = result.images
    assert images is not None and images.shape[1:] == (size, size, 3), getattr(images, "shape", None)
    assert images.dtype == np.uint8 and images.std() > 0, "a blank image"


def free(*objects) -> None:
    import torch

    del objects
    gc.collect()
    torch.cuda.empty_cache()


def max_difference(a, b) -> int:
    return int(abs(a.astype(int) - b.astype(int)).max())


# --- the checks --------------------------------------------------------------------------------------------------
def check_bf16_image() -> str:
    import torch

    executor = executor_for(dtype="bfloat16")
    assert executor.model.dtype is torch.bfloat16
    result, seconds = cuda_timed(lambda: run_one(executor, image_request()))
    assert_image(result, 64)
    _, warm = cuda_timed(lambda: run_one(executor, image_request(seed=2)))
    return f"64x64, 4 steps: first {seconds:.2f}s, then {warm:.3f}s"


def check_bf16_video() -> str:
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    executor = PipelineExecutor(load_model(ServerConfig(model_path=VIDEO_MODEL, device="cuda", dtype="bfloat16")))
    request = GenerationRequest(task=Task.TEXT_TO_VIDEO, prompt="waves", width=64, height=64, num_inference_steps=4,
                                seed=3, num_frames=9)
    result, seconds = cuda_timed(lambda: run_one(executor, request))
    assert result.videos is not None and result.videos.shape[1:] == (9, 64, 64, 3), result.videos.shape
    return f"9 frames of 64x64, 4 steps: {seconds:.2f}s"


def check_seeds() -> str:
    executor = executor_for()
    a, b = (run_one(executor, image_request(seed=11)).images for _ in range(2))
    c = run_one(executor, image_request(seed=12)).images
    assert (a == b).all(), f"the same seed differs by {max_difference(a, b)}"
    assert not (a == c).all(), "different seeds gave the same image"
    return "same seed: identical bytes; another seed: another image"


def check_cache() -> str:
    executor = executor_for(cache=True, Fn=1, rdt=5.0, max_warmup_steps=2)
    result, seconds = cuda_timed(lambda: run_one(executor, image_request(steps=8)))
    assert result.cache is not None and result.cache.cached_steps > 0, result.cache
    plain = executor_for()
    _, uncached = cuda_timed(lambda: run_one(plain, image_request(steps=8)))
    return f"{result.cache.cached_steps}/8 steps cached; {seconds:.3f}s vs {uncached:.3f}s uncached"


def check_compile() -> str:
    from torch._dynamo.utils import counters

    executor = executor_for(compile=True)
    first, cold = cuda_timed(lambda: run_one(executor, image_request()))
    graphs = counters["stats"]["unique_graphs"]
    second, warm = cuda_timed(lambda: run_one(executor, image_request(seed=2, prompt="another prompt")))
    recompiles = counters["stats"]["unique_graphs"] - graphs
    assert recompiles == 0, f"{recompiles} graph(s) compiled in the second request"
    assert warm < cold, f"the second request ({warm:.3f}s) was not faster than the first ({cold:.3f}s)"
    return f"first (warm-up + compile) {cold:.1f}s, second {warm:.3f}s, recompiles 0"


def _needs_float8() -> None:
    import torch

    if torch.cuda.get_device_capability() < (8, 9):
        raise Skip(f"float8 needs compute capability 8.9+, this GPU has {torch.cuda.get_device_capability()}")


def check_float8() -> str:
    _needs_float8()
    executor = executor_for(quantize_type="float8_per_row")
    base = executor_for(dtype="bfloat16")
    result, seconds = cuda_timed(lambda: run_one(executor, image_request()))
    assert_image(result, 64)
    reference = run_one(base, image_request())
    return f"float8_per_row: {seconds:.3f}s, max difference to bf16 {max_difference(result.images, reference.images)}"


def check_nf4() -> str:
    import importlib.util
    import json

    if importlib.util.find_spec("bitsandbytes") is None:
        raise Skip("bitsandbytes is not installed")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "nf4.json"
        path.write_text(json.dumps({"quant_backend": "bitsandbytes_4bit", "components_to_quantize": ["transformer"],
                                    "quant_kwargs": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                     "bnb_4bit_compute_dtype": "bfloat16"}}))
        executor = executor_for(pipeline_quant_config_path=str(path))
    result, seconds = cuda_timed(lambda: run_one(executor, image_request()))
    assert_image(result, 64)
    return f"bitsandbytes nf4 transformer: {seconds:.3f}s"


def _lora_folder() -> str:
    """A LoRA for tiny:flux with non-zero weights, as trainers publish them."""
    import torch
    from diffusers import DiffusionPipeline, FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from openai_dit.models.tiny import builtin_model_dir

    pipe = DiffusionPipeline.from_pretrained(str(builtin_model_dir(IMAGE_MODEL)))
    torch.manual_seed(0)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    folder = tempfile.mkdtemp(prefix="gpu-check-lora-")
    FluxPipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
                                   weight_name="lora.safetensors")
    return folder


def check_lora() -> str:
    folder = _lora_folder()
    base = run_one(executor_for(), image_request()).images
    fused = run_one(executor_for(lora_path=folder, lora_name="lora.safetensors"), image_request()).images
    assert max_difference(fused, base) > 0, "the LoRA changed nothing"
    detail = f"fused: differs from the base by {max_difference(fused, base)}"
    try:
        _needs_float8()
    except Skip as skip:
        return f"{detail}; with float8 skipped ({skip})"
    from openai_dit.models.quantization import LORA_LAYER_NAMES

    for separate in (False, True):
        executor = executor_for(lora_path=folder, lora_name="lora.safetensors", quantize_type="float8_per_row",
                                disable_fuse_lora=separate)
        image = run_one(executor, image_request()).images
        quantized_lora = [name for name, module in executor.model.pipe.transformer.named_modules()
                          if getattr(module, "_is_inner_quantized", False) and any(k in name for k in LORA_LAYER_NAMES)]
        assert not quantized_lora, f"LoRA layers quantized: {quantized_lora[:3]}"
        detail += f"; float8 {'separate' if separate else 'fused'}: differs from fused bf16 by " \
                  f"{max_difference(image, fused)}, no LoRA layer quantized"
    return detail


def check_batching() -> str:
    import asyncio

    from openai_dit.runner import Runner

    executor = executor_for(dtype="bfloat16")
    requests = [image_request(seed=20 + i, prompt=f"prompt number {i}") for i in range(4)]
    solo = [run_one(executor, request).images for request in requests]
    runner = Runner(lambda: executor, max_batch_size=4)
    runner.start()
    while not runner.ready:
        time.sleep(0.01)
    executor.calls = []
    original = executor.run_batch

    def counting(batch, cancelled, on_progress=None):
        executor.calls.append(len(batch))
        return original(batch, cancelled, on_progress)

    executor.run_batch = counting

    async def together():
        async def result(request):
            return (await runner.submit(request).done()).result

        blocker = asyncio.ensure_future(result(image_request(seed=99, steps=12)))  # the others queue behind
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(result(r) for r in requests))
        await blocker
        return results

    try:
        results = asyncio.run(together())
    finally:
        runner.stop()
    assert 4 in executor.calls, f"calls were {executor.calls}: the four were not batched"
    worst = max(max_difference(r.images, s) for r, s in zip(results, solo, strict=True))
    assert worst <= 8, f"a batched image differs from its solo run by {worst}"
    return f"calls {executor.calls}; batched vs solo max difference {worst} (bf16 kernels)"


def check_memory() -> str:
    import torch

    free()
    baseline = torch.cuda.memory_allocated()
    executor = executor_for()
    loaded = torch.cuda.memory_allocated()
    for seed in range(3):
        run_one(executor, image_request(seed=seed, size=128))
    executor.release_memory()
    after = torch.cuda.memory_allocated()
    assert after <= loaded + 1024 * 1024, f"{(after - loaded) / 2**20:.1f} MiB more allocated after the requests"
    del executor
    free()
    final = torch.cuda.memory_allocated()
    assert final <= baseline + 1024 * 1024, f"{(final - baseline) / 2**20:.1f} MiB left after unloading"
    return f"model {(loaded - baseline) / 2**20:.1f} MiB; after 3 requests +{(after - loaded) / 2**20:.2f} MiB; " \
           f"after unloading +{(final - baseline) / 2**20:.2f} MiB"


def check_offload_and_previews() -> str:
    from openai_dit.types import Progress

    executor = executor_for(enable_cpu_offload=True)
    previews: list[Progress] = []
    request = image_request(steps=6, partial_images=2)
    result, seconds = cuda_timed(lambda: run_one(executor, request,
                                                 lambda p: previews.append(p) if p.previews is not None else None))
    assert_image(result, 64)
    assert len(previews) == 2 and previews[0].previews.shape == (1, 64, 64, 3), [p.step for p in previews]
    transformer = executor.model.pipe.transformer
    assert next(transformer.parameters()).device.type in ("cpu", "cuda")
    return f"offloaded call with 2 previews: {seconds:.2f}s"


def check_attention() -> str:
    executor = executor_for(attn="_native_cudnn")
    result, seconds = cuda_timed(lambda: run_one(executor, image_request()))
    assert_image(result, 64)
    return f"_native_cudnn: {seconds:.3f}s"


CHECKS = [
    Check("bf16-image", "bf16 image generation", [{"dtype": "bfloat16"}], check_bf16_image, [IMAGE_MODEL]),
    Check("bf16-video", "bf16 video generation", [{"model_path": VIDEO_MODEL, "dtype": "bfloat16"}],
          check_bf16_video, [VIDEO_MODEL]),
    Check("seeds", "seeds reproduce", [{}], check_seeds, [IMAGE_MODEL]),
    Check("cache", "--cache caches steps", [{"cache": True, "Fn": 1, "rdt": 5.0, "max_warmup_steps": 2}],
          check_cache, [IMAGE_MODEL]),
    Check("compile", "--compile: second request faster, no recompiles", [{"compile": True}], check_compile,
          [IMAGE_MODEL]),
    Check("float8", "--quantize-type float8 loads and generates", [{"quantize_type": "float8_per_row"}],
          check_float8, [IMAGE_MODEL]),
    Check("nf4", "a bitsandbytes nf4 config loads and generates", [{}], check_nf4, [IMAGE_MODEL]),
    Check("lora", "LoRA with and without float8", [{"quantize_type": "float8_per_row", "disable_fuse_lora": True}],
          check_lora, [IMAGE_MODEL]),
    Check("batching", "four concurrent requests batched, equal to their solo outputs", [{}], check_batching,
          [IMAGE_MODEL]),
    Check("memory", "CUDA memory back to baseline after requests", [{}], check_memory, [IMAGE_MODEL]),
    Check("offload-previews", "CPU offload with previews", [{"enable_cpu_offload": True}],
          check_offload_and_previews, [IMAGE_MODEL]),
    Check("attention", "--attn _native_cudnn", [{"attn": "_native_cudnn"}], check_attention, [IMAGE_MODEL]),
]


def dry_run(checks: list[Check]) -> int:
    """On any machine: every check's flags are real ServerConfig fields, its models are built-in ones, its
    function exists, and the launch checks that need no GPU pass (the quantization and backend names)."""
    from dataclasses import fields

    from openai_dit.models.attention import attention_backends
    from openai_dit.models.quantization import canonical_quantize_type, quantize_types, torchao_missing
    from openai_dit.models.tiny import BUILTIN_MODELS

    names = {f.name for f in fields(ServerConfig)}
    problems = 0
    for check in checks:
        issues = [key for config in check.configs for key in config if key not in names]
        issues += [model for model in check.models if model not in BUILTIN_MODELS]
        for config in check.configs:
            if config.get("quantize_type") and torchao_missing():
                issues.append(f"quantize_type {config['quantize_type']} needs torchao")
            elif (config.get("quantize_type")
                  and canonical_quantize_type(config["quantize_type"]) not in quantize_types()):
                issues.append(f"quantize_type {config['quantize_type']}")
            if config.get("attn") and config["attn"] not in attention_backends():
                issues.append(f"attn {config['attn']}")
        if not callable(check.run):
            issues.append("no function")
        status = "PLAN" if not issues else "FAIL"
        problems += bool(issues)
        print(f"{status:4} {check.name:17} {check.summary}" + (f": {', '.join(issues)}" if issues else ""))
    print(f"gpu: dry run, {len(checks) - problems}/{len(checks)} checks planned")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="validate the plan on any machine, run nothing")
    parser.add_argument("--only", help="comma-separated check names")
    args = parser.parse_args()
    checks = CHECKS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {check.name for check in CHECKS}
        if unknown:
            parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
        checks = [check for check in CHECKS if check.name in wanted]
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
    if args.dry_run:
        return dry_run(checks)
    import torch

    if not torch.cuda.is_available():
        print("gpu: no CUDA device here (use --dry-run to validate the plan)")
        return 2
    print(f"{torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()}), "
          f"torch {torch.__version__}")
    passed = failed = 0
    started = time.perf_counter()
    for check in checks:
        began = time.perf_counter()
        try:
            detail = check.run()
            status = "PASS"
            passed += 1
        except Skip as skip:
            status, detail = "SKIP", str(skip)
        except Exception as exc:  # noqa: BLE001 - a failed check is reported and the others go on
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
            failed += 1
            traceback.print_exc(limit=3)
        print(f"{status} {check.name:17} {time.perf_counter() - began:6.1f}s  {detail}", flush=True)
        free()
    print(f"total {time.perf_counter() - started:.0f}s")
    print(f"gpu: {passed}/{len(checks)} pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
