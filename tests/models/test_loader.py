"""Model loading flags on real tiny models: LoRA, quantization, offload, devices, built-in model folders."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from openai_dit.config import ServerConfig
from openai_dit.models.loader import StartupError, load_model
from openai_dit.models.quantization import load_quantization_config
from openai_dit.types import GenerationRequest, Task


def image(executor, seed=4):
    req = GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a lighthouse", width=64, height=64,
                            num_inference_steps=3, seed=seed)
    return executor.run(req, threading.Event()).images


def test_lora_fused_and_unfused_change_the_output_alike(load, lora_dir):
    base = image(load("tiny:flux"))
    fused = load("tiny:flux", lora_path=str(lora_dir), lora_name="tiny_lora.safetensors", fresh=True)
    separate = load("tiny:flux", lora_path=str(lora_dir), lora_name="tiny_lora.safetensors",
                    disable_fuse_lora=True, fresh=True)
    assert not fused.model.pipe.get_list_adapters()  # fused and unloaded: no adapter left
    assert separate.model.pipe.get_list_adapters()
    a, b = image(fused), image(separate)
    assert not np.array_equal(a, base)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@pytest.mark.parametrize(("overrides", "words"), [  # flags that cannot work are refused at launch: test_gpu_paths
    ({"model_path": "tiny:nonexistent"}, "unknown built-in"),
    ({"model_path": "/nonexistent/folder"}, "could not load"),
    ({"pipeline_quant_config_path": "/nonexistent.json"}, "no such file"),
])
def test_clear_startup_errors(overrides, words):
    with pytest.raises(StartupError) as exc:
        load_model(ServerConfig(**{"model_path": "tiny:flux", **overrides}))
    assert words in str(exc.value)


def test_declarative_quantization_config(tmp_path):
    path = tmp_path / "nf4.json"
    path.write_text(json.dumps({
        "quant_backend": "bitsandbytes_4bit",
        "quant_kwargs": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"},
        "components_to_quantize": ["transformer", "text_encoder_2"],
    }))
    config = load_quantization_config(str(path))
    assert config.quant_backend == "bitsandbytes_4bit"
    assert config.quant_kwargs["bnb_4bit_compute_dtype"] is torch.bfloat16
    assert config.components_to_quantize == ["transformer", "text_encoder_2"]


def test_compile_warms_up_once_per_shape(load, monkeypatch):
    executor = load("tiny:flux", compile=True, fresh=True)
    assert executor.model.pipe.transformer._compiled_call_impl is not None
    calls = []
    real = executor.model.pipe.__call__

    def counting(**kwargs):
        calls.append(kwargs["num_inference_steps"])
        return real(**kwargs)

    monkeypatch.setattr(executor.model, "pipe", counting)
    monkeypatch.setattr(executor.model.cache, "stats", lambda total: None)
    with torch._dynamo.config.patch(disable=True):  # the warm-up logic is under test, not inductor on CPU
        image(executor)
        image(executor, seed=5)
    assert calls == [1, 3, 3]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny:flux", "tiny:flux2-klein", "tiny:wan-t2v", "tiny:wan-i2v",
                                  "tiny:qwen-image-edit-plus"])
def test_tiny_command_writes_a_folder_plain_diffusers_loads(tmp_path, name):
    target = tmp_path / "model"
    done = subprocess.run([sys.executable, "-m", "openai_dit", "tiny", name.removeprefix("tiny:"), str(target)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from diffusers import DiffusionPipeline

    kwargs = {}
    if name == "tiny:qwen-image-edit-plus":  # no torchvision beside CPU torch: pass the image-only processor
        from openai_dit.models.qwen_processor import Qwen2VLImageOnlyProcessor

        kwargs["processor"] = Qwen2VLImageOnlyProcessor.from_pretrained(str(target / "processor"))
    pipe = DiffusionPipeline.from_pretrained(str(target), **kwargs)
    assert type(pipe).__name__ in {"FluxPipeline", "Flux2KleinPipeline", "WanPipeline", "WanImageToVideoPipeline",
                                   "QwenImageEditPlusPipeline"}


def test_builtin_weights_are_fixed(tmp_path):
    from openai_dit.models.tiny import write_builtin

    a = write_builtin("tiny:flux", tmp_path / "a")
    b = write_builtin("tiny:flux", tmp_path / "b")
    file = "transformer/diffusion_pytorch_model.safetensors"
    assert (a / file).read_bytes() == (b / file).read_bytes()


@pytest.mark.slow
def test_compile_for_real_with_cache_matches_eager(load):
    """torch.compile (inductor on CPU) under cache-dit: same image as eager within rounding."""
    compiled = load("tiny:flux", compile=True, cache=True, Fn=1, rdt=0.5, max_warmup_steps=2, fresh=True)
    eager = load("tiny:flux", cache=True, Fn=1, rdt=0.5, max_warmup_steps=2, fresh=True)
    first = compiled.run(GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a lighthouse", width=64, height=64,
                                           num_inference_steps=6, seed=4), threading.Event())
    reference = eager.run(GenerationRequest(task=Task.TEXT_TO_IMAGE, prompt="a lighthouse", width=64, height=64,
                                            num_inference_steps=6, seed=4), threading.Event())
    assert first.cache.cached_steps == reference.cache.cached_steps > 0
    assert np.abs(first.images.astype(int) - reference.images.astype(int)).max() <= 2


@pytest.mark.slow
def test_start_up_logs_the_seconds_of_each_component_and_the_total(caplog):
    with caplog.at_level(logging.INFO, logger="openai_dit.loader"):
        load_model(ServerConfig(model_path="tiny:flux"))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded tiny:flux in "))
    for part in ("transformer ", "vae ", "text_encoder ", "files ", "to cpu "):
        assert part in line, line
    total = float(line.split(" in ", 1)[1].split(" s", 1)[0])
    words = line.split(": ", 1)[1].replace(";", ",").split()
    parts = [float(word) for word in words if word.replace(".", "").isdigit()]
    assert total >= max(parts) and total > 0
