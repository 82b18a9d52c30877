"""Tiny LTX-Video (0.9) and LTX-2 (video + audio) pipelines.

Both keep the real VAE strides (32 x 32 spatial, 8 temporal: sizes multiples of 32, 8k+1 frames), so the tiny
models take the same sizes and frame counts as the real checkpoints; 64x64 at 9 frames is 2 latent frames of 2x2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defaults import VIDEO_DEFAULTS

__all__ = ["BUILDERS"]


def _scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # The scheduler config of the LTX-Video and LTX-2 checkpoints (dynamic shifting on the token count).
    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=1024,
                                           max_image_seq_len=4096, base_shift=0.95, max_shift=2.05,
                                           shift_terminal=0.1)


def _ltx(image_to_video: bool):
    from diffusers import AutoencoderKLLTXVideo, LTXImageToVideoPipeline, LTXPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer(model_max_length=128)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(  # type: ignore[call-arg]  # typed configs omit kwargs they accept
        vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    ))
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        num_layers=2, caption_channels=16,
    )
    # patch 4 x three 2x down/up stages: the real 32x spatial and 8x temporal compression.
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True, False),
    )
    cls = LTXImageToVideoPipeline if image_to_video else LTXPipeline
    pipe = cls(scheduler=_scheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
               transformer=transformer)
    return pipe, dict(VIDEO_DEFAULTS)


def _gemma3(vocab_size: int, hidden_size: int, num_layers: int):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    return Gemma3ForConditionalGeneration(Gemma3Config(
        text_config={
            "vocab_size": vocab_size, "hidden_size": hidden_size, "intermediate_size": 32,
            "num_hidden_layers": num_layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
            "query_pre_attn_scalar": 8, "sliding_window": 64, "max_position_embeddings": 2048,
        },
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 14},
        mm_tokens_per_image=4,
    ))


def _ltx2(image_to_video: bool):
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        LTX2ImageToVideoPipeline,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    from .tokenizers import qwen_tokenizer

    # The byte-level Qwen2 tokenizer stands in for Gemma's (the pipeline pads it on the left).
    tokenizer = qwen_tokenizer()
    text_hidden, text_layers = 16, 2
    # 8 mel bins and 2 latent channels; the audio VAE compresses the mel axis 4x: audio tokens of 2 x 2 = 4 features.
    mel_bins, audio_latent_channels = 8, 2
    audio_token = audio_latent_channels * mel_bins // 4
    torch.manual_seed(0)
    text_encoder = _gemma3(len(tokenizer), text_hidden, text_layers)
    # LTX-2.0 layout: one projection of all hidden layers, then a video and an audio connector of text_hidden.
    connectors = LTX2TextConnectors(
        caption_channels=text_hidden, text_proj_in_factor=text_layers + 1,
        video_connector_num_attention_heads=2, video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_double_precision=False,
        rope_type="split",
    )
    transformer = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        audio_in_channels=audio_token, audio_out_channels=audio_token,
        audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2,
        caption_channels=text_hidden, rope_double_precision=False, rope_type="split",
    )
    # patch 4 x three spatio-temporal stages: the real 32x spatial and 8x temporal compression.
    vae = AutoencoderKLLTX2Video(
        latent_channels=8, block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False, False), upsample_factor=(1, 1, 1),
    )
    # The real audio path: 16 kHz mel at hop 160 (100 frames/s), 4x compressed to 25 latents/s, two real 2x
    # up-sampling stages; `base_channels` must equal the packed audio token width (latent_channels * mel_bins / 4).
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=audio_token, output_channels=2, ch_mult=(1, 1, 1), num_res_blocks=1,
        latent_channels=audio_latent_channels, resolution=32, sample_rate=16000, mel_hop_length=160, mel_bins=mel_bins,
    )
    # 100 mel frames/s x (6 * 5 * 8) = the real 24 kHz stereo waveform.
    vocoder = LTX2Vocoder(
        in_channels=2 * mel_bins, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[12, 15, 16],
        upsample_factors=[6, 5, 8], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], output_sampling_rate=24000,
    )
    cls = LTX2ImageToVideoPipeline if image_to_video else LTX2Pipeline
    pipe = cls(scheduler=_scheduler(), vae=vae, audio_vae=audio_vae, text_encoder=text_encoder, tokenizer=tokenizer,
               connectors=connectors, transformer=transformer, vocoder=vocoder)
    return pipe, dict(VIDEO_DEFAULTS)


BUILDERS: dict[str, Callable[[], tuple]] = {
    "tiny:ltx": lambda: _ltx(image_to_video=False),
    "tiny:ltx-i2v": lambda: _ltx(image_to_video=True),
    "tiny:ltx2": lambda: _ltx2(image_to_video=False),
    "tiny:ltx2-i2v": lambda: _ltx2(image_to_video=True),
}
