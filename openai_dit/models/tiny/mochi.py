"""Tiny Mochi 1 pipeline."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import VIDEO_DEFAULTS

__all__ = ["BUILDERS"]


def _mochi():
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer(model_max_length=256)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    # The caption pooler has 8 heads: text_embed_dim must be a multiple of 8.
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
        in_channels=12, qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=16, activation_fn="swiglu",
        max_sequence_length=256,
    )
    # The pipeline hard-codes 8x spatial / 6x temporal compression and 12 latent channels (the VAE's defaults);
    # its group norms have 32 groups, so 32 channels is the least; no resnet layers keeps the decoder quick.
    vae = AutoencoderKLMochi(latent_channels=12, encoder_block_out_channels=(32,) * 4,
                             decoder_block_out_channels=(32,) * 4, layers_per_block=(0,) * 5,
                             add_attention_block=(False,) * 5)
    # As the Mochi checkpoint ships it: sigmas run from 0 to 1 (the pipeline passes 1000 - t to the transformer).
    scheduler = FlowMatchEulerDiscreteScheduler(invert_sigmas=True)
    pipe = MochiPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                         transformer=transformer)
    # Frames are 6k + 1: 9 would come out as 7.
    return pipe, {**VIDEO_DEFAULTS, "default_num_frames": 7}


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:mochi": _mochi,
}
