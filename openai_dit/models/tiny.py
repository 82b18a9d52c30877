"""Built-in tiny models: randomly initialised pipelines with fixed (seeded) weights, built offline.

`tiny:<family>` and `small:<family>` names resolve to a directory under the cache, built once with
`save_pretrained` and then loaded through the same `from_pretrained` path a real model takes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["BUILTIN_MODELS", "HINTS_FILE", "builtin_model_dir", "is_builtin", "write_builtin"]

HINTS_FILE = "openai_dit.json"
_FORMAT_VERSION = "4"
# Defaults for requests that name no size: small enough to be quick on a CPU.
_IMAGE_DEFAULTS = {"default_width": 256, "default_height": 256, "default_num_inference_steps": 8}
_VIDEO_DEFAULTS = {"default_width": 64, "default_height": 64, "default_num_frames": 9,
                   "default_num_inference_steps": 8}


def _flux(hidden_heads: int, head_dim: int, layers: int, single_layers: int, text_dim: int, vae_ch: int):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .tiny_tokenizers import clip_tokenizer, t5_tokenizer

    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=text_dim, intermediate_size=text_dim * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=text_dim,
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id,
    ))
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=text_dim, d_kv=text_dim // 2, d_ff=text_dim * 2, num_layers=2,
        num_heads=2, relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    rope_xy = (head_dim // 8) * 3
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=layers, num_single_layers=single_layers,
        attention_head_dim=head_dim, num_attention_heads=hidden_heads, joint_attention_dim=text_dim,
        pooled_projection_dim=text_dim, guidance_embeds=True,
        axes_dims_rope=(head_dim - 2 * rope_xy, rope_xy, rope_xy),
    )
    vae = AutoencoderKL(
        block_out_channels=(vae_ch,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1,
        sample_size=64, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                        tokenizer_2=t5_tok, transformer=transformer), dict(_IMAGE_DEFAULTS)


def _flux2_klein():
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from .tiny_tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    torch.manual_seed(0)
    # The pipeline stacks hidden states 9, 18 and 27 by default: the encoder needs at least 27 layers.
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=28,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    ))
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(8,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1,
        sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=True), dict(_IMAGE_DEFAULTS)


def _qwen_image_edit_plus():
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from .qwen_processor import Qwen2VLImageOnlyProcessor
    from .tiny_tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                           "<|video_pad|>")}
    # Keep the vision tower's input small: the pipeline hands it ~384x384 condition images.
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112})
    processor = Qwen2VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                          chat_template=tokenizer.chat_template)
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        vocab_size=len(tokenizer), vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    ))
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                shift_terminal=0.02, time_shift_type="exponential")
    pipe = QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                     processor=processor, transformer=transformer)
    # The pipeline resizes every input to ~1 MP before the VAE; a tiny model serves at 128x128 instead.
    return pipe, {"vae_image_area": 128 * 128, "condition_image_area": 112 * 112, **_IMAGE_DEFAULTS}


def _wan(image_to_video: bool):
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    from .tiny_tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))

    def transformer() -> WanTransformer3DModel:
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
            in_channels=36 if image_to_video else 16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        )

    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if not image_to_video:
        return WanPipeline(transformer=transformer(), **common), dict(_VIDEO_DEFAULTS)
    # Wan 2.2 style: two experts split at boundary_ratio, no CLIP image encoder.
    return WanImageToVideoPipeline(transformer=transformer(), transformer_2=transformer(), boundary_ratio=0.875,
                                   image_encoder=None, image_processor=None, **common), dict(_VIDEO_DEFAULTS)


BUILTIN_MODELS: dict[str, Callable[[], tuple]] = {
    "tiny:flux": lambda: _flux(hidden_heads=2, head_dim=16, layers=1, single_layers=1, text_dim=32, vae_ch=8),
    "small:flux": lambda: _flux(hidden_heads=6, head_dim=64, layers=2, single_layers=3, text_dim=128, vae_ch=32),
    "tiny:flux2-klein": _flux2_klein,
    "tiny:qwen-image-edit-plus": _qwen_image_edit_plus,
    "tiny:wan-t2v": lambda: _wan(image_to_video=False),
    "tiny:wan-i2v": lambda: _wan(image_to_video=True),
}


# Components that stand in for an upstream class are recorded under that class, as in a real checkpoint;
# the loader substitutes the stand-in where the upstream class cannot load (see `loader.py`).
_UPSTREAM_CLASSES = {"Qwen2VLImageOnlyProcessor": ["transformers", "Qwen2VLProcessor"]}


def _record_upstream_classes(model_index: Path) -> None:
    index = json.loads(model_index.read_text())
    for key, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[1] in _UPSTREAM_CLASSES:
            index[key] = _UPSTREAM_CLASSES[value[1]]
    model_index.write_text(json.dumps(index, indent=2))


def is_builtin(model_path: str) -> bool:
    return model_path.startswith(("tiny:", "small:"))


def _cache_root() -> Path:
    root = os.environ.get("OPENAI_DIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openai-dit")
    return Path(root) / "builtin"


def _check_name(name: str) -> None:
    if name not in BUILTIN_MODELS:
        raise KeyError(f"unknown built-in model {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}")


def write_builtin(name: str, directory: str | os.PathLike) -> Path:
    """Build the built-in model `name` and save it to `directory` (loadable by plain diffusers)."""
    _check_name(name)
    pipe, hints = BUILTIN_MODELS[name]()
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    _record_upstream_classes(directory / "model_index.json")
    (directory / HINTS_FILE).write_text(json.dumps({"builtin": name, "version": _FORMAT_VERSION, **hints}))
    return directory


def builtin_model_dir(name: str) -> Path:
    """The cached directory of a built-in model, built on first use (safe across processes)."""
    _check_name(name)
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name.replace(':', '-')}-v{_FORMAT_VERSION}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / HINTS_FILE).exists():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
            try:
                write_builtin(name, staging)
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target

