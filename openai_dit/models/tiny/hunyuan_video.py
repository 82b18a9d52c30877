"""Tiny HunyuanVideo (1.0) and HunyuanVideo-1.5 pipelines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import VIDEO_DEFAULTS

__all__ = ["BUILDERS"]


def _llama_stand_in_tokenizer():
    """The byte-level Qwen2 tokenizer, standing in for HunyuanVideo's Llama-3 tokenizer.

    The pipeline pads to `max_sequence_length + crop_start` tokens and then crops the first `crop_start` (95) tokens:
    the default prompt template as Llama-3 tokenizes it. Byte-level, the template is 500 tokens and the prompt would
    be cut off; so the template's text is added as exactly `crop_start` tokens and the crop lands on the prompt.
    """
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import AddedToken

    from .tokenizers import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    prefix = DEFAULT_PROMPT_TEMPLATE["template"].split("{}")[0]
    count = DEFAULT_PROMPT_TEMPLATE["crop_start"]
    # Pieces of one length (the first takes the remainder), so no piece is a prefix of another and each matches
    # only where it was cut from.
    size = len(prefix) // count
    first = len(prefix) - size * (count - 1)
    pieces = [prefix[:first]] + [prefix[i:i + size] for i in range(first, len(prefix), size)]
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=True) for p in pieces])
    assert len(tokenizer(prefix).input_ids) == count, "the prompt template does not tokenize to crop_start tokens"
    return tokenizer


def _hunyuan_video():
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    from .tokenizers import clip_tokenizer

    tokenizer, clip_tok = _llama_stand_in_tokenizer(), clip_tokenizer()
    torch.manual_seed(0)
    # The pipeline takes the hidden states 3rd from the end: at least 2 layers.
    text_encoder = LlamaModel(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    ))
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=16, bos_token_id=clip_tok.bos_token_id,
        eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id,
    ))
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
        pooled_projection_dim=16, rope_axes_dim=(2, 2, 4),
    )
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=4, block_out_channels=(4,) * 4, layers_per_block=1, norm_num_groups=2,
        spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
                                scheduler=scheduler, text_encoder_2=text_encoder_2,
                                tokenizer_2=clip_tok), dict(VIDEO_DEFAULTS)


def _hunyuan_video15(image_to_video: bool):
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15ImageToVideoPipeline,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import (
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
        SiglipVisionModel,
        T5Config,
        T5EncoderModel,
    )

    from .tokenizers import qwen_tokenizer, t5_tokenizer

    # The glyph (ByT5) encoder only sees quoted text of the prompt; the character-level T5 tokenizer stands in.
    tokenizer, tokenizer_2 = qwen_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=2048, rope_theta=1000000.0,
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    text_encoder_2 = T5EncoderModel(T5Config(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        vocab_size=len(tokenizer_2), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    # target_size: the pixel area (target_size ** 2) of the default size, and of the i2v size bucket.
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=4 * 2 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=16,
        image_embed_dim=16, rope_axes_dim=(2, 2, 4), target_size=64, task_type="i2v" if image_to_video else "t2v",
    )
    vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8,) * 5, layers_per_block=0,
                                      spatial_compression_ratio=16, temporal_compression_ratio=4)
    # Guidance lives in the guider (6.0, as the non-distilled checkpoints ship), not in the call. Whatever the prompt,
    # the pipeline pads the context to 1000 (Qwen) + 256 (glyph) tokens, plus 729 zero image tokens in text-to-video:
    # the main cost here.
    common = dict(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
                  scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), text_encoder_2=text_encoder_2,
                  tokenizer_2=tokenizer_2, guider=ClassifierFreeGuidance(guidance_scale=6.0))
    if not image_to_video:
        return HunyuanVideo15Pipeline(**common), dict(VIDEO_DEFAULTS)
    image_encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
    ))
    feature_extractor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    return HunyuanVideo15ImageToVideoPipeline(image_encoder=image_encoder, feature_extractor=feature_extractor,
                                              **common), dict(VIDEO_DEFAULTS)


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:hunyuan-video": _hunyuan_video,
    "tiny:hunyuan-video-1.5": lambda: _hunyuan_video15(image_to_video=False),
    "tiny:hunyuan-video-1.5-i2v": lambda: _hunyuan_video15(image_to_video=True),
}
