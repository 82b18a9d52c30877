"""The CUDA paths' logic, run on the CPU: device per rank, dtype, quantization names and LoRA layers, attention
backends, launch refusals, previews around an offload hook, and torch.compile without recompiles."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from openai_dit.cli import _check_launch
from openai_dit.config import ServerConfig
from openai_dit.models import devices
from openai_dit.models.attention import apply_attention_backend, attention_backends, check_attention_backend
from openai_dit.models.quantization import (
    ALIASES,
    LORA_LAYER_NAMES,
    canonical_quantize_type,
    check_quantize_type,
    online_quantize_config,
    quantize_types,
    quantizes_transformer_at_load,
)
from openai_dit.types import GenerationRequest, Task


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has `n` CUDA GPUs (compute capability `capability`, bf16 or not)."""
    def fake(n: int = 4, capability=(9, 0), bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
        monkeypatch.setattr(torch.cuda, "device", lambda device: _NullContext())
    return fake


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(("requested", "rank", "world", "expected"), [
    ("cpu", 1, 2, "cpu"),
    ("cuda", 0, 1, "cuda"),
    ("cuda", 1, 2, "cuda:1"),
    ("cuda:0", 1, 2, "cuda:1"),  # not every rank on GPU 0
    ("cuda:2", 0, 2, "cuda:2"),
    ("cuda:2", 1, 2, "cuda:3"),
    ("cuda:1", 0, 1, "cuda:1"),
    ("cuda:3,1", 0, 2, "cuda:3"),
    ("cuda:3,1", 1, 2, "cuda:1"),
])
def test_each_rank_gets_its_own_device(requested, rank, world, expected):
    assert devices.rank_device(requested, local_rank=rank, world_size=world) == expected


def test_device_forms_are_checked_at_launch(gpus):
    assert "CUDA is not available" in devices.check_device("cuda:0", 1)
    gpus(n=2)
    assert devices.check_device("cuda:1", 2) == "--device cuda:1 puts rank(s) on cuda:2, but this machine has 2 GPU(s)"
    assert "one per rank" in devices.check_device("cuda:0,1,2", 2)
    assert "expected cpu, cuda" in devices.check_device("gpu0", 1)
    assert devices.check_device("cuda:0", 2) is None and devices.check_device("cuda", 2) is None


def test_auto_dtype_is_float16_on_gpus_without_bfloat16(gpus):
    assert devices.resolve_dtype("auto", "cpu") is torch.float32
    gpus(bf16=True)
    assert devices.resolve_dtype("auto", "cuda:0") is torch.bfloat16
    gpus(bf16=False)
    assert devices.resolve_dtype("auto", "cuda:0") is torch.float16
    assert devices.resolve_dtype("float32", "cuda:0") is torch.float32


def test_quantize_names_are_cache_dits_and_the_old_ones_are_aliases(gpus):
    accepted = quantize_types()
    assert {"float8_weight_only", "float8_per_row", "int8_weight_only"} <= set(accepted)
    for old, new in ALIASES.items():
        assert new in accepted, old
    assert canonical_quantize_type("float8_wo") == "float8_weight_only"
    assert canonical_quantize_type("INT8_WO") == "int8_weight_only"
    assert "CUDA only" in check_quantize_type("float8_wo", "cpu")
    gpus(capability=(9, 0))
    assert check_quantize_type("float8_wo", "cuda:0") is None
    assert check_quantize_type("int8_weight_only", "cuda:0") is None
    unknown = check_quantize_type("float9_magic", "cuda:0")
    assert "not a quantization type of cache-dit" in unknown and "float8_per_row" in unknown and "float8_wo" in unknown
    gpus(capability=(8, 0))  # an A100: no float8 kernels
    assert "compute capability 8.9+" in check_quantize_type("float8_per_row", "cuda:0")
    assert check_quantize_type("int8_wo", "cuda:0") is None


def test_a_separate_lora_is_never_quantized(load, lora_dir):
    """cache-dit's own layer filter, given the server's config, skips every LoRA layer (checked on the CPU)."""
    from cache_dit.quantization.torchao.quantize_ao import QuantizeAOContext, _basic_filter_fn

    executor = load("tiny:flux", lora_path=str(lora_dir), lora_name="tiny_lora.safetensors",
                    disable_fuse_lora=True, fresh=True)
    transformer = executor.model.pipe.transformer

    def quantized_names(keep_lora_layers: bool) -> list[str]:
        config = online_quantize_config("int8_wo", keep_lora_layers=keep_lora_layers)  # float8 asks for a GPU
        context = QuantizeAOContext.from_config(config, transformer)
        blocks = [m for m in transformer.modules() if type(m).__name__ in context.repeated_blocks]  # as cache-dit
        names = [name for block in blocks for name, module in block.named_modules()
                 if isinstance(module, torch.nn.Linear) and _basic_filter_fn(module, name, context)]
        for module in transformer.modules():  # the filter marks what it passes: unmark for the next question
            module.__dict__.pop("_is_inner_quantized", None)
        return names

    lora = [name for name in quantized_names(keep_lora_layers=False) if any(k in name for k in LORA_LAYER_NAMES)]
    assert lora  # without the exclusion cache-dit would quantize them
    kept = quantized_names(keep_lora_layers=True)
    assert kept and not [name for name in kept if any(k in name for k in LORA_LAYER_NAMES)]


def test_only_a_transformer_quantized_while_loading_keeps_a_lora_separate():
    from diffusers.quantizers import PipelineQuantizationConfig

    def config(components):
        return PipelineQuantizationConfig(quant_backend="bitsandbytes_4bit", quant_kwargs={"load_in_4bit": True},
                                          components_to_quantize=components)

    assert quantizes_transformer_at_load(config(["transformer", "text_encoder"]))
    assert not quantizes_transformer_at_load(config(["text_encoder_2"]))
    assert not quantizes_transformer_at_load(None)


def test_attention_backends_are_diffusers_and_checked_at_launch():
    names = attention_backends()
    assert {"flash", "_flash_3", "sage", "_native_cudnn", "flex", "xformers", "native"} <= set(names)
    assert "not an attention backend" in check_attention_backend("fastest", "cpu")
    assert check_attention_backend("native", "cpu") is None
    assert "runs on GPUs" in check_attention_backend("_native_cudnn", "cpu")
    missing = check_attention_backend("flash", "cuda")  # flash-attn is not installed here
    assert missing and "flash" in missing


def test_an_attention_backend_is_applied_to_the_transformer(load):
    executor = load("tiny:flux", attn="_native_math", fresh=True)
    assert apply_attention_backend(executor.model.pipe, "_native_math") == ["transformer"]
    processor = next(m.processor for m in executor.model.pipe.transformer.modules() if hasattr(m, "processor"))
    assert processor._attention_backend.value == "_native_math"
    native = load("tiny:flux")
    a, b = (e.run(GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a kite", width=64, height=64,
                                    num_inference_steps=2, seed=3), threading.Event()).images
            for e in (executor, native))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@pytest.mark.parametrize(("argv", "words"), [
    ({"enable_cpu_offload": True}, "needs CUDA"),
    ({"quantize_type": "float8_wo"}, "CUDA only"),
    ({"quantize_type": "float9"}, "not a quantization type"),
    ({"attn": "sparse"}, "not an attention backend"),
    ({"device": "cuda:0"}, "CUDA is not available"),
])
def test_model_flag_conflicts_are_refused_at_launch(argv, words):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only refusals")
    problem = _check_launch(ServerConfig(**argv))
    assert problem and words in problem


def test_offload_with_a_device_map_is_refused_before_anything_loads(gpus):
    gpus(n=2)
    problem = _check_launch(ServerConfig(enable_cpu_offload=True, device_map="balanced"))
    assert problem and "cannot be combined" in problem


def test_a_preview_bypasses_the_offload_hook_and_puts_the_vae_back():
    """With model CPU offload, a preview decode must not go through accelerate's hook (which would move the
    transformer off the GPU): the VAE alone visits the execution device, then returns where it was."""
    from openai_dit.models.previews import vae_for_preview

    calls = []

    class Hook:
        def pre_forward(self, module):
            calls.append("hook")

    vae = torch.nn.Linear(2, 2)
    vae._hf_hook = Hook()
    moves = []
    real_to = vae.to

    def to(device):
        moves.append(str(device))
        return real_to("cpu")  # no GPU here: record the move, stay on the CPU

    vae.to = to
    with vae_for_preview(vae, "cuda:0") as ready:
        assert not hasattr(ready, "_hf_hook")  # diffusers' decode would call the hook through this attribute
    assert moves == ["cuda:0", "cpu"] and isinstance(vae._hf_hook, Hook) and calls == []
    with vae_for_preview(vae, None) as ready:
        assert ready._hf_hook is vae._hf_hook  # no offload: untouched


@pytest.mark.slow
def test_compile_warm_up_leaves_no_recompile_to_the_real_calls(load):
    """torch.compile (inductor on CPU): after the warm-up of a shape, real calls of that shape compile nothing,
    whatever their prompts; a second batch size is warmed up once, and later ones need nothing more."""
    from torch._dynamo.utils import counters

    executor = load("tiny:flux", compile=True, fresh=True)
    pipe = executor.model.pipe
    graphs_in_real_calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(pipe, name)

        def __call__(self, **kwargs):
            before = counters["stats"]["unique_graphs"]
            output = pipe(**kwargs)
            if kwargs["num_inference_steps"] > 1:
                graphs_in_real_calls.append(counters["stats"]["unique_graphs"] - before)
            return output

    executor.model.pipe = Counting()

    def run(*prompts):
        requests = [GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt=p, width=64, height=64, num_inference_steps=2,
                                      seed=i) for i, p in enumerate(prompts)]
        return executor.run_batch(requests, threading.Event())

    run("a lighthouse")
    run("a much longer prompt about a lighthouse on a cliff at dusk")
    run("a", "b")
    run("a", "b", "c")
    assert graphs_in_real_calls == [0, 0, 0, 0]
