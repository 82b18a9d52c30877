"""Tiny Wan 2.1 / 2.2 pipelines."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import VIDEO_DEFAULTS

__all__ = ["BUILDERS"]


def _wan(image_to_video: bool, image_encoder: bool = False):
    """Wan text-to-video; image-to-video in the Wan 2.2 style (two experts) or, with `image_encoder`, the Wan 2.1
    style (one transformer that also attends to the CLIP vision features of the image)."""
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))

    def transformer(image_dim: int | None = None) -> WanTransformer3DModel:
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
            in_channels=36 if image_to_video else 16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
            image_dim=image_dim,
        )

    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if not image_to_video:
        return WanPipeline(transformer=transformer(), **common), dict(VIDEO_DEFAULTS)
    if not image_encoder:
        # Wan 2.2 style: two experts split at boundary_ratio, no CLIP image encoder.
        return WanImageToVideoPipeline(transformer=transformer(), transformer_2=transformer(), boundary_ratio=0.875,
                                       image_encoder=None, image_processor=None, **common), dict(VIDEO_DEFAULTS)
    # Wan 2.1 style: the pipeline feeds the CLIP vision tower's penultimate hidden states (image_dim wide) to the
    # transformer. The PIL image processor loads without torchvision (the plain name falls back to it anyway).
    wan21_transformer = transformer(image_dim=16)
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, projection_dim=16,
                                              num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8))
    processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return WanImageToVideoPipeline(transformer=wan21_transformer, image_encoder=vision, image_processor=processor,
                                   **common), dict(VIDEO_DEFAULTS)


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:wan-t2v": lambda: _wan(image_to_video=False),
    "tiny:wan-i2v": lambda: _wan(image_to_video=True),
    "tiny:wan2.1-i2v": lambda: _wan(image_to_video=True, image_encoder=True),
}
