"""Tiny FLUX.1 and FLUX.2 pipelines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .defaults import IMAGE_DEFAULTS

__all__ = ["BUILDERS"]

_TINY: dict[str, Any] = dict(hidden_heads=2, head_dim=16, layers=1, single_layers=1, text_dim=32, vae_ch=8)
_SMALL: dict[str, Any] = dict(hidden_heads=6, head_dim=64, layers=2, single_layers=3, text_dim=128, vae_ch=32)
# FLUX.2 dev hands the prompt to its Mistral encoder as chat messages whose content is a list of parts:
# this template writes their text parts (the stand-in Qwen tokenizer's template expects plain strings).
_PARTS_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _flux(pipeline: str, hidden_heads: int, head_dim: int, layers: int, single_layers: int, text_dim: int,
          vae_ch: int, fill: bool = False):
    """A FLUX.1 pipeline of class `pipeline`; `fill` widens the transformer input for FluxFill's mask channels."""
    import diffusers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .tokenizers import clip_tokenizer, t5_tokenizer

    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=text_dim, intermediate_size=text_dim * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=text_dim,
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id,
    ))
    t5 = T5EncoderModel(T5Config(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        vocab_size=len(t5_tok), d_model=text_dim, d_kv=text_dim // 2, d_ff=text_dim * 2, num_layers=2,
        num_heads=2, relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    latent_channels, vae_scale_factor = 4, 8  # the VAE below: 4 latent channels, 4 blocks (2 ** 3)
    # Packed 2x2 latents; FluxFill adds the packed masked-image latents and the packed 8x8 pixel mask
    # (FLUX.1-Fill-dev: 64 + 64 + 256 = 384 in, 64 out).
    in_channels = 4 * (2 * latent_channels + vae_scale_factor ** 2) if fill else 4 * latent_channels
    rope_xy = (head_dim // 8) * 3
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, out_channels=4 * latent_channels if fill else None,
        num_layers=layers, num_single_layers=single_layers,
        attention_head_dim=head_dim, num_attention_heads=hidden_heads, joint_attention_dim=text_dim,
        pooled_projection_dim=text_dim, guidance_embeds=True,
        axes_dims_rope=(head_dim - 2 * rope_xy, rope_xy, rope_xy),
    )
    vae = AutoencoderKL(
        block_out_channels=(vae_ch,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=latent_channels, norm_num_groups=4,
        layers_per_block=1, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return getattr(diffusers, pipeline)(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                                        text_encoder_2=t5, tokenizer_2=t5_tok,
                                        transformer=transformer), dict(IMAGE_DEFAULTS)


def _flux2_transformer_vae_scheduler(guidance_embeds: bool):
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel

    # joint_attention_dim: three stacked encoder hidden states of width 16.
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=guidance_embeds,
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(8,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1,
        sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return dict(transformer=transformer, vae=vae, scheduler=scheduler)


def _flux2_klein():
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from .tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    torch.manual_seed(0)
    # The pipeline stacks hidden states 9, 18 and 27 by default: the encoder needs at least 27 layers.
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=28,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    ))
    return Flux2KleinPipeline(text_encoder=text_encoder, tokenizer=tokenizer, is_distilled=True,
                              **_flux2_transformer_vae_scheduler(guidance_embeds=False)), dict(IMAGE_DEFAULTS)


def _flux2():
    """FLUX.2 dev: a Mistral-3 (Pixtral vision + Mistral text) encoder, embedded guidance."""
    from diffusers import Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    from .tokenizers import qwen_tokenizer

    # The byte-level Qwen tokenizer stands in for the Pixtral processor (text prompts only).
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = _PARTS_CHAT_TEMPLATE
    torch.manual_seed(0)
    # The pipeline stacks hidden states 10, 20 and 30 by default: the encoder needs at least 30 layers.
    text_encoder = Mistral3ForConditionalGeneration(Mistral3Config(
        text_config={
            "model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 16,
            "num_hidden_layers": 30, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
            "max_position_embeddings": 1024, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "model_type": "pixtral", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "head_dim": 8, "image_size": 112, "patch_size": 14,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<|image_pad|>"), tie_word_embeddings=True,
    ))
    return Flux2Pipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                         **_flux2_transformer_vae_scheduler(guidance_embeds=True)), dict(IMAGE_DEFAULTS)


def _flux_kontext():
    """Its conditioning image is resized to ~1 MP unless `_auto_resize` is off: a tiny model edits at its own size."""
    pipe, hints = _flux("FluxKontextPipeline", **_TINY)
    return pipe, {**hints, "call_arguments": {"_auto_resize": False}}


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:flux": lambda: _flux("FluxPipeline", **_TINY),
    "small:flux": lambda: _flux("FluxPipeline", **_SMALL),
    "tiny:flux-kontext": _flux_kontext,
    "tiny:flux-fill": lambda: _flux("FluxFillPipeline", **_TINY, fill=True),
    "tiny:flux2-klein": _flux2_klein,
    "tiny:flux2": _flux2,
}
