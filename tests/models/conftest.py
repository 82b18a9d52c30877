import pytest
import torch

from openai_dit.config import ServerConfig


@pytest.fixture(scope="session")
def load():
    """Load a model through the server's own loader (cached per configuration for the session)."""
    from openai_dit.models.executor import PipelineExecutor
    from openai_dit.models.loader import load_model

    cache: dict = {}

    def _load(model_path: str = "tiny:flux", fresh: bool = False, **overrides) -> PipelineExecutor:
        key = (model_path, tuple(sorted(overrides.items())))
        if fresh or key not in cache:
            cache[key] = PipelineExecutor(load_model(ServerConfig(model_path=model_path, **overrides)))
        return cache[key]

    return _load


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A LoRA for tiny:flux with non-zero weights, saved the way trainers publish them."""
    from diffusers import DiffusionPipeline, FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from openai_dit.models.tiny import builtin_model_dir

    pipe = DiffusionPipeline.from_pretrained(str(builtin_model_dir("tiny:flux")))
    torch.manual_seed(0)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    directory = tmp_path_factory.mktemp("lora")
    FluxPipeline.save_lora_weights(directory, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
                                   weight_name="tiny_lora.safetensors")
    return directory
